"""Preflight failures on the smallest input that shows each: library versions, LoRA targets, precision.

Each must be rejected before any download, weight load or run folder, with a message that names the fix.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

import ft.cli
import ft.model
from ft import doctor
from ft.config import load_config
from ft.errors import FtError

REPO = Path(__file__).resolve().parents[1]
T4 = {"cuda": True, "name": "Tesla T4", "bf16": False, "capability": "7.5"}
H100 = {"cuda": True, "name": "NVIDIA H100 80GB HBM3", "bf16": True, "capability": "9.0"}
CPU = {"cuda": False, "name": "CPU", "bf16": False, "capability": None}
LLAMA_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_config(tmp_path: Path, model: Path | str, extra: str = "") -> Path:
    path = tmp_path / "kind.yaml"
    path.write_text(f"""model:
  name: {model}
data:
  train: {REPO / 'data/quickstart/train.jsonl'}
  max_rows: 4
  max_length: 256
training:
  max_steps: 1
  batch_size: 1
output:
  dir: {tmp_path / 'runs'}
{extra}""")
    return path


def old_transformers(monkeypatch, installed: str = "4.57.1") -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda package: installed if package == "transformers" else real(package))


# ---------------------------------------------------------------------------------------------------------------
# Library versions that do not fit together


def test_old_transformers_fails_doctor(monkeypatch, capsys):
    old_transformers(monkeypatch)
    monkeypatch.setattr(ft.cli, "PLUGGED_COMMANDS", [("doctor", "ft.doctor", "check the setup")])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ft.cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert ("FAIL  versions  transformers 4.57.1 is outside the supported range >=5.0,<6 -> run `uv sync` "
            "(or pip install 'transformers>=5.0,<6')") in out.splitlines()
    assert "SKIP  device  fix the versions first" in out


def test_old_transformers_stops_cheap_checks(monkeypatch, tmp_path):
    old_transformers(monkeypatch, "6.0.0")
    loaded = load_config(write_config(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct"))
    checks = doctor.cheap_checks(loaded)
    with pytest.raises(FtError) as err:
        doctor.raise_on_failure(checks)
    assert "transformers 6.0.0 is outside the supported range >=5.0,<6" in str(err.value)
    assert [check.name for check in checks if check.status == "skip"] == ["device", "precision", "disk"]


# ---------------------------------------------------------------------------------------------------------------
# LoRA target modules that the architecture does not have


def test_gpt2_target_on_llama_rejected(tmp_path, tiny_model_dir, monkeypatch, capsys):
    def no_weights(*args, **kwargs):
        raise AssertionError("the weights loaded before the LoRA targets were checked")

    monkeypatch.setattr(ft.model, "load_model", no_weights)
    config = write_config(tmp_path, tiny_model_dir, "lora:\n  target_modules: [c_attn]\n")
    assert ft.cli.main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lora.target_modules: c_attn not found in this llama model. Its linear layers are ")
    for name in LLAMA_LINEAR_LAYERS:
        assert name in err
    assert "`all-linear`" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------------------
# Precision that the hardware or the architecture cannot do


def test_bfloat16_on_t4_rejected():
    check = doctor.check_precision("bfloat16", "llama", T4)
    assert check.line() == "FAIL  precision  bfloat16 not supported on Tesla T4 -> set model.precision: auto"


def test_float16_gemma3_rejected():
    check = doctor.check_precision("float16", "gemma3", H100)
    assert check.status == "fail"
    assert check.message == "float16 overflows in gemma3 models (activations exceed its range)"
    assert check.fix == "set model.precision: auto or bfloat16"


def test_auto_on_cpu_is_float32(monkeypatch):
    assert doctor.check_precision("auto", "llama", CPU).message == "auto -> float32 on CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ft.model, "cpu_supports_bf16", lambda: False)
    assert ft.model.choose_dtype("auto") == torch.float32


def test_auto_on_bfloat16_cpu(monkeypatch):
    cpu = {**CPU, "bf16": True}
    assert doctor.check_precision("auto", "llama", cpu).message == "auto -> bfloat16 on CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ft.model, "cpu_supports_bf16", lambda: True)
    assert ft.model.choose_dtype("auto") == torch.bfloat16
    assert ft.model.choose_dtype("float32") == torch.float32


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_tile amx_bf16 amx_int8", True),
])
def test_cpu_bfloat16_from_cpuinfo(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert ft.model.cpu_supports_bf16(cpuinfo) is expected
    assert ft.model.cpu_supports_bf16(tmp_path / "missing") is False


def test_gemma3_folder_float16_rejected(tmp_path, monkeypatch):
    """A config naming a Gemma 3 model folder with float16 fails the cheap checks, on a device that has float16."""
    model = tmp_path / "gemma-3-tiny"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gemma3_text"}')
    monkeypatch.setattr(doctor, "device_info", lambda: H100)
    loaded = load_config(write_config(tmp_path, model), ["model.precision=float16"])
    precision = next(check for check in doctor.cheap_checks(loaded) if check.name == "precision")
    assert precision.line() == ("FAIL  precision  float16 overflows in gemma3_text models (activations exceed its "
                                "range) -> set model.precision: auto or bfloat16")


def fake_t4(monkeypatch) -> None:
    """Make torch report a T4: CUDA present, compute capability 7.5, bfloat16 only through emulation."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)


def test_device_info_on_fake_t4(monkeypatch):
    fake_t4(monkeypatch)
    assert doctor.device_info() == T4


def test_choose_dtype_on_t4_rejects_bfloat16(monkeypatch):
    fake_t4(monkeypatch)
    assert ft.model.choose_dtype("auto") == torch.float32
    with pytest.raises(FtError):
        ft.model.choose_dtype("bfloat16")


def test_train_rejects_bfloat16_on_t4(tmp_path, tiny_model_dir, monkeypatch, capsys):
    def no_weights(*args, **kwargs):
        raise AssertionError("the weights loaded before the precision was checked")

    monkeypatch.setattr(doctor, "device_info", lambda: T4)
    monkeypatch.setattr(ft.model, "load_model", no_weights)
    config = write_config(tmp_path, tiny_model_dir)
    code = ft.cli.main(["train", str(config), "--set", "model.precision=bfloat16"])
    err = capsys.readouterr().err
    assert code == 2
    assert "bfloat16 not supported on Tesla T4 -> set model.precision: auto" in err
    assert not (tmp_path / "runs").exists()
