"""ft's fast loss (logits only at trained positions) against the plain loss (full logits, shifted cross-entropy).

Both run the same tiny LoRA model on the same batch, padded and packed, in float32. The loss and every LoRA
gradient must agree within a relative 1e-5. The paths differ only in which rows go through the LM head matrix
product, so only float32 rounding separates them (measured: at most 1e-7 relative on the loss, gradients identical).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ft.config import DataSection, LoraSection
from ft.data.collate import PackedCollator, PaddedCollator
from ft.data.prepare import IGNORE, prepare
from ft.data.render import find_end_token, probe_template
from ft.model import apply_lora, load_model, load_tokenizer, resolve_model
from ft.trainer import trained_token_loss

REPO = Path(__file__).resolve().parents[1]
QUICKSTART_TRAIN = REPO / "data" / "quickstart" / "train.jsonl"
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-5
GRAD_ATOL = 1e-8


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(resolve_model(str(tiny_model_dir)))


@pytest.fixture(scope="module")
def features(tokenizer) -> list[dict]:
    """Two quickstart rows of different lengths, rendered and masked by ft's own data preparation."""
    traits = probe_template(tokenizer, "auto", "llama", "HuggingFaceTB/SmolLM2-135M-Instruct")
    data = DataSection(train=str(QUICKSTART_TRAIN), max_rows=2, max_length=1024)
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=42)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in prepared.examples]
    assert len({len(row["input_ids"]) for row in rows}) > 1, "rows of equal length would leave no padding to test"
    return rows


def lora_model(model_dir, dtype):
    """Build the tiny model with LoRA in training mode, with random LoRA B weights."""
    model = load_model(resolve_model(str(model_dir)), dtype, "sdpa")
    model = apply_lora(model, LoraSection(), gradient_checkpointing=False)
    # LoRA starts with B = 0, which makes the gradient of every A zero. Random B gives every LoRA weight a gradient.
    torch.manual_seed(1)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    model.train()
    return model


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return lora_model(tiny_model_dir, torch.float32)


def make_batch(layout: str, features: list[dict], tokenizer) -> dict:
    if layout == "padded":
        return PaddedCollator(tokenizer.pad_token_id)(features)
    return PackedCollator()(features)


def plain_loss(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy from the full logits over shifted labels, the textbook way."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits.float()
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shifted_labels = batch["labels"][:, 1:].reshape(-1)
    loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="sum")(shifted_logits, shifted_labels)
    return loss, int((shifted_labels != IGNORE).sum())


