"""training.compile: decoder blocks compiled with torch.compile give the plain blocks' loss and LoRA gradients.

The tiny LoRA model runs in float32 on a one-row CPU micro-batch (padded at its end to 64 tokens, as `ft train`
does) and on two packed rows. Inductor fuses the element-wise work and may sum in another order, so the results
agree within float32 rounding, not bit for bit: LOSS_RTOL and GRAD_RTOL/GRAD_ATOL (measured: see each constant).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ft.config import DataSection, LoraSection
from ft.data.collate import CPU_LENGTH_MULTIPLE, PackedCollator
from ft.data.prepare import prepare
from ft.data.render import find_end_token, probe_template
from ft.model import apply_lora, compile_layers, decoder_layers, load_model, load_tokenizer, resolve_model, uncompile_layers
from ft.trainer import trained_token_loss

REPO = Path(__file__).resolve().parents[1]
QUICKSTART_TRAIN = REPO / "data" / "quickstart" / "train.jsonl"
LOSS_RTOL = 1e-5  # measured: equal losses
GRAD_RTOL = 1e-4  # measured: at most 7e-7 of the largest gradient entry
GRAD_ATOL = 1e-7


@pytest.fixture(scope="module")
def batches(tiny_model_dir) -> dict[str, dict]:
    tokenizer = load_tokenizer(resolve_model(str(tiny_model_dir)))
    traits = probe_template(tokenizer, "auto", "llama", "HuggingFaceTB/SmolLM2-135M-Instruct")
    data = DataSection(train=str(QUICKSTART_TRAIN), max_rows=2, max_length=1024)
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=42)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in prepared.examples]
    return {"one row, end-padded": PackedCollator(CPU_LENGTH_MULTIPLE, tokenizer.pad_token_id)(rows[:1]),
            "two packed rows": PackedCollator()(rows)}


def lora_model(model_dir):
    model = load_model(resolve_model(str(model_dir)), torch.float32, "sdpa")
    model = apply_lora(model, LoraSection(), gradient_checkpointing=False)
    torch.manual_seed(1)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would leave every A without a gradient
            torch.nn.init.normal_(parameter, std=0.05)
    model.train()
    return model


def loss_and_gradients(model, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss, count = trained_token_loss(model, batch)
    (loss / count).backward()
    return loss.item(), {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def test_compiled_blocks_match_plain(tiny_model_dir, batches):
    model = lora_model(tiny_model_dir)
    plain = {name: loss_and_gradients(model, batch) for name, batch in batches.items()}

    assert compile_layers(model) == 2
    assert all(layer._compiled_call_impl is not None for layer in decoder_layers(model))
    compiled = {name: loss_and_gradients(model, batch) for name, batch in batches.items()}

    for name in batches:
        (plain_loss, plain_grads), (compiled_loss, compiled_grads) = plain[name], compiled[name]
        assert compiled_loss == pytest.approx(plain_loss, rel=LOSS_RTOL), name
        assert compiled_grads.keys() == plain_grads.keys()
        for key in plain_grads:
            assert plain_grads[key].abs().max() > 0, f"{name} {key}: zero gradient proves nothing"
            torch.testing.assert_close(compiled_grads[key], plain_grads[key], rtol=GRAD_RTOL, atol=GRAD_ATOL,
                                       msg=f"{name} {key}")

    uncompile_layers(model)
    assert all(layer._compiled_call_impl is None for layer in decoder_layers(model))
    again, _ = loss_and_gradients(model, batches["two packed rows"])
    assert again == plain["two packed rows"][0]  # the plain blocks again: same operations, same bits


def test_train_with_compile(tmp_path, tiny_model_dir):
    """`ft train` with training.compile: the training, the eval-loss pass (compiled as well) and the tool-call
    evaluation (on the plain blocks again) all run, and the run folder is complete."""
    import json
    import os
    import subprocess
    import sys

    config = tmp_path / "compile.yaml"
    config.write_text(f"""# Run: ft train compile.yaml
