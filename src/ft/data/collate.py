"""Batch examples: packed into one row with per-example positions (the default), or padded.

Packing: the rows of a micro-batch are concatenated with no padding, and `position_ids` restart at 0 for each row.
transformers (5.x, `masking_utils.find_packed_sequence_indices`) builds a block-diagonal causal mask from those
position ids, so no row attends to another. tests/test_data_packing.py checks it for the sdpa and eager kernels.
NOTE: flash-attention reads the row boundaries from the same position ids (`prepare_fa_kwargs_from_position_ids`),
which no test here runs because it needs a CUDA GPU. The first label of each row is masked so that no row is
predicted from the one before it.

Both collators pass `use_cache=False`: with a cache object present (the default when the model config sets
`use_cache: true`, as most do), transformers skips the packed-row detection and every packed row attends to the
rows before it. tests/test_data_packing.py shows both the leak and its absence.
"""

from __future__ import annotations

import torch

from ft.data.prepare import IGNORE


class PackedCollator:
    def __call__(self, features: list[dict]) -> dict:
        ids, labels, positions = [], [], []
        for feature in features:
            row_labels = list(feature["labels"])
            row_labels[0] = IGNORE
            ids.extend(feature["input_ids"])
            labels.extend(row_labels)
            positions.extend(range(len(feature["input_ids"])))
        batch = {"input_ids": torch.tensor([ids], dtype=torch.long), "labels": torch.tensor([labels], dtype=torch.long),
                 "use_cache": False}
        if len(features) > 1:
            batch["position_ids"] = torch.tensor([positions], dtype=torch.long)
        return batch


class PaddedCollator:
    """Right-pad to the longest row; padding is masked by position (attention mask and labels), never by token id."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            length = len(feature["input_ids"])
            ids[row, :length] = torch.tensor(feature["input_ids"])
            labels[row, :length] = torch.tensor(feature["labels"])
            mask[row, :length] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, "use_cache": False}