def lora_gradients(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_fast_loss_equals_plain(layout, model, features, tokenizer):
    batch = make_batch(layout, features, tokenizer)
    with torch.no_grad():
        fast, fast_count = trained_token_loss(model, batch)
        plain, plain_count = plain_loss(model, batch)

    assert fast_count == plain_count
    assert fast_count > 0
    torch.testing.assert_close(fast, plain, rtol=LOSS_RTOL, atol=0.0)


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_fast_lora_gradients_equal_plain(layout, model, features, tokenizer):
    batch = make_batch(layout, features, tokenizer)
    fast = lora_gradients(model, trained_token_loss(model, batch)[0])
    plain = lora_gradients(model, plain_loss(model, batch)[0])

    assert fast.keys() == plain.keys()
    assert len(fast) == 2 * 7 * 2  # A and B of 7 linear layers in each of 2 blocks
    for name in plain:
        assert plain[name].abs().max() > 0, f"{name}: zero gradient, the comparison would prove nothing"
        torch.testing.assert_close(fast[name], plain[name], rtol=GRAD_RTOL, atol=GRAD_ATOL, msg=name)


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_fast_path_projects_trained_positions_only(layout, model, features, tokenizer):
    batch = make_batch(layout, features, tokenizer)
    projected_rows = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: projected_rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    try:
        with torch.no_grad():
            _, count = trained_token_loss(model, batch)
    finally:
        hook.remove()

    assert projected_rows == [count]
    assert count < batch["input_ids"].numel() // 2  # quickstart rows are mostly prompt


def test_packed_loss_equals_padded(model, features, tokenizer):
    # Packed rows must not attend to each other, so the packed batch gives the padded batch's loss.
    with torch.no_grad():
        packed, packed_count = trained_token_loss(model, make_batch("packed", features, tokenizer))
        padded, padded_count = trained_token_loss(model, make_batch("padded", features, tokenizer))

    assert packed_count == padded_count
    torch.testing.assert_close(packed, padded, rtol=LOSS_RTOL, atol=0.0)


def test_batch_without_trained_token(model, features, tokenizer):
    untrained = [{"input_ids": row["input_ids"], "labels": [IGNORE] * len(row["labels"])} for row in features]
    batch = make_batch("padded", untrained, tokenizer)
    loss, count = trained_token_loss(model, batch)
    plain, plain_count = plain_loss(model, batch)
    gradients = lora_gradients(model, loss)

    assert count == plain_count == 0
    assert loss.item() == 0.0
    assert plain.item() == 0.0
    assert all(gradient.abs().max() == 0 for gradient in gradients.values())


def test_uncast_lora_inputs_same_loss(tiny_model_dir, features, tokenizer):
    """FtTrainer stops PEFT's float32 cast of LoRA inputs under bfloat16 autocast: same loss, same gradients.

    Autocast casts the input straight back to bfloat16, so the cast only cost copies. The results must be equal
    within float32 summation order (measured: identical).
    """
    from peft.helpers import disable_input_dtype_casting

    model = lora_model(tiny_model_dir, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    batch = make_batch("packed", features, tokenizer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast_loss, _ = trained_token_loss(model, batch)
    cast = lora_gradients(model, cast_loss)
    with torch.autocast("cpu", dtype=torch.bfloat16), disable_input_dtype_casting(model):
        uncast_loss, _ = trained_token_loss(model, batch)
    uncast = lora_gradients(model, uncast_loss)

    torch.testing.assert_close(uncast_loss, cast_loss, rtol=LOSS_RTOL, atol=0.0)
    for name in cast:
        assert cast[name].abs().max() > 0, name
        torch.testing.assert_close(uncast[name], cast[name], rtol=GRAD_RTOL, atol=GRAD_ATOL, msg=name)


def test_uncast_only_under_autocast():
    from types import SimpleNamespace

    from ft.train import uncast_adapter_inputs

    lora = SimpleNamespace(method="lora", fsdp="off")
    assert uncast_adapter_inputs(lora, torch.bfloat16)
    assert uncast_adapter_inputs(lora, torch.float16)
    assert not uncast_adapter_inputs(lora, torch.float32)
    assert not uncast_adapter_inputs(SimpleNamespace(method="full", fsdp="off"), torch.bfloat16)
    assert not uncast_adapter_inputs(SimpleNamespace(method="lora", fsdp="full_shard"), torch.bfloat16)


def test_end_padding_same_loss(model, features, tokenizer):
    """A one-row CPU micro-batch padded at its end to a multiple of 64 gives the unpadded loss and gradients."""
    row = [features[0]]
    plain = PackedCollator()(row)
    padded = PackedCollator(pad_to_multiple_of=64, pad_token_id=tokenizer.pad_token_id)(row)
    length = len(features[0]["input_ids"])
    assert length % 64 != 0, "a row already at a multiple of 64 would get no padding"
    assert padded["input_ids"].shape[1] == -length % 64 + length
    assert padded["real_tokens"] == plain["real_tokens"] == length
    assert "attention_mask" not in padded
    assert "position_ids" not in padded

    plain_loss_value, plain_count = trained_token_loss(model, plain)
    plain_grads = lora_gradients(model, plain_loss_value)
    padded_loss_value, padded_count = trained_token_loss(model, padded)
    padded_grads = lora_gradients(model, padded_loss_value)

    assert padded_count == plain_count > 0
    torch.testing.assert_close(padded_loss_value, plain_loss_value, rtol=LOSS_RTOL, atol=0.0)
    for name in plain_grads:
        # The longer matrix products sum in another order: measured at most 8e-8 apart, on gradients up to 0.11.
        torch.testing.assert_close(padded_grads[name], plain_grads[name], rtol=GRAD_RTOL, atol=1e-6, msg=name)


def test_packed_rows_never_end_padded(features):
    batch = PackedCollator(pad_to_multiple_of=64, pad_token_id=0)(features)
    assert batch["input_ids"].shape[1] == sum(len(f["input_ids"]) for f in features)
