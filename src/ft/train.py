"""`ft train`: check everything, then fine-tune and write the run folder.

Order matters: every check that can fail on the user's input (config, model path, chat template, data rows, LoRA
targets) runs before the run folder is created and before the weights load.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from ft.config import LoadedConfig
from ft.errors import FtError, TrainingStopped

log = logging.getLogger("ft")


@dataclass
class Prepared:
    """Everything checked and built before the weights load."""

    source: object
    tokenizer: object
    model_config: object
    traits: object
    end_token_id: int
    train: object
    eval: object | None


def prepare_run(loaded: LoadedConfig) -> Prepared:
    """Resolve the model, probe its chat template, and read, render and mask the data. Raise FtError on any problem."""
    from ft.data.prepare import prepare, require_examples
    from ft.data.render import find_end_token, probe_template
    from ft.model import check_lora_targets, load_tokenizer, read_model_config, resolve_model

    cfg = loaded.config
    source = resolve_model(cfg.model.name, cfg.model.revision)
    model_config = read_model_config(source)
    if cfg.training.method != "full":
        check_lora_targets(cfg.lora.target_modules, model_config)
    tokenizer = load_tokenizer(source, cfg.model.chat_template)
    try:
        traits = probe_template(tokenizer, cfg.model.tool_call_style, model_config.model_type, cfg.model.name)
        end_token_id = find_end_token(tokenizer)
    except ValueError as err:
        raise FtError(f"model.chat_template: {err}") from None

    train = prepare(cfg.data, tokenizer, traits, end_token_id, cfg.training.seed, "train")
    require_examples(train, "data.train", cfg.data)
    evaluation = None
    if cfg.data.eval:
        evaluation = prepare(cfg.data, tokenizer, traits, end_token_id, cfg.training.seed, "eval")
        require_examples(evaluation, "data.eval", cfg.data)
    return Prepared(source, tokenizer, model_config, traits, end_token_id, train, evaluation)


def describe_data(prepared: Prepared, max_length: int) -> str:
    lines = []
    for side, data in (("train", prepared.train), ("eval", prepared.eval)):
        if data is None:
            continue
        read = sum(data.rows_read.values())
        dropped = ", ".join(f"{n} {reason}" for reason, n in data.dropped.items()) or "none"
        lines.append(f"data.{side}: {read} rows read, {len(data.examples)} used, {data.tokens} tokens "
                     f"({data.trained_tokens} trained, {data.trained_tokens / max(data.tokens, 1):.0%}); "
                     f"over max_length {max_length}: {data.truncated} cut at the prompt side; dropped: {dropped}")
    lines.append(f"tool calls: {prepared.traits.style} style; end-of-turn token id {prepared.end_token_id} "
                 f"({prepared.tokenizer.convert_ids_to_tokens(prepared.end_token_id)})")
    return "\n".join(lines)


def run_train(loaded: LoadedConfig, resume: str | None = None) -> Path:
    """Run `ft train`; return the run folder."""
    from ft.doctor import cheap_checks, raise_on_failure

    cfg = loaded.config
    print(f"ft train {loaded.path}\nresolved config (origin in brackets):\n{loaded.describe()}", flush=True)
    raise_on_failure(cheap_checks(loaded))
    prepared = prepare_run(loaded)
    print(describe_data(prepared, cfg.data.max_length), flush=True)
    if prepared.source.origin == "gguf-converted":
        print(f"model: offline copy converted from GGUF at {prepared.source.folder} (Q4_1 weights, close to but not "
              "identical with the Hub model)", flush=True)

    from ft.checkpoints import drop_metrics_after, resolve_resume
    from ft.launch import rank
    from ft.model import choose_dtype
    from ft.outputs import new_run_dir, write_text_atomic

    dtype = choose_dtype(cfg.model.precision)
    if cfg.output.push_to_hub:
        from ft.hub import check_write_access

        user = check_write_access(cfg.output.hub_repo)
        print(f"hub: token of {user} can write to {cfg.output.hub_repo}", flush=True)
    checkpoint = None
    if resume:
        run_dir, checkpoint = resolve_resume(resume, cfg.output.dir, cfg.output.run_name, loaded.path.stem)
        if rank() == 0:
            drop_metrics_after(run_dir / "metrics.jsonl", int(checkpoint.name.split("-")[1]))
        print(f"resuming {run_dir} from {checkpoint.name}", flush=True)
    elif rank() != 0:
        run_dir = Path(cfg.output.dir) / cfg.output.run_name  # rank 0 creates it; torchrun workers share the name
    else:
        run_dir = new_run_dir(cfg.output.dir, cfg.output.run_name, loaded.path)
        write_text_atomic(run_dir / "config.yaml", f"# ft train {loaded.path}: resolved config; "
                          "a comment gives each value's origin, no comment means the default\n" + loaded.to_yaml())
    print(f"run folder: {run_dir}", flush=True)
    return fit(loaded, prepared, dtype, run_dir, checkpoint)


def fit(loaded: LoadedConfig, prepared: Prepared, dtype, run_dir: Path, checkpoint: Path | None) -> Path:
    import torch

    from transformers import set_seed

    from ft.checkpoints import SaveEveryMinutes, StopOnSignal
    from ft.hub import model_card, push_run
    from ft.model import apply_lora, compile_layers, enable_checkpointing, load_model, uncompile_layers
    from ft.outputs import plot_losses, write_json_atomic, write_text_atomic
    from ft.trainer import StepLogger, peak_memory_bytes

    cfg = loaded.config
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    started = time.perf_counter()
    model = load_model(prepared.source, dtype, cfg.model.attn_implementation, cfg.training.method)
    # The LoRA matrices are drawn from the global RNG before the Trainer seeds it: seed here for repeatable runs.
    set_seed(cfg.training.seed)
    if cfg.training.method != "full":
        model = apply_lora(model, cfg.lora, cfg.training.gradient_checkpointing)
    elif cfg.training.gradient_checkpointing:
        enable_checkpointing(model)
    if cfg.training.compile:
        print(f"training.compile: compiling {compile_layers(model)} decoder blocks; the first step takes longer", flush=True)
    from ft.launch import leave_process_group, rank

    logger = StepLogger(run_dir / "metrics.jsonl", is_main=rank() == 0)
    stop = StopOnSignal()
    callbacks = [logger, stop] + ([SaveEveryMinutes(cfg.training.save_every_minutes)] if cfg.training.save_every_minutes else [])
    trainer = build_trainer(cfg, model, prepared, run_dir, callbacks, dtype)
    logger.trainer = trainer
    if cfg.output.push_to_hub:
        from ft.hub import PushCheckpoints

        trainer.add_callback(PushCheckpoints(cfg.output.hub_repo, cfg.output.private, weakref.ref(trainer)))
    print(f"training: {trainable_summary(model)}; global batch {cfg.training.batch_size * cfg.training.grad_accum * trainer.args.world_size} rows "
          f"= {cfg.training.batch_size} rows x {cfg.training.grad_accum} accumulation x {trainer.args.world_size} process(es)", flush=True)

    if checkpoint is not None:
        trainer.restore_counters(checkpoint)
    stop.install()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except torch._dynamo.exc.BackendCompilerFailed as err:  # only training.compile reaches the compiler
        raise compile_failure(err, loaded, run_dir, fresh=checkpoint is None and trainer.state.global_step == 0)
    finally:
        stop.restore()
    if stop.received is not None:
        raise TrainingStopped(f"stopped at step {trainer.state.global_step}; checkpoint written to "
                              f"{trainer.last_checkpoint}.\nResume with: ft train {loaded.path} --resume {run_dir}")
    final_eval = final_evaluation(trainer, prepared) if prepared.eval is not None else {}
    counts = trainer.global_counts()
    leave_process_group()  # the sum of the token counts was the last collective operation
    if not trainer.is_world_process_zero():
        return run_dir
    save_final(trainer, prepared, run_dir)
    uncompile_layers(trainer.model)
    tool_eval_started = time.perf_counter()
    tool_metrics = tool_call_eval(cfg, trainer, prepared)
    logger.eval_seconds += time.perf_counter() - tool_eval_started

    summary = build_summary(cfg, trainer, logger, prepared, started, peak_memory_bytes(), final_eval, counts)
    if tool_metrics is not None:
        summary["tool_eval"] = tool_metrics
    write_json_atomic(run_dir / "summary.json", summary)
    if (run_dir / "metrics.jsonl").exists():
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
    write_text_atomic(run_dir / "adapter" / "README.md", model_card(run_dir, cfg.model.name, cfg.output.hub_repo))
    print(closing_summary(summary, run_dir), flush=True)
    if cfg.output.push_to_hub:
        push_run(run_dir, cfg.output.hub_repo, cfg.output.private)
        print(f"pushed the adapter to https://huggingface.co/{cfg.output.hub_repo}", flush=True)
    return run_dir


def final_evaluation(trainer, prepared: Prepared) -> dict:
    """Run the final eval-loss pass; if compiling its graph fails, run it on the plain blocks instead of losing
    the trained adapter."""
    import torch

    from ft.model import uncompile_layers

    try:
        return trainer.evaluate()
    except torch._dynamo.exc.BackendCompilerFailed as err:
        print(f"training.compile: compiling the evaluation failed ({failure_reason(err)}); evaluating with the plain "
              "blocks", flush=True)
        uncompile_layers(trainer.model)
        return trainer.evaluate()


def failure_reason(err: Exception) -> str:
    """Return the first line of a compile error, plus the first line of the compiler's output when it has one."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    output = lines[lines.index("Output:") + 1] if "Output:" in lines[:-1] else None
    return f"{lines[0]}: {output[:200]}" if output else lines[0]


