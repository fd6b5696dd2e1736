"""Pushing runs to the Hugging Face Hub: write access checked before training, checkpoints pushed as they are
saved, and a final push that, when it fails, keeps every local file and prints the command that retries it.

The token is read by huggingface_hub itself (HF_TOKEN or the login cache) and is never printed or stored by ft.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from ft.errors import PUSH_FAILED_EXIT_CODE, FtError, PushFailed  # noqa: F401  (re-exported for callers)


def check_write_access(repo_id: str) -> str:
    """Confirm a token is present, whose it is, and that it can write to `repo_id`; return the user name."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if not get_token():
        raise FtError("output.push_to_hub: no Hugging Face token found. Run `hf auth login` with a write token, "
                      "or set HF_TOKEN.")
    api = HfApi()
    try:
        user = api.whoami()["name"]
    except HfHubHTTPError as err:
        raise FtError(f"output.push_to_hub: the token was rejected by the Hub ({err.response.status_code}). "
                      "Create a new token with write access at huggingface.co/settings/tokens.") from None
    try:
        api.auth_check(repo_id, write=True)
    except RepositoryNotFoundError:
        namespace = repo_id.split("/")[0]
        if namespace != user and namespace not in org_names(api):
            raise FtError(f"output.hub_repo: {user!r} cannot create repos under {namespace!r}. "
                          f"Use `{user}/{repo_id.split('/')[1]}` or an organization you belong to.") from None
    except HfHubHTTPError as err:
        raise FtError(f"output.hub_repo: the token of {user!r} has no write access to {repo_id} "
                      f"({err.response.status_code}). Use a token with the write role.") from None
    return user


def org_names(api) -> set[str]:
    try:
        return {org["name"] for org in api.whoami().get("orgs", [])}
    except (KeyError, TypeError):
        return set()


def model_card(run_dir: Path, base_model: str, repo_id: str | None) -> str:
    """Return a README.md for the adapter: base model, data, settings and the run's figures."""
    summary = read_json(run_dir / "summary.json")
    config_text = (run_dir / "config.yaml").read_text(encoding="utf-8") if (run_dir / "config.yaml").is_file() else ""
    figures = "\n".join(f"| {key} | {value} |" for key, value in summary.items()) or "| (no summary) | |"
    name = repo_id or run_dir.name
    return f"""---
base_model: {base_model}
library_name: peft
tags: [ft, lora, tool-use]
---

# {name}

A LoRA adapter for [{base_model}](https://huggingface.co/{base_model}), fine-tuned for tool use with ft.

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{name}")
tokenizer = AutoTokenizer.from_pretrained("{name}")
```

## Run

| figure | value |
|---|---|
{figures}

## Config

```yaml
{config_text}```
"""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def push_folder(folder: Path, repo_id: str, private: bool, path_in_repo: str | None, message: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), path_in_repo=path_in_repo, commit_message=message)


def push_run(run_dir: Path, repo_id: str, private: bool) -> None:
    """Push the adapter (with its model card) to the repo root and the run's records under `run/`.

    Raise PushFailed with the retry command; every local file stays where it is.
    """
    try:
        push_folder(run_dir / "adapter", repo_id, private, None, "ft: final adapter")
        records = [name for name in ("summary.json", "metrics.jsonl", "config.yaml", "loss.png") if (run_dir / name).exists()]
        if records:
            from huggingface_hub import HfApi

            HfApi().upload_folder(repo_id=repo_id, folder_path=str(run_dir), path_in_repo="run",
                                  allow_patterns=records, commit_message="ft: run records")
    except Exception as err:  # network, auth and server errors all end the same way: keep files, say how to retry
        raise PushFailed(f"push to {repo_id} failed ({type(err).__name__}: {err}). Every file is kept in {run_dir}.\n"
                         f"Retry with: ft push {run_dir} --repo {repo_id}") from None


class PushCheckpoints(TrainerCallback):
    """Push each checkpoint to `checkpoints/` of the output repo as soon as it is saved (on the main process)."""

    def __init__(self, repo_id: str, private: bool, trainer_ref):
        self.repo_id = repo_id
        self.private = private
        self.trainer_ref = trainer_ref

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer_ref()
        checkpoint = getattr(trainer, "last_checkpoint", None)
        if not state.is_world_process_zero or checkpoint is None:
            return
        try:
            push_folder(checkpoint, self.repo_id, self.private, f"checkpoints/{checkpoint.name}",
                        f"ft: {checkpoint.name}")
            print(f"pushed {checkpoint.name} to {self.repo_id}", flush=True)
        except Exception as err:  # a failed checkpoint push must not stop training; the final push retries
            print(f"warning: pushing {checkpoint.name} to {self.repo_id} failed ({type(err).__name__}); "
                  "training goes on, and the checkpoint stays on disk", flush=True)
