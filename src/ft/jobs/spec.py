"""The job spec: the config as the job reads it, the files it needs, and the image, command and labels it runs with.

The job gets its files through a volume: ft uploads them to a private dataset repo of the user and the Jobs API
mounts that folder, at the uploaded commit, read-only at `/ft-inputs`. The command is a fixed argument list
(`bash /ft-inputs/run.sh train`): no user value is ever quoted into a shell string, and no git is needed in the image.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ft import __version__
from ft.config import Config, LoadedConfig
from ft.errors import FtError

# The uv image (Debian bookworm, Python 3.12, uv preinstalled) plus every package from the lock, torch and its CUDA
# libraries included, so that the job runs exactly the versions tested here. A PyTorch image would bring its own
# torch and CUDA build, which the lock would then replace anyway.
IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"
INPUTS_MOUNT = "/ft-inputs"
INPUTS_REPO_NAME = "ft-job-inputs"
RUN_SCRIPT = "run.sh"
CONFIG_FILE = "config.yaml"
REQUIREMENTS_FILE = "requirements.txt"
JOB_OUTPUT_DIR = "/tmp/ft-runs"  # the container's disk: lost when the job ends, so the run is pushed to the Hub
# A job whose config sets no checkpoint interval still saves (and pushes) one this often, so that a job stopped by
# its timeout or a crash keeps most of its work.
JOB_SAVE_EVERY_MINUTES = 30.0
JOB_PYTHON = "3.12"  # the Python of IMAGE, which selects the pins of uv.lock that the job installs
ENVIRONMENT = {
    "PYTHONUNBUFFERED": "1",  # log lines reach `ft jobs logs` as they are printed
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "UV_NO_PROGRESS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
SECRET_NAMES = ("HF_TOKEN",)
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class InputFile:
    """A file of the job's inputs folder: its path there, and either a local file to copy or the text to write."""

    path: str
    source: Path | None = None
    text: str | None = None

    def describe(self) -> str:
        if self.source:
            return f"{self.source.stat().st_size:,} bytes, from {self.source}"
        if self.text is not None:
            return f"{len(self.text.encode('utf-8')):,} bytes"
        return "built by `uv build --wheel` at submit"


@dataclass
class JobSpec:
    """Everything `HfApi.run_job` receives except the secret values, plus the inputs uploaded before it."""

    run_name: str
    flavor: str
    timeout_s: int | None  # None only in a dry run that could not estimate the training time
    nproc: int
    hub_repo: str
    command: list[str]
    labels: dict[str, str]
    image: str = IMAGE
    environment: dict[str, str] = field(default_factory=lambda: dict(ENVIRONMENT))
    secret_names: tuple[str, ...] = SECRET_NAMES
    namespace: str | None = None
    inputs_repo: str | None = None
    inputs_path: str = ""
    inputs_revision: str | None = None  # the commit of the upload; None before it
    files: list[InputFile] = field(default_factory=list)

    def volume(self) -> dict:
        """Return the volume as the Jobs API receives it (`huggingface_hub.Volume.to_dict`)."""
        source = self.inputs_repo or f"{self.namespace or '<namespace>'}/{INPUTS_REPO_NAME}"
        volume = {"type": "dataset", "source": source, "mountPath": INPUTS_MOUNT, "readOnly": True,
                  "path": self.inputs_path}
        volume["revision"] = self.inputs_revision or "<commit of the upload>"
        return volume

    def request(self) -> dict:
        """Return the body of `POST /api/jobs/{namespace}` with secret names in place of their values."""
        return {
            "dockerImage": self.image,
            "command": self.command,
            "arguments": [],
            "environment": self.environment,
            "secrets": list(self.secret_names),
            "flavor": self.flavor,
            "timeoutSeconds": self.timeout_s,
            "labels": self.labels,
            "volumes": [self.volume()],
        }

    def file(self, path: str) -> InputFile:
        return next(item for item in self.files if item.path == path)


