"""Time of the tool-call evaluation that `ft train` runs after training: greedy generation on the first
`training.tool_eval_rows` rows of data.eval, in batches of ft.evaluate's default size.

Each batch costs a forward pass over its left-padded prompts, then one decoding step per new token. A decoding step
of a small model is bound by per-layer overheads rather than FLOPs, so it is timed per layer: on a CPU by
`ft plan --calibrate`, on a GPU from the kernel-launch figure the training estimate uses.
"""

from __future__ import annotations

from ft.plan.arch import Architecture
from ft.plan.batches import MicroBatch, causal_pairs
from ft.plan.flops import evaluation_flops
from ft.plan.settings import RunSettings

# Mirrors ft.evaluate.runner.DEFAULT_BATCH_SIZE, which imports torch.
EVAL_BATCH_ROWS = 8
# Seconds per decoding step and decoder layer of a batch of EVAL_BATCH_ROWS rows on a CPU not yet calibrated.
# NOTE: measured once on a 2-core Xeon (SmolLM2-135M, bfloat16, 128-token prompts): 0.072 s per step over 30 layers.
DEFAULT_CPU_DECODE_STEP_S_PER_LAYER = 0.0024


def tool_eval_seconds(arch: Architecture, s: RunSettings, turns: list[tuple[int, int]], max_new_tokens: int,
                      flops_per_s: float, decode_step_s_per_layer: float) -> float:
    """Return the seconds of generating the first assistant turn of rows given as (prompt tokens, turn tokens).

    NOTE: each batch is taken to generate as many tokens as its longest reference turn plus the stop token, at most
    max_new_tokens. A model that learned to stop writes about the reference's length; one that did not runs to the
    cap.
    """
    if not turns:
        return 0.0
    ordered = sorted(turns, reverse=True)  # longest prompt first, as ft.evaluate.generation batches them
    seconds = 0.0
    for start in range(0, len(ordered), EVAL_BATCH_ROWS):
        batch = ordered[start:start + EVAL_BATCH_ROWS]
        longest = max(prompt for prompt, _ in batch)
        # Left padding brings an attention mask, so every query-key pair of the padded square is computed.
        prefill = MicroBatch(rows=len(batch), tokens=len(batch) * longest, trained=len(batch),
                             causal_pairs=len(batch) * causal_pairs(longest),
                             window_pairs=len(batch) * causal_pairs(longest, arch.sliding_window),
                             mask_elements=len(batch) * longest * longest, masked_layers=arch.num_layers)
        new_tokens = min(max_new_tokens, max(turn for _, turn in batch) + 1)  # the stop token counts
        seconds += evaluation_flops(arch, s, prefill) / flops_per_s
        seconds += new_tokens * decode_step_s_per_layer * arch.num_layers
    return seconds