model:
  name: {tiny_model_dir}
data:
  train: {QUICKSTART_TRAIN}
  eval: {REPO / 'data/quickstart/eval.jsonl'}
  max_rows: 8
  eval_max_rows: 2
  max_length: 512
training:
  max_steps: 2
  batch_size: 4
  learning_rate: 0.01
  compile: true
  tool_eval_rows: 2
  tool_eval_max_new_tokens: 8
output:
  dir: {tmp_path / 'runs'}
  run_name: compiled
""")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "ft.cli", "train", str(config)], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training.compile: compiling 2 decoder blocks" in result.stdout
    summary = json.loads((tmp_path / "runs" / "compiled" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["eval_loss"] is not None
    assert summary["tool_eval"]["rows"] == 2
    assert (tmp_path / "runs" / "compiled" / "adapter" / "adapter_model.safetensors").is_file()


def test_compiler_check(monkeypatch, tmp_path):
    from ft.doctor import check_compiler

    compiler = tmp_path / "my-c++"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    check = check_compiler({"cuda": False})
    assert (check.status, check.message) == ("pass", f"torch.compile will build its kernels with {compiler}")

    compiler.write_text("#!/bin/sh\nexit 1\n")
    check = check_compiler({"cuda": False})
    assert check.status == "fail"
    assert check.message == f"training.compile needs a working C++ compiler, and `{compiler} --version` failed"

    monkeypatch.setenv("CXX", "no-such-compiler")
    check = check_compiler({"cuda": False})
    assert check.status == "fail"
    assert check.message == "training.compile needs a C++ compiler (no-such-compiler), and none is on PATH"
    assert check.fix == "install one (e.g. `apt install g++`), or set training.compile: false"


def train_with_compiler(tmp_path, model_dir, compiler: str):
    import os
    import subprocess
    import sys

    config = tmp_path / "compile.yaml"
    config.write_text(f"model:\n  name: {model_dir}\ndata:\n  train: {QUICKSTART_TRAIN}\n  max_rows: 4\n"
                      f"training:\n  max_steps: 1\n  compile: true\noutput:\n  dir: {tmp_path / 'runs'}\n")
    # A cache of its own, so that Inductor has to build its kernels with this compiler.
    env = dict(os.environ, HF_HUB_OFFLINE="1", CXX=compiler, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    return subprocess.run([sys.executable, "-m", "ft.cli", "train", str(config)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_compile_without_compiler_stops_early(tmp_path, tiny_model_dir):
    """No compiler: `ft train` stops at the preflight checks with exit code 2 and creates no run folder."""
    result = train_with_compiler(tmp_path, tiny_model_dir, "no-such-compiler")
    assert result.returncode == 2
    assert "FAIL  compile  training.compile needs a C++ compiler (no-such-compiler)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_compile_failure_in_training(tmp_path, tiny_model_dir):
    """A compiler that exits 0 on `--version` but builds nothing passes the preflight check. Training then stops at
    its first step with one message and exit code 2, and the new run folder is removed."""
    compiler = tmp_path / "broken-c++"
    compiler.write_text('#!/bin/sh\nfor arg in "$@"; do [ "$arg" = --version ] && exit 0; done\nexit 1\n')
    compiler.chmod(0o755)
    result = train_with_compiler(tmp_path, tiny_model_dir, str(compiler))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: training.compile: torch.compile failed: " in result.stderr
    assert "Set training.compile: false, or run `ft doctor" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any((tmp_path / "runs").iterdir())


def test_compile_with_fsdp_refused():
    from ft.config import Config, check_consistency

    config = Config.model_validate({"model": {"name": "m"}, "data": {"train": "t.jsonl"},
                                    "training": {"compile": True, "fsdp": "full_shard"}})
    assert check_consistency(config) == [("training.compile", "is not supported together with training.fsdp; set "
                                          "training.compile: false, or training.fsdp: off.")]
