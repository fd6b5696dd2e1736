"""Floating-point operations of a training or evaluation micro-batch.

A Linear layer of N weights costs 2*N FLOPs per token forward and 2*N backward for the input gradient, which every
layer needs because trained parameters sit below it. The weight gradient costs another 2*N in trained layers only. Attention scores and their weighted sum cost 4 * head_dim * heads per query-key pair forward; fused
kernels (flash, memory-efficient, the CPU flash kernel) recompute the scores in the backward pass, which then costs
2.5 times the forward. The LM head runs only at trained positions (ft passes `logits_to_keep`).
"""

from __future__ import annotations

import functools

from ft.plan.arch import Architecture, lora_parameter_count
from ft.plan.batches import MicroBatch
from ft.plan.settings import RunSettings

FUSED_BACKWARD_FACTOR = 2.5
EAGER_BACKWARD_FACTOR = 2.0


@functools.lru_cache(maxsize=256)
def linear_weights(arch: Architecture) -> int:
    return arch.num_layers * sum(i * o for i, o in arch.linear_shapes().values())


def attention_forward_flops(arch: Architecture, batch: MicroBatch) -> float:
    """Score and weighted-sum FLOPs of all layers: an explicit mask makes the kernel compute every pair."""
    per_pair = 4 * arch.head_dim * arch.num_heads
    sliding = arch.sliding_layers if arch.sliding_window else 0
    unmasked_pairs = (arch.num_layers - sliding) * batch.causal_pairs + sliding * batch.window_pairs
    if not batch.masked_layers:
        return per_pair * unmasked_pairs
    # Masked layers compute every pair of the mask; the others (global layers beside masked sliding-window
    # layers) stay causal.
    masked = batch.masked_layers
    return per_pair * (masked * batch.mask_elements + (arch.num_layers - masked) * batch.causal_pairs)


def training_flops(arch: Architecture, s: RunSettings, batch: MicroBatch) -> float:
    """FLOPs of one training micro-batch: forward, backward, and the recomputation under checkpointing."""
    weights = linear_weights(arch)
    adapter = lora_parameter_count(arch, s.lora_r, s.lora_targets) if s.method != "full" else 0
    full = s.method == "full"

    forward = 2 * (weights + adapter) * batch.tokens
    backward = (2 * weights + 4 * adapter + (2 * weights if full else 0)) * batch.tokens
    attention = attention_forward_flops(arch, batch)
    factor = EAGER_BACKWARD_FACTOR if s.attn_implementation == "eager" else FUSED_BACKWARD_FACTOR
    head = 2 * arch.vocab_size * arch.hidden_size * batch.trained
    head_total = head * (3 if full else 2)  # forward, input gradient, and the weight gradient when it trains

    total = forward + backward + attention * (1 + factor) + head_total
    if s.gradient_checkpointing:
        total += forward + attention  # each layer's forward runs again during the backward pass
    return total


def evaluation_flops(arch: Architecture, s: RunSettings, batch: MicroBatch) -> float:
    """FLOPs of one evaluation micro-batch: the forward pass only, logits at trained positions."""
    adapter = lora_parameter_count(arch, s.lora_r, s.lora_targets) if s.method != "full" else 0
    head = 2 * arch.vocab_size * arch.hidden_size * batch.trained
    return 2 * (linear_weights(arch) + adapter) * batch.tokens + attention_forward_flops(arch, batch) + head
