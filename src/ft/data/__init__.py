"""Data path: read rows of any common shape, render them with the chat template, mask, and collate."""
