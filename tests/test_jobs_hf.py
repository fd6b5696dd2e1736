"""The Hugging Face Jobs backend through the real `huggingface_hub` client, against a fake Hub on 127.0.0.1.

Covers a job that completes, one that ends in ERROR with "Job timeout", a log stream that drops midway, an unknown
job (404), a read-only token, cancel, pull, the `--check` job, and that the token reaches no output and no file.
"""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest

from fake_hub import FakeHub, JobScript, install_planner, run_ft, write_config

TOKEN = "hf_fakeJobsToken0123456789abcdefXYZ"
LOGS = ["ft job: installing the locked dependencies", "step 1/2 | loss 3.10", "step 2/2 | loss 2.90",
        "done: 2 steps", "pushed adapter to alice/tiny-tools"]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub with a write token for `alice`; huggingface_hub's offline mode is off so it can reach it."""
    from huggingface_hub import constants

    fake = FakeHub()
    endpoint = fake.start()
    fake.add_token(TOKEN, "alice")
    fake.script = JobScript(logs=list(LOGS))
    # conftest turns offline mode on for the whole session; it blocks every request, the loopback ones too.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub reads HF_ENDPOINT once, at import: these two are what it derived from it.
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    install_planner(monkeypatch)
    yield fake
    fake.stop()
    assert fake.unhandled == [], "requests the fake Hub does not serve"


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path, extra="  hub_repo: alice/tiny-tools\n")


def submit(capsys, config, *extra: str):
    return run_ft(capsys, "submit", str(config), "--flavor", "a10g-small", *extra)


def only_job(hub: FakeHub):
    assert len(hub.jobs) == 1
    return next(iter(hub.jobs.values()))


def assert_no_token(hub: FakeHub, tmp_path, *outputs: str) -> None:
    for text in outputs:
        assert TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        for name, data in repo.files.items():
            assert TOKEN.encode() not in data, name
    for job in hub.jobs.values():
        assert TOKEN not in json.dumps(job.body["environment"])


def test_job_runs_to_completion(hub, config, tmp_path, capsys):
    result = submit(capsys, config)
    assert result.code == 0, result.err
    job = only_job(hub)
    assert job.stage == "COMPLETED"
    positions = [result.out.index(line) for line in LOGS]
    assert positions == sorted(positions), "log lines in order"
    assert "===== Job started" not in result.out
    assert f"job {job.id}: COMPLETED" in result.out

    assert job.body["secrets"] == {"HF_TOKEN": TOKEN}
    assert "HF_TOKEN" not in job.body["environment"]
    assert job.body["command"] == ["bash", "/ft-inputs/run.sh", "train"]
    assert job.body["flavor"] == "a10g-small"
    assert job.body["timeoutSeconds"] == 1500
    assert job.body["labels"]["ft-version"] == "0.1.0"

    inputs = hub.repos[("dataset", "alice/ft-job-inputs")]
    assert inputs.private
    volume = job.body["volumes"][0]
    assert volume["source"] == "alice/ft-job-inputs"
    assert volume["revision"] == inputs.sha
    folder = volume["path"]
    names = {name.removeprefix(folder + "/") for name in inputs.files if name.startswith(folder + "/")}
    assert names == {"run.sh", "config.yaml", "requirements.txt", "ft-0.1.0-py3-none-any.whl", "data/train-rows.jsonl"}
    job_config = inputs.files[f"{folder}/config.yaml"].decode()
    assert "train: /ft-inputs/data/train-rows.jsonl" in job_config
    assert "hub_repo: alice/tiny-tools" in job_config
    assert inputs.files[f"{folder}/data/train-rows.jsonl"] == (tmp_path / "rows.jsonl").read_bytes()
    assert b"torch==" in inputs.files[f"{folder}/requirements.txt"]
    assert hub.repos[("model", "alice/tiny-tools")].private

    listing = run_ft(capsys, "jobs", "ps")
    assert listing.code == 0
    row = next(line for line in listing.out.splitlines() if line.startswith(job.id))
    assert "hf" in row
    assert "COMPLETED" in row
    assert "a10g-small" in row
    assert_no_token(hub, tmp_path, result.out, result.err, listing.out)