def compile_failure(err: Exception, loaded: LoadedConfig, run_dir: Path, fresh: bool) -> FtError:
    """Turn torch.compile's failure (a broken compiler, an unsupported operation) into one message with the fix.

    A new run that failed before its first step contains nothing but its config, so its folder is removed."""
    import shutil

    from ft.launch import rank

    if fresh and rank() == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
    return FtError(f"training.compile: torch.compile failed: {failure_reason(err)}\nSet training.compile: false, or "
                   f"run `ft doctor {loaded.path}` with the same --set options to check the compiler.")


def tool_call_eval(cfg, trainer, prepared: Prepared) -> dict | None:
    """Generate and score the next assistant turn of the first eval rows with the model in memory."""
    if prepared.eval is None or cfg.training.tool_eval_rows == 0:
        return None
    from ft.data.prepare import PreparedData, load_conversations, source_list
    from ft.evaluate.runner import evaluate_loaded

    sources = source_list(cfg.data.eval, cfg.data.eval_split, cfg.data.messages_column)
    conversations = load_conversations(sources, cfg.data, cfg.training.seed, cfg.training.tool_eval_rows,
                                       PreparedData(examples=[]), problems=[])
    started = time.perf_counter()
    result = evaluate_loaded(trainer.model, prepared.tokenizer, conversations, prepared.traits, prepared.end_token_id,
                             max_new_tokens=cfg.training.tool_eval_max_new_tokens)
    metrics = {key: round(value, 4) if isinstance(value, float) else value for key, value in result["metrics"].items()}
    shown = ", ".join(f"{key} {value:.3f}" for key, value in metrics.items() if isinstance(value, float))
    print(f"tool-call eval on {len(conversations)} eval rows ({time.perf_counter() - started:.0f} s): {shown}", flush=True)
    return metrics


