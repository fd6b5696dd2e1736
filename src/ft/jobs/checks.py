"""Checks that run before anything is submitted, and the report `ft submit` prints of what passed and was skipped."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ft.config import LoadedConfig
from ft.jobs.spec import config_tree, hub_data_ids


@dataclass
class CheckReport:
    """Lines of `ok`, `warn` and `skip` results, printed as they are added."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    write: object = print

    def add(self, status: str, text: str) -> None:
        self.lines.append((status, text))
        first, *rest = text.splitlines()
        self.write(f"  {status:<5} {first}")
        for line in rest:
            self.write(f"        {line}")

    def ok(self, text: str) -> None:
        self.add("ok", text)

    def warn(self, text: str) -> None:
        self.add("warn", text)

    def skip(self, text: str) -> None:
        self.add("skip", text)

    def skipped(self) -> list[str]:
        return [text for status, text in self.lines if status == "skip"]


@contextlib.contextmanager
def hub_offline(enabled: bool):
    """Keep ft's model lookup off the network (it then uses the cache or the packaged GGUF copy)."""
    if not enabled:
        yield
        return
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def tokenizer_available_offline(name: str, revision: str | None) -> bool:
    from ft.model import GGUF_FALLBACKS, hub_cache_folder, looks_like_path

    if Path(name).expanduser().exists() or looks_like_path(name):
        return True
    return name in GGUF_FALLBACKS or hub_cache_folder(name, revision) is not None


def check_data(loaded: LoadedConfig, report: CheckReport, offline: bool) -> None:
    """Read, render and mask the data with the model's tokenizer, as `ft train` does before it loads weights.

    The tokenizer comes from the local cache or ft's packaged copy when it is there, without querying the Hub. In a
    dry run (`offline`), a Hub data set or a model that is neither cached nor packaged cannot be checked. The report
    then lists the check as skipped, and `--check` runs it inside the job.
    """
    from ft.train import describe_data, prepare_run

    cfg = loaded.config
    hub_ids = hub_data_ids(config_tree(loaded))
    tokenizer_local = tokenizer_available_offline(cfg.model.name, cfg.model.revision)
    if offline and hub_ids:
        report.skip(f"data: {', '.join(hub_ids)} is a Hub data set, and a dry run makes no network calls "
                    "(`ft submit --check` checks it inside the job)")
        return
    if offline and not tokenizer_local:
        report.skip(f"data: needs the tokenizer of {cfg.model.name}, which is not in the local cache, and a dry run "
                    "makes no network calls")
        return
    with hub_offline(offline or (tokenizer_local and not hub_ids)):
        prepared = prepare_run(loaded)
    report.ok(describe_data(prepared, cfg.data.max_length))