def job_command(nproc: int) -> list[str]:
    """Return the job's command: the uploaded script, then ft's subcommand and its fixed arguments."""
    command = ["bash", f"{INPUTS_MOUNT}/{RUN_SCRIPT}", "train"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    return command


def job_labels(run_name: str) -> dict[str, str]:
    return {"ft-run": label_value(run_name), "ft-version": label_value(__version__)}


def label_value(text: str) -> str:
    return LABEL_VALUE.sub("-", text)[:63] or "-"


def render_run_script(wheel: str) -> str:
    """Return run.sh: install the locked packages and the ft wheel, then run `ft COMMAND config.yaml ARGS...`.

    `--no-deps` installs exactly the exported pins: the export is already the complete, marker-selected set, and a
    resolver would add packages that the project's uv overrides leave out (`llm`, `llama-cpp-python`).
    """
    return f"""#!/usr/bin/env bash
# Written by `ft submit`; runs inside the Hugging Face Job from the read-only inputs folder {INPUTS_MOUNT}.
# Usage: bash run.sh COMMAND [ARGS...]  ->  ft COMMAND {INPUTS_MOUNT}/{CONFIG_FILE} [ARGS...]
set -euo pipefail
inputs={INPUTS_MOUNT}
echo "ft job: installing the locked dependencies ($(grep -c '==' "$inputs/{REQUIREMENTS_FILE}") pins) and {wheel}"
uv pip install --system --no-deps -r "$inputs/{REQUIREMENTS_FILE}"
uv pip install --system --no-deps "$inputs/{wheel}"
ft --version
ft_command="$1"
shift
exec ft "$ft_command" "$inputs/{CONFIG_FILE}" "$@"
"""


def config_tree(loaded: LoadedConfig) -> dict:
    return loaded.config.model_dump()


def is_local_data(path: str) -> bool:
    """Return whether a data path names a local file or folder, by the same rule the data reader applies."""
    local = Path(path).expanduser()
    return local.exists() or path.startswith((".", "/", "~")) or local.suffix in DATA_SUFFIXES


def rewrite_data_paths(tree: dict, rewrite) -> None:
    """Replace each local data path in `tree` with `rewrite(key, local Path)`; Hub data set ids stay as they are."""
    for side in ("train", "eval"):
        value = tree["data"].get(side)
        if isinstance(value, str):
            if is_local_data(value):
                tree["data"][side] = rewrite(f"data.{side}", existing_path(f"data.{side}", value))
        elif isinstance(value, list):
            for index, source in enumerate(value):
                key = f"data.{side}[{index}].path"
                if is_local_data(source["path"]):
                    source["path"] = rewrite(key, existing_path(key, source["path"]))


def existing_path(key: str, path: str) -> Path:
    local = Path(path).expanduser()
    if not local.exists():
        raise FtError(f"{key}: {path}: data file not found. Check the path (relative paths start at the current "
                      "folder).")
    return local.resolve()


def hub_data_ids(tree: dict) -> list[str]:
    found = []
    for side in ("train", "eval"):
        value = tree["data"].get(side)
        paths = [value] if isinstance(value, str) else [source["path"] for source in value or []]
        found += [path for path in paths if not is_local_data(path)]
    return found


def embed_chat_template(tree: dict) -> None:
    """Replace a chat template file path by the template text, so the config needs no file beside it."""
    template = tree["model"].get("chat_template")
    if template and "\n" not in template and Path(template).expanduser().is_file():
        tree["model"]["chat_template"] = Path(template).expanduser().read_text(encoding="utf-8")


def dump_config(tree: dict, header: str) -> str:
    Config.model_validate(tree)  # the rewritten config must still be valid
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def build_job_config(loaded: LoadedConfig, run_name: str, hub_repo: str) -> tuple[str, list[InputFile]]:
    """Return the job's config.yaml and the local data files it refers to, copied into the inputs folder."""
    require_hub_model(loaded)
    tree = config_tree(loaded)
    embed_chat_template(tree)

    files: list[InputFile] = []

    def to_inputs(key: str, local: Path) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", key.replace("data.", "").replace(".path", ""))
        name = f"data/{slug}-{local.name}"
        if local.is_dir():
            files.extend(InputFile(f"{name}/{item.relative_to(local).as_posix()}", item)
                         for item in sorted(local.rglob("*")) if item.is_file())
        else:
            files.append(InputFile(name, local))
        return f"{INPUTS_MOUNT}/{name}"

    rewrite_data_paths(tree, to_inputs)
    tree["output"].update(dir=JOB_OUTPUT_DIR, run_name=run_name, push_to_hub=True, hub_repo=hub_repo)
    training = tree["training"]
    if not training["save_every_steps"] and not training["save_every_minutes"]:
        training["save_every_minutes"] = JOB_SAVE_EVERY_MINUTES
    header = (f"ft submit {loaded.path}: the resolved config of job run {run_name}.\n"
              f"Local data files were uploaded with it and are read from {INPUTS_MOUNT}. The run is pushed to "
              f"{hub_repo}.")
    return dump_config(tree, header), files


def require_hub_model(loaded: LoadedConfig) -> None:
    from ft.model import looks_like_path

    name = loaded.config.model.name
    if Path(name).expanduser().exists() or looks_like_path(name):
        raise FtError(f"model.name: {name!r} is a local path, which the job cannot see. Use a Hub model id, or push "
                      "the model to the Hub first (`hf upload your-name/model-name FOLDER`).")


def require_hub_repo(loaded: LoadedConfig) -> str:
    hub_repo = loaded.config.output.hub_repo
    if not hub_repo:
        raise FtError(f"{loaded.path}: output.hub_repo is required for --backend hf, because the job's disk is "
                      "discarded when it ends and the adapter and checkpoints are pushed there. Set it in the config "
                      "(output:\n  hub_repo: your-name/model-name) or pass --set output.hub_repo=your-name/model-name.")
    return hub_repo


def describe_spec(spec: JobSpec) -> str:
    """Return the spec as `ft submit --dry-run` prints it: a summary, then the exact request body as JSON."""
    lines = [
        f"image: {spec.image}",
        f"command: {json.dumps(spec.command)}",
        f"flavor: {spec.flavor} ({spec.nproc} training process{'es' if spec.nproc > 1 else ''})",
        f"timeout: {spec.timeout_s} s" if spec.timeout_s else "timeout: set from the estimate at submit",
        "environment: " + ", ".join(f"{key}={value}" for key, value in spec.environment.items()),
        f"secrets (names only): {', '.join(spec.secret_names)}",
        "labels: " + ", ".join(f"{key}={value}" for key, value in spec.labels.items()),
        f"inputs: {spec.volume()['source']} (private dataset repo), folder {spec.inputs_path}, mounted read-only "
        f"at {INPUTS_MOUNT}",
    ]
    for item in spec.files:
        lines.append(f"  {item.path}: {item.describe()}")
    lines.append("request body (POST /api/jobs/{namespace}):")
    lines.append(json.dumps(spec.request(), indent=2))
    return "\n".join(lines)
