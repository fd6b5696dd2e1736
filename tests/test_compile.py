"""training.compile: decoder blocks compiled with torch.compile give the plain blocks' loss and LoRA gradients.

The tiny LoRA model runs in float32 on a one-row CPU micro-batch (padded at its end to 64 tokens, as `ft train`
does) and on two packed rows. Inductor fuses the element-wise work and may sum in another order, so the results
agree within float32 rounding, not bit for bit: LOSS_RTOL and GRAD_RTOL/GRAD_ATOL (measured: see each constant).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    result = run_train(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training.compile: compiling 2 decoder blocks" in result.stdout
    summary = json.loads((tmp_path / "runs" / "compiled" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["eval_loss"] is not None
    assert summary["tool_eval"]["rows"] == 2
    assert (tmp_path / "runs" / "compiled" / "adapter" / "adapter_model.safetensors").is_file()


def run_train(config: Path, **env) -> subprocess.CompletedProcess:
    """Run `ft train CONFIG` in a subprocess, offline, with `env` added to the environment."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **env)
    return subprocess.run([sys.executable, "-m", "ft.cli", "train", str(config)], capture_output=True, text=True,
                          env=environment, cwd=REPO, timeout=600)


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_compiler_check(monkeypatch, tmp_path):
    from ft.doctor import check_compiler

    real = shutil.which("g++")
    assert real, "the compile tests need g++ on PATH"
    monkeypatch.setenv("CXX", real)
    check = check_compiler({"cuda": False})
    assert check.status == "pass"
    assert check.message == f"torch.compile will build its kernels with {real}"

    # Exits 0 but writes no object file.
    monkeypatch.setenv("CXX", executable(tmp_path / "idle-c++", "#!/bin/sh\nexit 0\n"))
    check = check_compiler({"cuda": False})
    assert check.status == "fail"
    assert check.message.endswith("failed on a one-line file that includes Python.h (exit code 0: no output)")

    broken = executable(tmp_path / "broken-c++", "#!/bin/sh\necho 'broken: cannot compile' >&2\nexit 1\n")
    monkeypatch.setenv("CXX", broken)
    check = check_compiler({"cuda": False})
    assert check.message == (f"training.compile needs a working compiler, and {broken} failed on a one-line file "
                             "that includes Python.h (exit code 1: broken: cannot compile)")
    assert check.fix == "set CXX to a working compiler, or unset it, or set training.compile: false"

    monkeypatch.setenv("CXX", "no-such-compiler")
    check = check_compiler({"cuda": False})
    assert check.message == "training.compile needs a compiler, and CXX='no-such-compiler' is not found"

    monkeypatch.setenv("CXX", "")  # Inductor takes an empty CXX as the compiler's name, not as unset
    assert check_compiler({"cuda": False}).message == "training.compile needs a compiler, and CXX='' is not found"


def train_with_compiler(tmp_path, model_dir, compiler: str) -> subprocess.CompletedProcess:
    config = tmp_path / "compile.yaml"
    config.write_text(f"model:\n  name: {model_dir}\ndata:\n  train: {QUICKSTART_TRAIN}\n  max_rows: 4\n"
                      f"training:\n  max_steps: 1\n  compile: true\noutput:\n  dir: {tmp_path / 'runs'}\n")
    # A cache of its own and no graph caches, so that Inductor has to build its kernels with this compiler.
    return run_train(config, CXX=compiler, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
                     TORCHINDUCTOR_FX_GRAPH_CACHE="0", TORCHINDUCTOR_AUTOGRAD_CACHE="0")


def test_compile_without_compiler_stops_early(tmp_path, tiny_model_dir):
    """No compiler: `ft train` stops at the preflight checks with exit code 2 and creates no run folder."""
    result = train_with_compiler(tmp_path, tiny_model_dir, "no-such-compiler")
    assert result.returncode == 2
    assert "FAIL  compile  training.compile needs a compiler, and CXX='no-such-compiler' is not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_compile_failure_in_training(tmp_path, tiny_model_dir):
    """A compiler that builds the preflight probe but fails on Inductor's kernels: training stops at its first
    step with one message and exit code 2, and the new run folder is removed."""
    compiler = executable(tmp_path / "picky-c++", f"""#!/bin/sh
case "$*" in *--version*|*ft-compile-check*) exec {shutil.which("g++")} "$@";; esac
echo 'picky: will not compile this' >&2
exit 1
""")
    result = train_with_compiler(tmp_path, tiny_model_dir, compiler)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: training.compile: torch.compile failed: CppCompileError: C++ compile error: picky: will not " \
           "compile this" in result.stderr
    assert "with the same --set options to check the compiler." in result.stderr
    assert "Traceback" not in result.stderr
    assert not any((tmp_path / "runs").iterdir())


def test_final_evaluation_falls_back_to_plain_blocks(tiny_model_dir, capsys):
    from types import SimpleNamespace

    from torch._dynamo.exc import BackendCompilerFailed

    from ft.train import final_evaluation

    model = lora_model(tiny_model_dir)
    compile_layers(model)
    calls = []

    def evaluate():
        calls.append(all(layer._compiled_call_impl is None for layer in decoder_layers(model)))
        if len(calls) == 1:
            raise BackendCompilerFailed(lambda: None, RuntimeError("no space left on device"), None)
        return {"eval_loss": 1.5}

    assert final_evaluation(SimpleNamespace(model=model, evaluate=evaluate), None) == {"eval_loss": 1.5}
    assert calls == [False, True]  # the second pass ran on the plain blocks
    assert "compiling the evaluation failed" in capsys.readouterr().out


def test_compile_with_fsdp_refused():
    from ft.config import Config, check_consistency

    config = Config.model_validate({"model": {"name": "m"}, "data": {"train": "t.jsonl"},
                                    "training": {"compile": True, "fsdp": "full_shard"}})
    assert check_consistency(config) == [("training.compile", "is not supported together with training.fsdp; set "
                                          "training.compile: false, or training.fsdp: off.")]
