"""The Hugging Face Jobs backend: identity and write checks, input upload, submission, logs, cancel, wait and pull.

Everything goes through `huggingface_hub.HfApi` with keyword arguments. The token reaches the job only as the secret
`HF_TOKEN`: the Jobs API returns secrets by name but the environment in plain text to anyone who lists the jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError
from ft.jobs import JobFailed
from ft.jobs.spec import INPUTS_MOUNT, INPUTS_REPO_NAME, JobSpec
from ft.jobs.store import TERMINAL_STAGES, JobRecord, JobStore

log = logging.getLogger("ft")

TOKEN_SETTINGS = "https://huggingface.co/settings/tokens"
REOPEN_DELAY_S = 2.0
HUB_JOB_ID = re.compile(r"[0-9a-f]{24}")


@dataclass
class Identity:
    """The account behind the token, as `whoami` returns it."""

    name: str
    role: str | None  # read | write | fineGrained
    orgs: list[str]


def token_present() -> bool:
    """Return whether a token is configured, without reading or refreshing it (no network)."""
    from huggingface_hub import constants

    return bool(os.environ.get("HF_TOKEN")) or Path(constants.HF_TOKEN_PATH).is_file()


def read_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise FtError(f"no Hugging Face token found. Run `hf auth login` with a write token ({TOKEN_SETTINGS}) or "
                      "set HF_TOKEN, then submit again.")
    return token


def make_api(token: str | None = None):
    """Return an HfApi for `HF_ENDPOINT` as it is now (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def transport_errors() -> tuple[type[Exception], ...]:
    """Return the exception types of a dropped or refused connection for the HTTP client huggingface_hub uses."""
    errors: list[type[Exception]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


@contextlib.contextmanager
def hub_errors() -> Iterator[None]:
    """Turn a failed connection or an unexpected Hub error into JobFailed: one line, exit code 1, no traceback."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as err:
        raise JobFailed(f"the Hub returned an error: {err}") from None
    except transport_errors() as err:
        raise JobFailed(f"cannot reach the Hub ({type(err).__name__}: {err}). Check the connection (and HF_ENDPOINT), "
                        "then run the command again; a submitted job keeps running meanwhile.") from None


def status_code(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def confirm_identity(api) -> Identity:
    """Return the token's account. Raise FtError for a rejected or read-only token."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = api.whoami()
    except HfHubHTTPError as err:
        if status_code(err) == 401:
            raise FtError(f"the Hugging Face token was rejected (HTTP 401). Create a write token at {TOKEN_SETTINGS}, "
                          "then run `hf auth login` or set HF_TOKEN.") from None
        raise FtError(f"whoami failed on {api.endpoint}: {err}") from None
    except transport_errors() as err:
        raise FtError(f"cannot reach {api.endpoint} ({err}). Check the connection, or use --dry-run offline.") from None
    role = info.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise FtError(f"the token of {info['name']!r} is read-only: the job could not push its checkpoints and "
                      f"adapter. Create a write token at {TOKEN_SETTINGS} and run `hf auth login` with it.")
    orgs = [org["name"] for org in info.get("orgs", []) if "name" in org]
    return Identity(info["name"], role, orgs)


def confirm_write_access(api, identity: Identity, repo_id: str, repo_type: str, private: bool) -> None:
    """Create the repo when missing and confirm the token may write to it. Raise FtError naming the fix."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    namespace = repo_id.split("/")[0]
    key = "output.hub_repo" if repo_type == "model" else "the job inputs repo"
    try:
        api.auth_check(repo_id, repo_type=repo_type, write=True)
        return
    except RepositoryNotFoundError:
        pass
    except HfHubHTTPError as err:
        if status_code(err) in (401, 403):
            raise FtError(f"{key}: the token of {identity.name!r} cannot write to {repo_id}. Create a write token "
                          f"with access to {namespace!r} at {TOKEN_SETTINGS}, or set {key} to a repo you "
                          "own.") from None
        raise
    if namespace not in (identity.name, *identity.orgs):
        raise FtError(f"{key}: {repo_id} is in namespace {namespace!r}, which is neither {identity.name!r} nor one of "
                      f"its organizations. Use `{identity.name}/{repo_id.split('/')[1]}`.")
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.auth_check(repo_id, repo_type=repo_type, write=True)
    except HfHubHTTPError as err:
        raise FtError(f"{key}: cannot create {repo_id} with the token of {identity.name!r} ({err}). Create a write "
                      f"token at {TOKEN_SETTINGS} and run `hf auth login` with it.") from None


def inputs_repo_id(namespace: str) -> str:
    return f"{namespace}/{INPUTS_REPO_NAME}"


def upload_inputs(api, spec: JobSpec) -> str:
    """Upload the job's files to the private inputs repo in one commit; return the commit id the job mounts."""
    from huggingface_hub import CommitOperationAdd

    info = api.repo_info(spec.inputs_repo, repo_type="dataset")
    if not info.private:
        raise FtError(f"the job inputs repo {spec.inputs_repo} is public, and it would hold your config and data. "
                      "Make it private on its settings page, then submit again.")
    operations = [CommitOperationAdd(path_in_repo=f"{spec.inputs_path}/{item.path}",
                                     path_or_fileobj=str(item.source) if item.source else item.text.encode("utf-8"))
                  for item in spec.files]
    commit = api.create_commit(spec.inputs_repo, repo_type="dataset", operations=operations,
                               commit_message=f"ft submit: inputs of run {spec.run_name}")
    return commit.oid


def start_job(api, spec: JobSpec, token: str):
    """Submit the job; return huggingface_hub's JobInfo."""
    from huggingface_hub import Volume
    from huggingface_hub.errors import HfHubHTTPError

    # NOTE: a private dataset volume with `path` and `revision` is built as huggingface_hub 2.4 documents it and was
    # tested against a fake Hub only; `ft submit --check` is the cheap way to confirm the mount on a real account.
    volume = Volume(type="dataset", source=spec.inputs_repo, mount_path=INPUTS_MOUNT, revision=spec.inputs_revision,
                    read_only=True, path=spec.inputs_path)
    try:
        return api.run_job(image=spec.image, command=spec.command, env=spec.environment, secrets={"HF_TOKEN": token},
                           flavor=spec.flavor, timeout=spec.timeout_s, labels=spec.labels, volumes=[volume],
                           namespace=spec.namespace)
    except HfHubHTTPError as err:
        hint = " Jobs need a Pro account or a paid organization." if status_code(err) in (402, 403) else ""
        raise JobFailed(f"the Hub rejected the job ({err}).{hint}") from None


def record_from_info(info, spec: JobSpec, config_path: str) -> JobRecord:
    return JobRecord(id=info.id, backend="hf", run_name=spec.run_name, config_path=config_path,
                     stage=info.status.stage, message=info.status.message, flavor=spec.flavor,
                     timeout_s=spec.timeout_s, namespace=spec.namespace, hub_repo=spec.hub_repo, url=info.url,
                     spec=spec.request())


def inspect(api, record: JobRecord):
    """Return the job's JobInfo. Raise FtError when the Hub does not know the job."""
    from huggingface_hub.errors import JobNotFoundError

    try:
        return api.inspect_job(job_id=record.id, namespace=record.namespace)
    except JobNotFoundError:
        raise FtError(f"job {record.id} not found in namespace {record.namespace!r} on {api.endpoint}. It may have "
                      "been deleted, or it runs under another namespace: pass --namespace.") from None


def refresh(api, store: JobStore, record: JobRecord) -> JobRecord:
    """Update the stored stage from the Hub; return the updated record (unchanged when the job is not stored)."""
    info = inspect(api, record)
    changes = {"stage": info.status.stage, "message": info.status.message}
    if info.status.stage in TERMINAL_STAGES and record.finished_at is None:
        changes["finished_at"] = info.finished_at.timestamp() if info.finished_at else time.time()
    if store.find(record.id) is None:
        record.stage, record.message = info.status.stage, info.status.message
        return record
    return store.update(record.id, **changes)


def follow_logs(api, record: JobRecord, write=print, follow: bool = True) -> str:
    """Print the job's log; with `follow`, until the job ends. Return the last stage seen.

    A log stream can end, or drop, while the job still runs. The stream is then opened again: the Hub replays the log
    from its start, so the lines already printed are counted and skipped.
    """
    from huggingface_hub.errors import JobNotFoundError

    shown = 0
    while True:
        dropped = False
        try:
            for index, line in enumerate(api.fetch_job_logs(job_id=record.id, namespace=record.namespace,
                                                            follow=follow)):
                # NOTE: counting assumes each new stream replays the whole log; a Hub that trimmed old lines
                # would make the follower skip as many new ones.
                if index >= shown:
                    write(line)
                    shown += 1
        except JobNotFoundError:
            inspect(api, record)  # raises the clear message
            raise
        except transport_errors() as err:
            dropped = True
            log.warning("log stream of job %s dropped after %d lines (%s); opening it again", record.id, shown, err)
        stage = inspect(api, record).status.stage
        if not follow or (stage in TERMINAL_STAGES and not dropped):
            return stage
        if stage in TERMINAL_STAGES:
            follow = False  # one last pass for lines logged after the drop, then stop
            continue
        time.sleep(REOPEN_DELAY_S)


def cancel(api, store: JobStore, record: JobRecord) -> JobRecord:
    from huggingface_hub.errors import JobNotFoundError

    try:
        api.cancel_job(job_id=record.id, namespace=record.namespace)
    except JobNotFoundError:
        inspect(api, record)
        raise
    return refresh(api, store, record)


def wait(api, store: JobStore, record: JobRecord, interval_s: float, write=print) -> JobRecord:
    """Poll the job until it ends, printing each change of stage; return the final record."""
    last = None
    while True:
        record = refresh(api, store, record)
        if record.stage != last:
            write(f"{record.id}: {record.stage}" + (f" ({record.message})" if record.message else ""))
            last = record.stage
        if record.stage in TERMINAL_STAGES:
            return record
        time.sleep(interval_s)


def record_for_unknown_id(api, job_id: str, namespace: str | None) -> JobRecord | None:
    """Build a record for a Hub job that this machine did not submit (started by `hf jobs run`, or elsewhere)."""
    if not HUB_JOB_ID.fullmatch(job_id):
        return None
    namespace = namespace or confirm_identity(api).name
    record = JobRecord(id=job_id, backend="hf", run_name="", config_path="", namespace=namespace)
    info = inspect(api, record)
    environment = info.environment or {}
    record.run_name = environment.get("FT_RUN_NAME") or (info.labels or {}).get("ft-run", "")
    record.hub_repo = environment.get("FT_OUTPUT_REPO")
    record.stage, record.message = info.status.stage, info.status.message
    record.flavor, record.url = info.flavor, info.url
    return record


def run_layout(files: list[str]) -> str | None:
    """Return how the output repo stores a run, or None when it has no adapter (yet).

    `adapter-at-root` is what `ft train` pushes: the adapter and its model card at the top (so the repo loads with
    `from_pretrained`), the run's records under `run/`, checkpoints under `checkpoints/`. `run-folder` is a whole
    run folder pushed as it is, with `adapter/` inside.
    """
    if "adapter_config.json" in files or "config.json" in files:
        return "adapter-at-root"
    if "adapter/adapter_config.json" in files or "adapter/config.json" in files:
        return "run-folder"
    return None


def pull(api, record: JobRecord, target: Path, include_checkpoints: bool, write=print) -> Path:
    """Download the job's run from the output repo into `target`, laid out as a run folder with `adapter/`."""
    from huggingface_hub.errors import RepositoryNotFoundError

    from ft.outputs import replace_folder_atomic, staging_folder

    if not record.hub_repo:
        raise FtError(f"job {record.id} has no output repo on record, so there is nothing to pull. Download the model "
                      "with `hf download REPO` instead.")
    try:
        files = api.list_repo_files(record.hub_repo)
    except RepositoryNotFoundError:
        raise FtError(f"output repo {record.hub_repo} of job {record.id} not found: the job may have failed before "
                      f"its first push. See `ft jobs logs {record.id}`.") from None
    layout = run_layout(files)
    if layout is None and include_checkpoints and any(name.startswith("checkpoints/") for name in files):
        write(f"warning: {record.hub_repo} holds checkpoints but no adapter yet; pulling the checkpoints only.")
        layout = "adapter-at-root"
    if layout is None:
        raise FtError(f"no adapter in {record.hub_repo} yet. Wait for job {record.id} to end (`ft jobs wait "
                      f"{record.id}`) and pull again, or see `ft jobs logs {record.id}`.")
    wanted = [name for name in files if include_checkpoints or not name.startswith("checkpoints/")]
    staging = staging_folder(target)
    try:
        download = staging / ".download"
        api.snapshot_download(record.hub_repo, local_dir=download, allow_patterns=wanted)
        shutil.rmtree(download / ".cache", ignore_errors=True)
        arrange_run_folder(download, staging, layout)
        download.rmdir()
        replace_folder_atomic(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pushed_run = pushed_run_name(target / "config.yaml")
    if record.run_name and pushed_run and pushed_run != record.run_name:
        write(f"warning: {record.hub_repo} holds run {pushed_run!r}, pushed after this job's run {record.run_name!r}; "
              "the files pulled are that later run's.")
    return target


def arrange_run_folder(download: Path, run_dir: Path, layout: str) -> None:
    """Move the downloaded repo files into the run folder layout: adapter in `adapter/`, records at the top."""
    adapter = run_dir / "adapter"
    for item in list(download.iterdir()):
        if layout == "run-folder" or item.name == "checkpoints":
            item.rename(run_dir / item.name)
        elif item.name == "run":
            for record_file in item.iterdir():
                record_file.rename(run_dir / record_file.name)
            item.rmdir()
        else:
            adapter.mkdir(exist_ok=True)
            item.rename(adapter / item.name)


def pushed_run_name(config_path: Path) -> str | None:
    """Return `output.run_name` of a pulled run's config.yaml, or None when it has none."""
    import yaml

    try:
        tree = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return ((tree or {}).get("output") or {}).get("run_name")
