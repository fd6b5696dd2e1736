"""Measurements that `ft plan --calibrate` takes on a CPU after its timed training steps, with the trained model
still in memory: the resident memory of one long row, the speed of a forward pass alone, and one decoding step."""

from __future__ import annotations

import time

LONG_ROW_TRAINED = 64
FORWARD_ROWS = 8
DECODE_PROMPT_TOKENS = 128
DECODE_STEPS = 16


def data_tokens(prepared, count: int) -> list[int]:
    """Return `count` token ids of the training rows, repeated as needed: real text for synthetic rows."""
    source = [token for example in prepared.train.examples[:64] for token in example.input_ids]
    return (source * (count // max(len(source), 1) + 1))[:count]


def long_row_peak(trainer, prepared, length: int) -> dict | None:
    """Train one more micro-batch, a single `length`-token row; return its rows and the peak resident memory in it.

    Resident memory on a CPU does not grow in proportion to the activations (see ft.plan.memory.ResidentTerms): this
    second point, longer than the timed rows, separates the part that grows with them from the part that does not.
    Only its last positions train, so its logits stay small. None where the kernel cannot reset the peak (not Linux).
    """
    from ft.data.prepare import IGNORE

    if not reset_peak_rss():
        return None
    ids = data_tokens(prepared, length)
    trained = min(LONG_ROW_TRAINED, length - 1)
    labels = [IGNORE] * (length - trained) + ids[-trained:]
    batch = trainer.data_collator([{"input_ids": ids, "labels": labels}])
    trainer.training_step(trainer.model, batch, num_items_in_batch=trained)
    trainer.model.zero_grad(set_to_none=True)
    return {"rows": [(length, trained)], "peak_bytes": peak_rss_bytes_since_reset()}


def forward_seconds(trainer, prepared) -> dict:
    """Time the loss of the first FORWARD_ROWS training rows without gradients, as evaluation computes it.

    Return the micro-batches, as rows of (tokens, trained tokens), and the seconds.
    """
    import torch

    from ft.data.prepare import IGNORE
    from ft.train import as_features

    examples = as_features(prepared.train)[:FORWARD_ROWS]
    batches = [trainer.data_collator([example]) for example in examples]
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            trainer.compute_loss(model, batches[0])  # builds the forward-only kernels
            started = time.perf_counter()
            for batch in batches:
                trainer.compute_loss(model, batch)
            seconds = time.perf_counter() - started
    finally:
        model.train(was_training)
    rows = [[(len(e["input_ids"]), sum(1 for label in e["labels"] if label != IGNORE))] for e in examples]
    return {"micro_batches": rows, "seconds": seconds}


def decode_step_seconds(model, prepared) -> float:
    """Return the seconds of one greedy decoding step of a batch, as the tool-call evaluation after training runs it."""
    import torch

    from ft.plan.tool_eval import EVAL_BATCH_ROWS

    ids = torch.tensor(data_tokens(prepared, EVAL_BATCH_ROWS * DECODE_PROMPT_TOKENS)).view(EVAL_BATCH_ROWS, -1)
    ids = ids.to(next(model.parameters()).device)

    def generate(new_tokens: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=True,
                           max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
        return time.perf_counter() - started

    was_training = model.training
    model.eval()
    try:
        generate(2)  # builds the kernels of both passes
        return max(generate(1 + DECODE_STEPS) - generate(1), 0.0) / DECODE_STEPS
    finally:
        model.train(was_training)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident memory of this process (Linux 4.0 and later); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes_since_reset() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0.0
