"""`ft submit --dry-run` and the checks before a Hugging Face Job: the printed spec, flavor, precision and timeout.

No network: the planner's estimates are fixed (600 s of training, 3 GB), and the data check reads the tokenizer of the
packaged SmolLM2 copy.
"""

from __future__ import annotations

import json

import pytest

from fake_hub import install_planner, run_ft, write_config

TOKEN = "hf_fakeSubmitToken0123456789abcdef"


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return install_planner(monkeypatch)


def request_body(out: str) -> dict:
    """Return the JSON request body that the dry run prints."""
    heading = "request body (POST /api/jobs/{namespace}):\n"
    start = out.index(heading) + len(heading)
    end = out.index("\n--- run.sh ---")
    return json.loads(out[start:end])


def test_dry_run_prints_spec(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", "--dry-run")
    assert result.code == 0, result.err
    body = request_body(result.out)
    assert body["dockerImage"] == "ghcr.io/astral-sh/uv:python3.12-bookworm"
    assert body["command"] == ["bash", "/ft-inputs/run.sh", "train"]
    assert body["flavor"] == "a10g-small"
    assert body["timeoutSeconds"] == 1500  # 600 s estimate x 1.5 + 600 s start-up
    assert body["secrets"] == ["HF_TOKEN"]
    assert "HF_TOKEN" not in body["environment"]
    assert body["environment"]["FT_OUTPUT_REPO"] == "alice/tiny-tools"
    assert body["labels"]["ft-version"] == "0.1.0"
    assert body["labels"]["ft-run"].startswith("tiny-")
    assert body["volumes"][0]["mountPath"] == "/ft-inputs"
    assert body["volumes"][0]["readOnly"] is True
    assert "secrets (names only): HF_TOKEN" in result.out
    assert "skip  token identity (whoami)" in result.out
    assert "data.train: 4 rows read, 4 used" in result.out
    assert "train: /ft-inputs/data/train-rows.jsonl" in result.out
    assert "hub_repo: alice/tiny-tools" in result.out
    assert "push_to_hub: true" in result.out
    assert "exec ft \"$ft_command\" \"$inputs/config.yaml\" \"$@\"" in result.out


def test_dry_run_keeps_token_secret(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", "--dry-run")
    assert result.code == 0, result.err
    assert TOKEN not in result.out + result.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("flavor, processes", [("a10g-largex2", 2), ("l4x4", 4), ("h200x8", 8)])
def test_multi_gpu_launches_one_process_each(env, tmp_path, capsys, flavor, processes):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", flavor, "--dry-run")
    assert result.code == 0, result.err
    assert request_body(result.out)["command"] == ["bash", "/ft-inputs/run.sh", "train", "--nproc", str(processes)]
    assert f"({processes} training processes)" in result.out


def test_dry_run_without_hub_repo_warns(env, tmp_path, capsys):
    result = run_ft(capsys, "submit", str(write_config(tmp_path)), "--flavor", "a10g-small", "--dry-run")
    assert result.code == 0, result.err
    assert "warn  output.hub_repo is not set" in result.out
    assert "--set output.hub_repo=your-name/model-name" in result.out


def test_submit_without_hub_repo_refused(env, tmp_path, capsys):
    result = run_ft(capsys, "submit", str(write_config(tmp_path)), "--flavor", "a10g-small")
    assert result.code == 2
    assert "output.hub_repo is required for --backend hf" in result.err
    assert "--set output.hub_repo=your-name/model-name" in result.err
    assert "Traceback" not in result.err


def test_bfloat16_on_t4_refused(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "t4-small", "--dry-run",
                    "--set", "model.precision=bfloat16")
    assert result.code == 2
    assert "model.precision: bfloat16 is not supported by the GPU of t4-small" in result.err
    assert "Traceback" not in result.err


def test_qlora_on_cpu_flavor_refused(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "cpu-upgrade", "--dry-run",
                    "--set", "training.method=qlora")
    assert result.code == 2
    assert "training.method: qlora needs a CUDA GPU" in result.err


def test_flavor_auto_picks_cheapest(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--dry-run")
    assert result.code == 0, result.err
    assert request_body(result.out)["flavor"] == "t4-small"  # $0.40/h, the cheapest GPU
    assert "picked by --flavor auto" in result.out


def test_flavor_auto_skips_t4_for_bfloat16(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--dry-run", "--set", "model.precision=bfloat16")
    assert result.code == 0, result.err
    assert request_body(result.out)["flavor"] == "l4x1"  # $0.80/h, the cheapest GPU with bfloat16


def test_unknown_flavor_refused(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-huge", "--dry-run")
    assert result.code == 2
    assert "--flavor 'a10g-huge' is not a Hugging Face Jobs flavor" in result.err
    assert "a10g-small" in result.err


def test_short_timeout_warned(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", "--timeout", "5m", "--dry-run")
    assert result.code == 0, result.err
    assert request_body(result.out)["timeoutSeconds"] == 300
    assert "warn  --timeout 5m (300 s) is shorter than the estimated 600 s" in result.out


@pytest.mark.parametrize("text", ["soon", "-5m", "10x", "0"])
def test_bad_timeout_refused(env, tmp_path, capsys, text):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", f"--timeout={text}", "--dry-run")
    assert result.code == 2
    assert f"--timeout {text!r}: expected `auto`" in result.err


def test_timeout_units_parsed():
    from ft.jobs.hardware import parse_timeout

    assert parse_timeout("5400") == 5400
    assert parse_timeout("90m") == 5400
    assert parse_timeout("1.5h") == 5400
    assert parse_timeout("2d") == 172800


def test_hub_data_skipped_offline(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", "--dry-run",
                    "--set", "data.train=someone/tool-calls")
    assert result.code == 0, result.err
    assert "skip  data: someone/tool-calls is a Hub data set" in result.out
    assert request_body(result.out)  # the spec is still printed
    assert "train: someone/tool-calls" in result.out


def test_local_model_refused_for_hf(env, tmp_path, capsys):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = write_config(tmp_path, model=str(model), extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", "--dry-run")
    assert result.code == 2
    assert f"model.name: {str(model)!r}" in result.err


def test_missing_data_file_refused(env, tmp_path, capsys):
    config = write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")
    result = run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", "--dry-run",
                    "--set", f"data.train={tmp_path / 'absent.jsonl'}")
    assert result.code == 2
    assert "absent.jsonl: data file not found" in result.err
