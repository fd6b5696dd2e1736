"""Packing and padding on a tiny model: packed rows never see each other, and padding changes nothing.

Two real quickstart rows are run packed into one sequence and each alone; logits and the training loss must agree
to 1e-5, for the sdpa and eager attention kernels.
"""

from __future__ import annotations

import pytest
import torch

from ft.config import DataSection
from ft.data.collate import PackedCollator, PaddedCollator
from ft.data.prepare import IGNORE, prepare
from ft.data.render import find_end_token, probe_template
from ft.trainer import trained_token_loss

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def features(tokenizer) -> list[dict]:
    traits = probe_template(tokenizer, "auto", "llama", "HuggingFaceTB/SmolLM2-135M-Instruct")
    data = DataSection(train="data/quickstart/train.jsonl", max_rows=2, max_length=1024)
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in prepared.examples]


def load_tiny(folder, attention: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attention)
    return model.train()


def model_inputs(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key != "labels"}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_rows_match_rows_alone(attention, tiny_model_dir, features):
    model = load_tiny(tiny_model_dir, attention)
    collate = PackedCollator()
    first, second = features
    split = len(first["input_ids"])
    with torch.no_grad():
        packed = model(**model_inputs(collate([first, second]))).logits[0]
        alone_first = model(**model_inputs(collate([first]))).logits[0]
        alone_second = model(**model_inputs(collate([second]))).logits[0]
    assert (packed[:split] - alone_first).abs().max().item() < TOLERANCE
    assert (packed[split:] - alone_second).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_matches_rows_alone(attention, tiny_model_dir, features):
    model = load_tiny(tiny_model_dir, attention)
    collate = PackedCollator()
    with torch.no_grad():
        packed_sum, packed_count = trained_token_loss(model, collate(features))
        first_sum, first_count = trained_token_loss(model, collate(features[:1]))
        second_sum, second_count = trained_token_loss(model, collate(features[1:]))
    assert packed_count == first_count + second_count
    alone_mean = (first_sum + second_sum).item() / packed_count
    assert abs(packed_sum.item() / packed_count - alone_mean) < TOLERANCE


def test_packed_positions_restart_per_row(features):
    batch = PackedCollator()(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["position_ids"][0].tolist() == list(range(lengths[0])) + list(range(lengths[1]))
    assert "attention_mask" not in batch
    assert batch["use_cache"] is False
    assert batch["labels"][0, lengths[0]].item() == IGNORE


def test_padding_masked_by_position(tiny_model_dir, tokenizer, features):
    """SmolLM2 pads with its EOS token; every real EOS label survives and the padded row's logits do not change."""
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    short, long = sorted(features, key=lambda f: len(f["input_ids"]))
    batch = PaddedCollator(tokenizer.pad_token_id)([short, long])
    length = len(short["input_ids"])
    eos_labels = [label for label in short["labels"] if label == tokenizer.eos_token_id]
    assert eos_labels
    assert batch["labels"][0, :length].tolist() == short["labels"]
    assert (batch["labels"][0, length:] == IGNORE).all()
    assert batch["attention_mask"][0].tolist() == [1] * length + [0] * (batch["input_ids"].shape[1] - length)

    model = load_tiny(tiny_model_dir, "sdpa")
    with torch.no_grad():
        padded = model(**model_inputs(batch)).logits[0, :length]
        alone = model(input_ids=torch.tensor([short["input_ids"]]), use_cache=False).logits[0]
    assert (padded - alone).abs().max().item() < TOLERANCE