def build_trainer(cfg, model, prepared: Prepared, run_dir: Path, callbacks: list, dtype):
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ft.data.collate import CPU_LENGTH_MULTIPLE, PackedCollator, PaddedCollator
    from ft.trainer import FtTrainer

    t = cfg.training
    micro_batch, accumulation = micro_batching(cfg)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.log_every_steps,
        eval_strategy="steps" if (t.eval_every_steps and prepared.eval is not None) else "no",
        eval_steps=t.eval_every_steps,
        save_strategy="steps" if t.save_every_steps else "no",
        save_steps=t.save_every_steps or 500,
        save_total_limit=None,  # FtTrainer rotates, counting only complete checkpoints
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        report_to=t.report_to,
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        # NOTE: FSDP goes through the Trainer's own accelerate integration; ft's tests run it on no GPU machine.
        fsdp=f"{t.fsdp} auto_wrap" if t.fsdp != "off" else "",
    )
    pad_id = prepared.tokenizer.pad_token_id or 0
    if cfg.data.packing:
        one_row_on_cpu = micro_batch == 1 and not torch.cuda.is_available()
        collator = PackedCollator(CPU_LENGTH_MULTIPLE if one_row_on_cpu else None, pad_id)
    else:
        collator = PaddedCollator(pad_id)
    trainer = FtTrainer(
        model=model, args=args, data_collator=collator,
        train_dataset=as_features(prepared.train), eval_dataset=as_features(prepared.eval) if prepared.eval else None,
        callbacks=callbacks, keep_checkpoints=t.keep_checkpoints,
        uncast_adapter_inputs=uncast_adapter_inputs(t, dtype),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def uncast_adapter_inputs(training, dtype) -> bool:
    """Return whether FtTrainer turns off PEFT's float32 cast of LoRA inputs (see FtTrainer.adapter_input_casts)."""
    import torch

    # NOTE: not under FSDP, whose mixed precision may not run through autocast; untested here (no GPU).
    return dtype in (torch.bfloat16, torch.float16) and training.method != "full" and training.fsdp == "off"


def micro_batching(cfg) -> tuple[int, int]:
    """Return (rows per micro-batch, micro-batches per optimizer step) for the configured batch.

    With packing on a CPU, each micro-batch is one row: sdpa then runs its causal kernel with no mask, while
    several rows packed into one sequence need a block-diagonal mask that the CPU kernel materialises. Measured on
    2 CPU cores with AMX (SmolLM2-135M, LoRA, bfloat16 autocast, 8 rows of about 730 tokens, forward and backward):
    one row at a time 366 tok/s and 3.8 GB peak, 4 rows padded 326 tok/s and 8.9 GB, 4 rows packed with their block
    mask 246 tok/s and 7.6 GB (in float32: 282, 205 and 16.1 GB for padded). The loss is the same either way,
    because it is divided by the trained tokens of the whole optimizer step.
    """
    import torch

    t = cfg.training
    if cfg.data.packing and not torch.cuda.is_available():
        return 1, t.batch_size * t.grad_accum
    return t.batch_size, t.grad_accum


def as_features(data) -> list[dict]:
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in data.examples]


