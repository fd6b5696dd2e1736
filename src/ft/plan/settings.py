"""The training settings that decide memory and FLOPs, resolved from the config for one device kind."""

from __future__ import annotations

from dataclasses import dataclass

from ft.config import Config
from ft.plan.arch import lora_targets

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class RunSettings:
    """The settings ft train uses for the config on one kind of device."""

    method: str  # lora | qlora | full
    dtype: str  # the training dtype: float32 | bfloat16 | float16
    lora_r: int
    lora_targets: frozenset[str]
    lora_dropout: float
    optimizer: str
    gradient_checkpointing: bool
    attn_implementation: str
    packing: bool
    on_gpu: bool
    rows_per_micro_batch: int
    micro_batches_per_step: int  # per device
    fsdp: bool = False

    @property
    def element_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def adapter_dtype_differs(self) -> bool:
        """Whether each LoRA layer gets a cast copy of its input (PEFT keeps LoRA weights in float32).

        ft train turns PEFT's input cast off under autocast (FtTrainer.adapter_input_casts), except with FSDP.
        """
        return self.method != "full" and self.dtype != "float32" and self.fsdp


def resolve_dtype(precision: str, on_gpu: bool, supports_bf16: bool) -> str:
    """Mirror ft.model.choose_dtype: `auto` is bfloat16 on a device that computes it natively, else float32."""
    if precision == "auto":
        return "bfloat16" if supports_bf16 else "float32"
    return precision


def run_settings(cfg: Config, on_gpu: bool, supports_bf16: bool) -> RunSettings:
    """Resolve the config for a GPU or a CPU device, as ft.train does (see `micro_batching` there)."""
    t = cfg.training
    # ft train runs packed CPU training one row per micro-batch, accumulating the batch's rows.
    if cfg.data.packing and not on_gpu:
        rows, micro_batches = 1, t.batch_size * t.grad_accum
    else:
        rows, micro_batches = t.batch_size, t.grad_accum
    targets = frozenset(lora_targets(cfg.lora.target_modules)) if t.method != "full" else frozenset()
    return RunSettings(
        method=t.method,
        dtype=resolve_dtype(cfg.model.precision, on_gpu, supports_bf16),
        lora_r=cfg.lora.r,
        lora_targets=targets,
        lora_dropout=cfg.lora.dropout,
        optimizer=t.optimizer,
        gradient_checkpointing=checkpointing_applies(cfg),
        attn_implementation=cfg.model.attn_implementation,
        packing=cfg.data.packing,
        on_gpu=on_gpu,
        rows_per_micro_batch=rows,
        micro_batches_per_step=micro_batches,
        fsdp=t.fsdp != "off",
    )


def checkpointing_applies(cfg: Config) -> bool:
    return cfg.training.gradient_checkpointing
