"""Micro-batches as ft train builds them, and a simulation of the data order to find the largest one a run meets."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ft.plan.arch import Architecture
from ft.plan.settings import RunSettings

# Mirrors ft.data.collate.CPU_LENGTH_MULTIPLE, which imports torch.
CPU_LENGTH_MULTIPLE = 64
# Micro-batches simulated per plan: enough for a stable mean and maximum, small enough to stay well under a second.
SIMULATED_MICRO_BATCHES = 20_000
MAX_TRIALS = 16


@dataclass(frozen=True)
class MicroBatch:
    """The work of one micro-batch on one device."""

    rows: int
    tokens: int  # positions computed, padding included
    trained: int  # positions whose logits and loss are computed
    causal_pairs: int  # query-key pairs per head and layer when each row attends causally to itself only
    window_pairs: int  # the same for a sliding-window layer
    mask_elements: int  # elements of an explicit attention mask (0 when the kernel needs none)
    masked_layers: int  # layers that run with that explicit mask


def causal_pairs(length: int, window: int | None = None) -> int:
    if window is None or length <= window:
        return length * (length + 1) // 2
    return window * (window + 1) // 2 + (length - window) * window


def make_micro_batch(rows: list[tuple[int, int]], arch: Architecture, s: RunSettings) -> MicroBatch:
    """Build the micro-batch that ft's collators make from rows of (tokens, trained tokens).

    Packed rows are one sequence. With more than one row, transformers builds a block-diagonal mask from the
    position ids, except with flash_attention_2, which runs variable-length attention. Padded rows get a mask per
    row. A sliding-window layer needs a mask once the row is longer than the window, except with flash_attention_2.
    """
    lengths = [length for length, _ in rows]
    if s.packing and not s.on_gpu and len(rows) == 1:
        # ft.data.collate pads a one-row CPU micro-batch at its end to a multiple of CPU_LENGTH_MULTIPLE tokens.
        lengths = [-lengths[0] % CPU_LENGTH_MULTIPLE + lengths[0]]
    longest = max(lengths)
    flash = s.attn_implementation.startswith("flash")
    tokens = sum(lengths) if s.packing else longest * len(rows)
    mask_elements, masked_layers = 0, 0
    if len(rows) > 1 and not flash:
        mask_elements = tokens * tokens if s.packing else len(rows) * longest * longest
        masked_layers = arch.num_layers
    elif s.attn_implementation == "eager":
        mask_elements, masked_layers = tokens * tokens, arch.num_layers
    elif arch.sliding_window and longest > arch.sliding_window and not flash:
        mask_elements, masked_layers = longest * longest, arch.sliding_layers
    return MicroBatch(
        rows=len(rows), tokens=tokens, trained=sum(trained for _, trained in rows),
        causal_pairs=sum(causal_pairs(n) for n in lengths),
        window_pairs=sum(causal_pairs(n, arch.sliding_window) for n in lengths),
        mask_elements=mask_elements, masked_layers=masked_layers,
    )


def simulate_order(rows: list[tuple[int, int]], count: int, arch: Architecture, s: RunSettings,
                   seed: int) -> list[list[MicroBatch]]:
    """Cut shuffled rows into micro-batches, as the Trainer's random sampler does, for several orders.

    Return one list of micro-batches per simulated order ("trial"). Each list covers the run's micro-batches of one
    device, or SIMULATED_MICRO_BATCHES of them for a longer run.
    """
    if not rows or count <= 0:
        return []
    per_trial = min(count, SIMULATED_MICRO_BATCHES)
    trials = max(1, min(MAX_TRIALS, SIMULATED_MICRO_BATCHES // per_trial))
    size = s.rows_per_micro_batch
    orders = []
    for trial in range(trials):
        rng = random.Random(seed * 1000 + trial)
        batches: list[MicroBatch] = []
        order: list[int] = []
        while len(batches) < per_trial:
            if len(order) < size:
                fresh = list(range(len(rows)))
                rng.shuffle(fresh)
                order.extend(fresh)
            chosen, order = order[:size], order[size:]
            batches.append(make_micro_batch([rows[i] for i in chosen], arch, s))
        orders.append(batches)
    return orders


def in_order(rows: list[tuple[int, int]], arch: Architecture, s: RunSettings) -> list[MicroBatch]:
    """Cut rows into micro-batches in their order, as evaluation does."""
    size = s.rows_per_micro_batch
    return [make_micro_batch(rows[i:i + size], arch, s) for i in range(0, len(rows), size)]


def count_steps(rows: int, epochs: float, max_steps: int | None, s: RunSettings, devices: int) -> tuple[int, int]:
    """Return (optimizer steps, micro-batches per device), as the transformers Trainer counts them."""
    accumulation = s.micro_batches_per_step
    if max_steps:
        return max_steps, max_steps * accumulation
    loader_length = max(1, math.ceil(rows / (s.rows_per_micro_batch * devices)))
    steps_per_epoch = max(loader_length // accumulation + int(loader_length % accumulation > 0), 1)
    steps = math.ceil(epochs * steps_per_epoch)
    return steps, min(math.ceil(epochs * loader_length), steps * accumulation)
