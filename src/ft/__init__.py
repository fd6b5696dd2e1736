"""ft: fine-tune small open language models for tool use, from one config file."""

__version__ = "0.1.0"