def test_timeout_error_fails_wait(hub, config, capsys):
    hub.script = JobScript(logs=LOGS[:2], final_stage="ERROR", final_message="Job timeout")
    result = submit(capsys, config, "--detach")
    assert result.code == 0, result.err
    job = only_job(hub)
    assert job.stage == "RUNNING"
    waited = run_ft(capsys, "jobs", "wait", job.id, "--interval", "0.01")
    assert waited.code == 1
    assert f"job {job.id} ended ERROR (Job timeout)" in waited.err
    assert "timeout of 1500 s" in waited.err
    assert "longer --timeout" in waited.err
    assert "Traceback" not in waited.err
    listing = run_ft(capsys, "jobs", "ps")
    assert "ERROR" in next(line for line in listing.out.splitlines() if line.startswith(job.id))


def test_dropped_log_stream_shows_every_line(hub, config, capsys):
    hub.script = JobScript(logs=list(LOGS), drop_first_stream_after=2)
    assert submit(capsys, config, "--detach").code == 0
    job = only_job(hub)
    result = run_ft(capsys, "jobs", "logs", job.id[:8], "-f")
    assert result.code == 0, result.err
    assert result.out.splitlines() == LOGS
    assert job.log_requests >= 2, "the stream was opened again after the drop"
    assert job.stage == "COMPLETED"


class StubLogApi:
    """A client whose first log stream fails after two lines, the way a client gives up after its own retries."""

    endpoint = "http://127.0.0.1:9"

    def __init__(self, lines, stages):
        self.lines = lines
        self.stages = list(stages)
        self.streams = 0

    def fetch_job_logs(self, job_id, namespace, follow):
        import httpx2

        self.streams += 1
        if self.streams == 1:
            yield from self.lines[:2]
            raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body")
        yield from self.lines

    def inspect_job(self, job_id, namespace):
        from types import SimpleNamespace

        stage = self.stages.pop(0) if len(self.stages) > 1 else self.stages[0]
        return SimpleNamespace(status=SimpleNamespace(stage=stage, message=None))


def test_follower_reopens_failed_stream(monkeypatch):
    from ft.jobs import hf
    from ft.jobs.store import JobRecord

    monkeypatch.setattr(hf, "REOPEN_DELAY_S", 0.0)
    api = StubLogApi(LOGS, ["RUNNING", "COMPLETED"])
    shown = []
    record = JobRecord(id="0" * 24, backend="hf", run_name="r", config_path="", namespace="alice")
    assert hf.follow_logs(api, record, shown.append) == "COMPLETED"
    assert shown == LOGS
    assert api.streams >= 2


def test_unknown_job_not_found(hub, capsys):
    result = run_ft(capsys, "jobs", "logs", "f" * 24)
    assert result.code == 2
    assert f"job {'f' * 24} not found in namespace 'alice'" in result.err
    assert "Traceback" not in result.err


def test_deleted_job_not_found(hub, config, capsys):
    assert submit(capsys, config, "--detach").code == 0
    job = only_job(hub)
    del hub.jobs[job.id]
    result = run_ft(capsys, "jobs", "inspect", job.id)
    assert result.code == 2
    assert "not found in namespace 'alice'" in result.err
    assert "--namespace" in result.err


def test_unknown_local_id_not_found(hub, capsys):
    result = run_ft(capsys, "jobs", "wait", "no-such-job")
    assert result.code == 2
    assert "job 'no-such-job' not found" in result.err
    assert "ft jobs ps" in result.err


def test_read_only_token_stops_before_upload(hub, config, tmp_path, capsys):
    hub.add_token(TOKEN, "alice", role="read")
    result = submit(capsys, config)
    assert result.code == 2
    assert "read-only" in result.err
    assert "write token" in result.err
    assert hub.jobs == {}
    assert hub.repos == {}
    assert not any(method == "POST" for method, _, _ in hub.requests)
    assert_no_token(hub, tmp_path, result.out, result.err)


