"""Job records in a small SQLite database, so that `ft jobs` works offline and from any terminal.

The database is `$FT_HOME/jobs.db` (default `~/.cache/ft/jobs.db`); each local job also keeps its config snapshot and
log under `$FT_HOME/jobs/<id>/`. The local runner and the CLI write to it from different processes, which SQLite
serialises (the busy timeout makes a writer wait instead of failing).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ft.errors import FtError

ACTIVE_STAGES = ("SCHEDULING", "RUNNING", "UPDATING")
TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
BUSY_TIMEOUT_S = 30.0


def ft_home() -> Path:
    """Return the folder of the job database and the local jobs' files: `FT_HOME`, else ft's cache folder."""
    if os.environ.get("FT_HOME"):
        return Path(os.environ["FT_HOME"]).expanduser()
    from ft.model import ft_cache_dir

    return ft_cache_dir()


def job_folder(job_id: str) -> Path:
    return ft_home() / "jobs" / job_id


@dataclass
class JobRecord:
    """One submitted job, on either backend. It contains no secret: the token is never part of a record."""

    id: str
    backend: str  # hf | local
    run_name: str
    config_path: str
    stage: str = "SCHEDULING"
    message: str | None = None
    flavor: str | None = None
    timeout_s: int | None = None
    namespace: str | None = None
    hub_repo: str | None = None
    url: str | None = None
    run_dir: str | None = None
    log_path: str | None = None
    pid: int | None = None  # local: the runner process
    child_pgid: int | None = None  # local: the process group of the training command
    exit_code: int | None = None
    cancel_requested: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    spec: dict = field(default_factory=dict)  # the job spec as submitted, secret names only

    @property
    def active(self) -> bool:
        return self.stage in ACTIVE_STAGES


COLUMNS = [item.name for item in fields(JobRecord)]
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, backend TEXT NOT NULL, run_name TEXT, config_path TEXT, "
    "stage TEXT, message TEXT, flavor TEXT, timeout_s INTEGER, namespace TEXT, hub_repo TEXT, url TEXT, run_dir TEXT, "
    "log_path TEXT, pid INTEGER, child_pgid INTEGER, exit_code INTEGER, cancel_requested INTEGER, created_at REAL, "
    "updated_at REAL, started_at REAL, finished_at REAL, spec TEXT)"
)


class JobStore:
    """The job database. Every method opens its own short connection, so a store can be shared across threads."""

    def __init__(self, path: Path | None = None):
        self.path = path or ft_home() / "jobs.db"

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection; commit when the block succeeds, roll back when it raises, close in both cases."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        connection.row_factory = sqlite3.Row
        try:
            with connection:
                connection.execute(SCHEMA)
                yield connection
        finally:
            connection.close()

    def add(self, record: JobRecord) -> None:
        row = to_row(record)
        with self.connect() as connection:
            try:
                connection.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                   list(row.values()))
            except sqlite3.IntegrityError:
                raise FtError(f"job {record.id} is already in {self.path}.") from None

    def update(self, job_id: str, **changes) -> JobRecord:
        unknown = set(changes) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown job record fields: {sorted(unknown)}")
        values = dict(changes, updated_at=time.time())
        if "spec" in values:
            values["spec"] = json.dumps(values["spec"], sort_keys=True)
        if "cancel_requested" in values:
            values["cancel_requested"] = int(values["cancel_requested"])
        with self.connect() as connection:
            connection.execute(f"UPDATE jobs SET {', '.join(f'{key} = ?' for key in values)} WHERE id = ?",
                               [*values.values(), job_id])
        return self.get(job_id)

    def find(self, job_id: str) -> JobRecord | None:
        """Return the job whose id is `job_id` or starts with it; None when there is none."""
        if not self.path.exists():
            return None
        with self.connect() as connection:
            rows = connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchall()
            if not rows:
                escaped = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                rows = connection.execute("SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC",
                                          (escaped + "%",)).fetchall()
        if len(rows) > 1:
            ids = ", ".join(row["id"] for row in rows[:5])
            raise FtError(f"job id {job_id!r} is ambiguous: {len(rows)} job ids start with it ({ids}). Give more of "
                          "the id.")
        return from_row(rows[0]) if rows else None

    def get(self, job_id: str) -> JobRecord:
        record = self.find(job_id)
        if record is None:
            raise FtError(f"job {job_id!r} not found in {self.path}. `ft jobs ps` lists the known jobs.")
        return record

    def all(self, limit: int | None = None) -> list[JobRecord]:
        if not self.path.exists():
            return []
        query = "SELECT * FROM jobs ORDER BY created_at DESC"
        with self.connect() as connection:
            rows = connection.execute(query + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [from_row(row) for row in rows]

    def ids(self) -> set[str]:
        if not self.path.exists():
            return set()
        with self.connect() as connection:
            return {row["id"] for row in connection.execute("SELECT id FROM jobs")}


def to_row(record: JobRecord) -> dict:
    row = asdict(record)
    row["spec"] = json.dumps(record.spec, sort_keys=True)
    row["cancel_requested"] = int(record.cancel_requested)
    return row


def from_row(row: sqlite3.Row) -> JobRecord:
    values = {key: row[key] for key in COLUMNS}
    values["spec"] = json.loads(values["spec"] or "{}")
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)