def trainable_summary(model) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,} trainable of {total:,} parameters ({trainable / total:.2%})"


def save_final(trainer, prepared: Prepared, run_dir: Path) -> None:
    """Write the adapter (or full model) with its tokenizer, chat template and generation config, atomically."""
    from ft.outputs import replace_folder_atomic, staging_folder

    target = run_dir / "adapter"
    staging = staging_folder(target)
    model = trainer.model
    model.config.use_cache = True  # turned off for training only (see load_model)
    model.save_pretrained(staging)
    # The saved tokenizer's EOS is the end-of-turn token, so that tools reading only the tokenizer stop there too.
    prepared.tokenizer.eos_token = prepared.tokenizer.convert_ids_to_tokens(prepared.end_token_id)
    prepared.tokenizer.save_pretrained(staging)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        # The tuned model must stop at the end-of-turn token that training taught it to write.
        generation.eos_token_id = prepared.end_token_id
        generation.pad_token_id = prepared.tokenizer.pad_token_id
        generation.save_pretrained(staging)
    (staging / "ft_model.json").write_text(json.dumps({
        "base_model": prepared.source.name, "base_folder": str(prepared.source.folder or ""),
        "base_revision": prepared.source.revision, "method": trainer_method(trainer),
        "origin": prepared.source.origin, "tool_call_style": prepared.traits.style,
        "end_token_id": prepared.end_token_id,
    }, indent=2) + "\n")
    replace_folder_atomic(staging, target)


def trainer_method(trainer) -> str:
    return "full" if not hasattr(trainer.model, "peft_config") else "lora"


def build_summary(cfg, trainer, logger, prepared: Prepared, started: float, peak: int, final_eval: dict,
                  counts: tuple[int, int]) -> dict:
    """Return summary.json's fields; `counts` are the tokens and trained tokens of all processes together."""
    losses = [row["loss"] for row in logger.rows if "loss" in row]
    wall = time.perf_counter() - started
    train_s = time.perf_counter() - logger.start
    tokens, trained = counts
    return {
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "tokens_seen": tokens,
        "trained_tokens": trained,
        "wall_time_s": round(wall, 2),
        "train_time_s": round(train_s, 2),
        "eval_time_s": round(logger.eval_seconds, 2),  # within train_time_s: eval-loss passes, tool-call evaluation
        "time_to_first_step_s": round(logger.first_step_s or 0.0, 2),
        "tokens_per_s": round(tokens / max(train_s, 1e-9), 1),
        "trained_tokens_per_s": round(trained / max(train_s, 1e-9), 1),
        "peak_memory_gb": round(peak / 1e9, 3),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "eval_loss": round(final_eval["eval_loss"], 6) if "eval_loss" in final_eval else None,
        "train_rows": len(prepared.train.examples),
        "model": cfg.model.name,
        "model_origin": prepared.source.origin,
        "device": device_name(),
        "dtype": str(trainer.model.dtype).removeprefix("torch."),
    }


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def closing_summary(summary: dict, run_dir: Path) -> str:
    eval_part = f", eval loss {summary['eval_loss']:.4f}" if summary["eval_loss"] is not None else ""
    first = summary["first_loss"]
    last = summary["last_loss"]
    loss_part = f"loss {first:.4f} -> {last:.4f}" if first is not None and last is not None else "no loss logged"
    return (f"done: {summary['steps']} steps in {summary['train_time_s']:.0f} s | {loss_part}{eval_part} | "
            f"{summary['tokens_seen']:,} tokens ({summary['trained_tokens']:,} trained) at "
            f"{summary['tokens_per_s']:.0f} tok/s | peak memory {summary['peak_memory_gb']:.2f} GB\n"
            f"adapter: {run_dir / 'adapter'}\nsummary: {run_dir / 'summary.json'}")