def test_foreign_output_repo_refused(hub, config, capsys):
    result = submit(capsys, config, "--set", "output.hub_repo=bob/tiny-tools")
    assert result.code == 2
    assert "output.hub_repo: bob/tiny-tools is in namespace 'bob'" in result.err
    assert hub.jobs == {}


def test_public_inputs_repo_refused(hub, config, capsys):
    hub.add_repo("dataset", "alice/ft-job-inputs", {}, private=False)
    result = submit(capsys, config)
    assert result.code == 2
    assert "alice/ft-job-inputs is public" in result.err
    assert hub.jobs == {}


def test_cancel_running_job(hub, config, capsys):
    hub.script = JobScript(logs=LOGS, inspections_to_finish=100)
    assert submit(capsys, config, "--detach").code == 0
    job = only_job(hub)
    result = run_ft(capsys, "jobs", "cancel", job.id)
    assert result.code == 0, result.err
    assert job.stage == "CANCELED"
    assert f"job {job.id}: CANCELED" in result.out


def test_check_job_runs_doctor_first(hub, config, capsys):
    result = submit(capsys, config, "--check", "--detach")
    assert result.code == 0, result.err
    check, train = hub.jobs.values()
    assert check.body["flavor"] == "cpu-basic"
    assert check.body["command"] == ["bash", "/ft-inputs/run.sh", "doctor"]
    assert check.body["labels"]["ft-check"] == "doctor"
    assert check.body["volumes"] == train.body["volumes"]
    assert train.body["command"] == ["bash", "/ft-inputs/run.sh", "train"]


def test_check_job_runs_gpu_settings_on_cpu(hub, config, capsys):
    result = submit(capsys, config, "--check", "--detach", "--set", "training.method=qlora",
                    "--set", "model.precision=float16")
    assert result.code == 0, result.err
    check, train = hub.jobs.values()
    assert check.body["command"] == ["bash", "/ft-inputs/run.sh", "doctor", "--set", "model.precision=auto",
                                      "--set", "training.method=lora"]
    assert train.body["command"] == ["bash", "/ft-inputs/run.sh", "train"]


def test_failed_check_stops_submit(hub, config, capsys):
    hub.script = JobScript(logs=["doctor: torch cannot see a GPU"], final_stage="ERROR", final_message="exit 1")
    result = submit(capsys, config, "--check")
    assert result.code == 1
    assert "doctor: torch cannot see a GPU" in result.out
    assert "The training job was not started" in result.err
    assert len(hub.jobs) == 1


def pushed_files(run_name: str, layout: str) -> dict[str, bytes]:
    """Files of an output repo: as `ft train` pushes them (adapter at the top), or a whole run folder."""
    records = {"config.yaml": f"output:\n  run_name: {run_name}\n".encode(), "summary.json": b"{}",
               "metrics.jsonl": b"{}\n"}
    adapter = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"weights", "ft_model.json": b"{}"}
    checkpoint = {"checkpoints/checkpoint-2/adapter_model.safetensors": b"ckpt"}
    if layout == "adapter-at-root":
        return {**adapter, "README.md": b"# card", **{f"run/{name}": data for name, data in records.items()},
                **checkpoint}
    return {**{f"adapter/{name}": data for name, data in adapter.items()}, **records, **checkpoint}


