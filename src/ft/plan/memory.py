"""Memory per device, by part, for one micro-batch: what autograd keeps for the backward pass of ft's model.

The activation counts follow the tensors saved in a transformers 5 Llama-style decoder layer (RMSNorm in float32,
rotary embeddings, sdpa attention, a gated MLP) with PEFT LoRA layers, checked against autograd's saved tensors in
tests/test_plan.py. All sizes are in bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ft.plan.arch import Architecture, lora_parameter_count
from ft.plan.batches import MicroBatch
from ft.plan.settings import RunSettings

# 4-bit NF4 weights with double-quantized block constants: 4 + 8/64 + 32/(64*256) bits per weight.
QLORA_BYTES_PER_WEIGHT = (4 + 8 / 64 + 32 / (64 * 256)) / 8
FLOAT32 = 4
ADAPTER_BYTES = 4  # PEFT keeps LoRA weights in float32 even on a bfloat16 model (autocast_adapter_dtype)
# Per trained token of the LM head: float32 logits, their log-softmax kept for backward, and the two float32
# gradients alive at the start of the backward pass (ft computes the loss in float32).
LOGIT_BYTES_PER_VOCAB_ENTRY = 12
# CUDA context, cuBLAS workspaces and kernels: memory torch.cuda.max_memory_allocated does not show.
CUDA_OVERHEAD_BYTES = 0.75e9
# Python lists of token ids and labels, and the rendered text, that ft train keeps in memory per token.
HOST_BYTES_PER_DATA_TOKEN = 50


@dataclass(frozen=True)
class ResidentTerms:
    """Resident memory of a CPU training process beyond its live tensors, as `ft plan --calibrate` measured it.

    glibc keeps freed activation memory in the process, so the heap reaches `activation_factor` times the
    activations, plus `retained_bytes` that do not grow with them. The logits are counted once: at the sizes that
    matter they are separate mappings, which glibc returns when they are freed.
    """

    retained_bytes: float = 0.0
    activation_factor: float = 1.0


NO_EXTRA = ResidentTerms()


@dataclass
class MemoryParts:
    """Bytes per device by part, and the peak, which counts gradients and activations once where they overlap."""

    weights: float
    adapter: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float
    peak: float

    def as_gb(self) -> dict[str, float]:
        return {name: round(value / 1e9, 3) for name, value in vars(self).items()}


def trained_parameters(arch: Architecture, s: RunSettings) -> int:
    if s.method == "full":
        return arch.parameter_count()
    return lora_parameter_count(arch, s.lora_r, s.lora_targets)


def weight_bytes(arch: Architecture, s: RunSettings) -> float:
    total = arch.parameter_count()
    if s.method != "qlora":
        return total * s.element_bytes
    linear = arch.parameter_parts()["layers_linear"]
    return linear * QLORA_BYTES_PER_WEIGHT + (total - linear) * s.element_bytes


def optimizer_states(optimizer: str) -> tuple[float, float]:
    """Return (states per trained parameter, bytes per state or 0 for the parameter's own size)."""
    name = optimizer.lower()
    if "8bit" in name:
        return (1, 1) if "lion" in name else (2, 1)
    if name.startswith("sgd") or "adafactor" in name:
        # NOTE: plain SGD keeps no state; Adafactor's factored moments are counted as nothing.
        return 0, 0
    if "lion" in name or "rmsprop" in name or "adagrad" in name:
        return 1, 0
    return 2, 0


@functools.lru_cache(maxsize=256)
def static_memory(arch: Architecture, s: RunSettings) -> dict[str, float]:
    """Weights, adapter, gradients and optimizer states: the same for every micro-batch."""
    trained = trained_parameters(arch, s)
    trained_bytes = s.element_bytes if s.method == "full" else ADAPTER_BYTES
    states, state_bytes = optimizer_states(s.optimizer)
    return {
        "weights": weight_bytes(arch, s),
        "adapter": 0.0 if s.method == "full" else trained * ADAPTER_BYTES,
        "gradients": trained * trained_bytes,
        "optimizer": trained * states * (state_bytes or trained_bytes),
    }


def norm_bytes(width: int, s: RunSettings) -> float:
    """Return the bytes per token an RMSNorm keeps: its float32 input and inverse root mean square, and the
    normalized input when its weight trains. Its output is counted where a Linear layer keeps it."""
    kept = FLOAT32 * width + FLOAT32
    if s.method == "full":
        kept += s.element_bytes * width
    return kept


def linear_input_bytes(width: int, modules: list[str], s: RunSettings) -> float:
    """Bytes per token kept for the Linear layers that read one input tensor (q/k/v, o, gate/up, down).

    A trained or LoRA layer keeps its input for the weight gradient; layers reading the same tensor share it.
    Where PEFT casts the input to the adapter's float32 and autocast casts it back (on a bfloat16 model under
    FSDP), each LoRA layer keeps its own copy. LoRA dropout keeps a mask and a copy per layer.
    """
    b = s.element_bytes
    if s.method == "full":
        return b * width
    targeted = sum(1 for name in modules if name in s.lora_targets)
    if targeted == 0:
        return 0.0
    if s.lora_dropout > 0:
        return targeted * width * (1 + b)
    if s.adapter_dtype_differs:
        return targeted * b * width
    return b * width


@functools.lru_cache(maxsize=256)
def layer_bytes_per_token(arch: Architecture, s: RunSettings, repeated_kv: bool) -> float:
    """Activation bytes one decoder layer keeps per token for the backward pass (no checkpointing)."""
    b = s.element_bytes
    d, q, kv, inter = arch.hidden_size, arch.q_dim, arch.kv_dim, arch.intermediate_size
    kept = arch.norms_per_layer * norm_bytes(d, s)
    if arch.qk_norm:
        kept += norm_bytes(q, s) + norm_bytes(kv, s)

    # sdpa keeps queries and keys after the rotary embedding, values, its output and the log-sum-exp per head.
    # With an explicit mask, transformers repeats the key and value heads to the query heads first.
    kv_kept = q if repeated_kv else kv
    kept += b * (q + 2 * kv_kept + q) + FLOAT32 * arch.num_heads

    # The gated MLP keeps the gate output (activation input), the activation output and the up output.
    kept += 3 * b * inter

    kept += linear_input_bytes(d, ["q_proj", "k_proj", "v_proj"], s)
    kept += linear_input_bytes(d, ["gate_proj", "up_proj"], s)
    kept += linear_input_bytes(inter, ["down_proj"], s)
    # The attention output that o_proj reads is the tensor sdpa keeps, unless LoRA makes its own copies.
    if s.method != "full" and (s.adapter_dtype_differs or s.lora_dropout > 0):
        kept += linear_input_bytes(q, ["o_proj"], s)

    # Each LoRA layer keeps its rank-r intermediate for lora_B.
    if s.method != "full":
        kept += len(s.lora_targets) * s.lora_r * b
    return kept


def activation_bytes(arch: Architecture, s: RunSettings, batch: MicroBatch) -> tuple[float, float]:
    """Return (activations, logits) in bytes for one micro-batch at the start of its backward pass."""
    b = s.element_bytes
    grouped = arch.num_kv_heads != arch.num_heads
    masked = layer_bytes_per_token(arch, s, repeated_kv=grouped) * batch.tokens
    unmasked = layer_bytes_per_token(arch, s, repeated_kv=False) * batch.tokens
    if s.gradient_checkpointing:
        # Checkpointing keeps each layer's input; the backward pass recomputes one layer at a time.
        layers = arch.num_layers * b * arch.hidden_size * batch.tokens + (masked if batch.masked_layers else unmasked)
    else:
        layers = batch.masked_layers * masked + (arch.num_layers - batch.masked_layers) * unmasked

    masks = mask_bytes(arch, s, batch)
    final_norm = norm_bytes(arch.hidden_size, s) * batch.tokens
    if s.method == "full":
        final_norm += b * arch.hidden_size * batch.trained  # the LM head's input, kept for its weight gradient
    logits = LOGIT_BYTES_PER_VOCAB_ENTRY * arch.vocab_size * batch.trained
    return layers + masks + final_norm, logits


def mask_bytes(arch: Architecture, s: RunSettings, batch: MicroBatch) -> float:
    """Return the bytes of an explicit attention mask: built once as booleans, then per layer either converted to
    the model dtype and kept by sdpa, or (eager attention) the float32 softmax and its cast kept per head."""
    if not batch.masked_layers:
        return 0.0
    if s.attn_implementation == "eager":
        per_layer = arch.num_heads * batch.mask_elements * (FLOAT32 + s.element_bytes)
    else:
        per_layer = batch.mask_elements * s.element_bytes
    layers = 1 if s.gradient_checkpointing else batch.masked_layers
    return batch.mask_elements + layers * per_layer


def memory_parts(arch: Architecture, s: RunSettings, batch: MicroBatch, overhead: float,
                 resident: ResidentTerms = NO_EXTRA) -> MemoryParts:
    """Memory by part for the micro-batch, and the peak.

    The peak is the static parts plus the larger of two moments: the start of the backward pass (activations and
    logits, plus gradients held over from earlier micro-batches of the step), and the optimizer step (all gradients
    plus one temporary of the trained parameters' size). `resident` adds the memory a CPU process keeps beyond its
    live tensors (see ResidentTerms); the extra is counted as overhead.
    """
    static = static_memory(arch, s)
    activations, logits = activation_bytes(arch, s, batch)
    held = static["gradients"] if s.micro_batches_per_step > 1 else 0.0
    step_temporary = static["gradients"]
    overhead += resident.retained_bytes + (resident.activation_factor - 1) * activations
    peak = (static["weights"] + static["adapter"] + static["optimizer"] + overhead
            + max(activations + logits + held, static["gradients"] + step_temporary))
    return MemoryParts(static["weights"], static["adapter"], static["gradients"], static["optimizer"],
                       activations, logits, overhead, peak)
