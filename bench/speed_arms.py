"""One arm of the training-speed benchmark, run in its own process by `bench/train_speed.py`.

Usage: python bench/speed_arms.py {trl,guide} SPEC.json RESULT.json

- `trl`: TRL's `SFTTrainer` with its defaults, written the way its documentation shows a user writing it.
- `guide`: the recipe of the guide ft grew from: every row padded to `max_length`, labels equal to the input ids
  (padding included), a plain transformers `Trainer` with a PEFT LoRA adapter.

ft's own arm is not here: the benchmark runs the real `ft train` command for it.

The process writes RESULT.json with its timings, its peak memory, and the counts the parent needs to compute FLOPs.
Those counts are the positions run through the model (padding included), the real tokens, the sum over rows of the
squared width that attention ran over, and the positions where the LM head was computed. The process prints
FIRST_STEP_MARKER when the first optimizer step ends, so that the parent can time the whole start-up from launch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback  # noqa: E402  (after the environment that keeps the Hub offline)

FIRST_STEP_MARKER = "bench: first optimizer step done"


def read_traces(rows_path: str) -> list[list[dict]]:
    with open(rows_path, encoding="utf-8") as rows:
        return [json.loads(line)["trace"] for line in rows if line.strip()]


def lora_config(spec: dict):
    from peft import LoraConfig

    return LoraConfig(r=spec["lora_r"], lora_alpha=spec["lora_alpha"], lora_dropout=spec["lora_dropout"],
                      target_modules=spec["lora_target_modules"], task_type="CAUSAL_LM")


class StepClock(TrainerCallback):
    """The start of training and the end of the first optimizer step, announced by a marker line on stdout."""

    def __init__(self):
        self.train_begin: float | None = None
        self.first_step_end: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_end is None:
            self.first_step_end = time.perf_counter()
            print(FIRST_STEP_MARKER, flush=True)


class CountingCollator:
    """Wrap a trainer's own collator and count what each micro-batch makes the model compute. Batches pass unchanged.

    `lm_head_positions(batch)` returns how many positions the arm's loss projects to the vocabulary.
    """

    def __init__(self, collator, lm_head_positions):
        self.collator = collator
        self.lm_head_positions = lm_head_positions
        self.positions = 0
        self.tokens = 0
        self.attention_width_sq = 0
        self.lm_positions = 0
        self.micro_batches = 0

    def __call__(self, features):
        batch = self.collator(features)
        rows, width = batch["input_ids"].shape
        mask = batch.get("attention_mask")
        self.positions += rows * width
        self.tokens += int(mask.sum()) if mask is not None else rows * width
        # Padded rows attend over the full padded width, so each row costs width squared.
        self.attention_width_sq += rows * width * width
        self.lm_positions += self.lm_head_positions(batch)
        self.micro_batches += 1
        return batch

    def counts(self) -> dict:
        return {"positions": self.positions, "tokens": self.tokens, "attention_width_sq": self.attention_width_sq,
                "lm_head_positions": self.lm_positions, "micro_batches": self.micro_batches}


def trl_lm_head_positions(batch) -> int:
    """Positions TRL's fused LM head projects: only labelled ones on a Triton device, every shifted position elsewhere."""
    import torch

    labels = batch["labels"][:, 1:]
    try:
        from trl.kernels.chunked_logprob import _use_triton  # NOTE: private TRL helper (TRL 1.16); may move

        compact = _use_triton(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    except ImportError:
        compact = torch.cuda.is_available()
    return int((labels != -100).sum()) if compact else labels.numel()


def run_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([{"messages": trace} for trace in read_traces(spec["rows_path"])])
    args = SFTConfig(
        output_dir=spec["output_dir"],
        per_device_train_batch_size=spec["batch_size"],
        max_steps=spec["max_steps"],
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        report_to="none",
        max_length=spec["max_length"],
        # Without a GPU, TRL's default bf16=True stops with "You need to assign use_cpu"; this is the fix it asks for.
        use_cpu=not torch.cuda.is_available(),
    )
    clock = StepClock()
    trainer = SFTTrainer(model=spec["model_folder"], args=args, train_dataset=dataset, peft_config=lora_config(spec),
                         callbacks=[clock])
    counter = CountingCollator(trainer.data_collator, trl_lm_head_positions)
    trainer.data_collator = counter
    settings = {
        "gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16, "optim": optimizer_name(args),
        "packing": args.packing, "padding_free": args.padding_free, "assistant_only_loss": args.assistant_only_loss,
        "completion_only_loss": args.completion_only_loss, "logging_steps": args.logging_steps,
        "model_dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
    }
    compute_dtype = "bfloat16" if args.bf16 else ("float16" if args.fp16 else settings["model_dtype"])
    return train_and_measure(trainer, clock, counter, settings, compute_dtype)


def run_guide(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    # The guide's tokenizer settings: left padding with the end-of-sequence token as the pad token.
    tokenizer = AutoTokenizer.from_pretrained(spec["model_folder"], padding_side="left")
    tokenizer.pad_token = tokenizer.eos_token
    texts = [tokenizer.apply_chat_template(trace, tokenize=False) for trace in read_traces(spec["rows_path"])]
    encoded = tokenizer(texts, truncation=True, padding="max_length", max_length=spec["max_length"],
                        add_special_tokens=False)
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                                 "labels": encoded["input_ids"]})

    dtype = getattr(torch, spec["model_dtype"])
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_folder"], dtype=dtype)
    model = get_peft_model(model, lora_config(spec))
    args = TrainingArguments(
        output_dir=spec["output_dir"], max_steps=spec["max_steps"], per_device_train_batch_size=spec["batch_size"],
        learning_rate=spec["learning_rate"], lr_scheduler_type="constant", logging_steps=5, save_strategy="no",
        report_to="none", dataloader_num_workers=0, remove_unused_columns=False, seed=spec["seed"],
    )
    clock = StepClock()
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    # transformers computes the logits at every position when labels are passed, padding included.
    counter = CountingCollator(trainer.data_collator, lambda batch: batch["input_ids"].numel())
    trainer.data_collator = counter
    settings = {"gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16, "optim": optimizer_name(args),
                "padding": f"max_length ({tokenizer.padding_side} side)", "labels": "input_ids, padding included",
                "model_dtype": spec["model_dtype"]}
    return train_and_measure(trainer, clock, counter, settings, spec["model_dtype"])