@pytest.mark.parametrize("layout", ["adapter-at-root", "run-folder"])
def test_pull_builds_run_folder(hub, config, tmp_path, capsys, monkeypatch, layout):
    assert submit(capsys, config).code == 0
    job = only_job(hub)
    run_name = job.body["environment"]["FT_RUN_NAME"]
    hub.repos[("model", "alice/tiny-tools")].files.update(pushed_files(run_name, layout))

    monkeypatch.chdir(tmp_path)
    result = run_ft(capsys, "jobs", "pull", job.id)
    assert result.code == 0, result.err
    run = tmp_path / "runs" / run_name
    assert f"run folder: runs/{run_name}" in result.out
    assert "warning" not in result.out
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert (run / "adapter" / "ft_model.json").is_file()
    assert (run / "summary.json").is_file()
    assert (run / "config.yaml").is_file()
    assert not (run / "run").exists()
    assert not (run / "checkpoints").exists()
    assert not (run / ".cache").exists()
    assert not (run / ".download").exists()

    again = run_ft(capsys, "jobs", "pull", job.id)
    assert again.code == 2
    assert "already exists" in again.err
    with_checkpoints = run_ft(capsys, "jobs", "pull", job.id, "--to", "copy", "--checkpoints")
    assert with_checkpoints.code == 0, with_checkpoints.err
    assert (tmp_path / "copy" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").is_file()


def test_pull_warns_about_later_run(hub, config, tmp_path, capsys, monkeypatch):
    assert submit(capsys, config).code == 0
    job = only_job(hub)
    hub.repos[("model", "alice/tiny-tools")].files.update(pushed_files("a-later-run", "adapter-at-root"))
    monkeypatch.chdir(tmp_path)
    result = run_ft(capsys, "jobs", "pull", job.id)
    assert result.code == 0, result.err
    assert "warning: alice/tiny-tools holds run 'a-later-run'" in result.out


def test_pull_checkpoints_before_adapter(hub, config, tmp_path, capsys, monkeypatch):
    assert submit(capsys, config, "--detach").code == 0
    job = only_job(hub)
    hub.repos[("model", "alice/tiny-tools")].files["checkpoints/checkpoint-4/adapter_model.safetensors"] = b"ckpt"
    monkeypatch.chdir(tmp_path)
    result = run_ft(capsys, "jobs", "pull", job.id, "--checkpoints", "--to", "partial")
    assert result.code == 0, result.err
    assert "holds checkpoints but no adapter yet" in result.out
    assert (tmp_path / "partial" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "partial" / "adapter").exists()


def test_pull_before_push_explains(hub, config, tmp_path, capsys, monkeypatch):
    assert submit(capsys, config, "--detach").code == 0
    job = only_job(hub)
    monkeypatch.chdir(tmp_path)
    result = run_ft(capsys, "jobs", "pull", job.id)
    assert result.code == 2
    assert "no adapter in alice/tiny-tools yet" in result.err
    assert not (tmp_path / "runs" / job.body["environment"]["FT_RUN_NAME"]).exists()


def test_records_hold_no_token(hub, config, tmp_path, capsys):
    results = [submit(capsys, config, "--detach")]
    job = only_job(hub)
    for args in (["ps"], ["inspect", job.id], ["logs", job.id], ["wait", job.id, "--interval", "0.01"]):
        results.append(run_ft(capsys, "jobs", *args))
    assert [result.code for result in results] == [0, 0, 0, 0, 0]
    inspected = results[2].out
    assert "HF_TOKEN" in inspected  # the secret's name, in the spec
    database = tmp_path / "ft-home" / "jobs.db"
    rows = sqlite3.connect(database).execute("SELECT * FROM jobs").fetchall()
    assert TOKEN not in repr(rows)
    assert_no_token(hub, tmp_path, *(result.out + result.err for result in results))


def test_unreachable_hub_explained(hub, config, capsys, monkeypatch):
    assert submit(capsys, config, "--detach").code == 0
    job = only_job(hub)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port with nothing listening
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    result = run_ft(capsys, "jobs", "wait", job.id, "--interval", "0.01")
    assert result.code == 1
    assert "cannot reach the Hub" in result.err
    assert "Traceback" not in result.err
    listing = run_ft(capsys, "jobs", "ps")
    assert listing.code == 0
    assert f"note: {job.id}: stage as last seen; the Hub could not be asked" in listing.out
    closed.close()
