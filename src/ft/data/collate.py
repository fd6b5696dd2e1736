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

On a CPU each micro-batch is one row (see ft.train.micro_batching), right-padded to a multiple of
CPU_LENGTH_MULTIPLE tokens. oneDNN, which runs the CPU matrix products, builds and caches a kernel per matrix shape,
so with every row a new length it kept building new ones, and glibc kept the freed memory of each differently sized
activation. Measured on a 2-core CPU with AMX (SmolLM2-135M, LoRA, bfloat16, 96 rows of 150 to 700 tokens): exact
lengths started at 377 tokens/s and fell to 309 while resident memory grew from 2.5 to 3.7 GB; lengths rounded up
to 64 ran at 430 tokens/s with memory flat at 2.3 GB. The padding sits after the row's last token, so with causal
attention no real token attends to it and no attention mask is needed. Its labels are ignored. `real_tokens` carries the
row's unpadded length for the token counts.
"""

from __future__ import annotations

import torch

from ft.data.prepare import IGNORE


CPU_LENGTH_MULTIPLE = 64


class PackedCollator:
    def __init__(self, pad_to_multiple_of: int | None = None, pad_token_id: int = 0):
        self.pad_to_multiple_of = pad_to_multiple_of  # applied to one-row micro-batches only
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        ids, labels, positions = [], [], []
        for feature in features:
            row_labels = list(feature["labels"])
            row_labels[0] = IGNORE
            ids.extend(feature["input_ids"])
            labels.extend(row_labels)
            positions.extend(range(len(feature["input_ids"])))
        real_tokens = len(ids)
        if self.pad_to_multiple_of and len(features) == 1:
            padding = -len(ids) % self.pad_to_multiple_of
            ids.extend([self.pad_token_id] * padding)
            labels.extend([IGNORE] * padding)
        batch = {"input_ids": torch.tensor([ids], dtype=torch.long), "labels": torch.tensor([labels], dtype=torch.long),
                 "use_cache": False, "real_tokens": real_tokens}
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