def optimizer_name(args) -> str:
    return getattr(args.optim, "value", str(args.optim))


def train_and_measure(trainer, clock, counter: CountingCollator, settings: dict, compute_dtype: str) -> dict:
    """Train, save the adapter (ft's timed span ends after its save too), and return timings, memory and counts."""
    import torch

    from ft.trainer import peak_memory_bytes

    output = trainer.train()
    trainer.save_model()
    train_end = time.perf_counter()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {
        "steps": trainer.state.global_step,
        "train_time_s": round(train_end - clock.train_begin, 3),
        "time_to_first_step_s": round(clock.first_step_end - clock.train_begin, 3),
        # Same measure as ft's summary.json: CUDA max allocated on a GPU, else the process's peak resident memory.
        "peak_memory_gb": round(peak_memory_bytes() / 1e9, 3),
        "threads": torch.get_num_threads(),
        "compute_dtype": compute_dtype,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_loss": round(float(output.training_loss), 6),
        "settings": settings,
        **counter.counts(),
    }


ARMS = {"trl": run_trl, "guide": run_guide}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ARMS:
        print(f"usage: python bench/speed_arms.py {{{','.join(ARMS)}}} SPEC.json RESULT.json", file=sys.stderr)
        return 2
    arm, spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = ARMS[arm](spec)

    from ft.outputs import write_json_atomic

    write_json_atomic(Path(result_path), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
