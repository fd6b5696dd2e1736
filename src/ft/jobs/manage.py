"""`ft jobs ps | inspect | logs | cancel | wait | pull` for both backends, from the local job database.

`ps` reads the database, and queries the Hub only for jobs still active when it can, so it works offline. The other
commands resolve the job id, and a unique prefix is enough. A Hub job id that this machine did not submit is looked up
on the Hub directly.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from ft.errors import FtError
from ft.jobs import hf, local
from ft.jobs.store import TERMINAL_STAGES, JobRecord, JobStore
from ft.jobs.submit import report_end


def hub_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve(store: JobStore, job_id: str, namespace: str | None = None) -> JobRecord:
    record = store.find(job_id)
    if record is not None:
        return record
    if hf.HUB_JOB_ID.fullmatch(job_id) and not hub_offline():
        found = hf.record_for_unknown_id(hf.make_api(hf.read_token()), job_id, namespace)
        if found is not None:
            return found
    return store.get(job_id)  # raises the not-found message


def hub_api():
    return hf.make_api(hf.read_token())


def refreshed(store: JobStore, record: JobRecord) -> JobRecord:
    if record.backend == "local":
        return local.refresh(store, record)
    return hf.refresh(hub_api(), store, record)


def ps(store: JobStore, limit: int, as_json: bool, write=print) -> int:
    records = store.all(limit=limit)
    notes = []
    for index, record in enumerate(records):
        if not record.active:
            continue
        if record.backend == "local":
            records[index] = local.refresh(store, record)
        elif hub_offline() or not hf.token_present():
            notes.append(f"{record.id}: stage as last seen; the Hub was not asked (offline or no token)")
        else:
            records[index], note = refresh_from_hub(store, record)
            notes += [note] if note else []
    if as_json:
        write(json.dumps([public_fields(record) for record in records], indent=2))
        return 0
    if not records:
        write(f"no jobs in {store.path}")
        return 0
    rows = [("ID", "BACKEND", "STAGE", "FLAVOR", "RUN", "CREATED", "DURATION")]
    for record in records:
        rows.append((record.id, record.backend, record.stage, record.flavor or "-", record.run_name or "-",
                     datetime.fromtimestamp(record.created_at).strftime("%Y-%m-%d %H:%M"), duration(record)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for note in notes:
        write(f"note: {note}")
    return 0


def refresh_from_hub(store: JobStore, record: JobRecord) -> tuple[JobRecord, str | None]:
    """Return the record refreshed from the Hub, or as stored with a note saying why the Hub was not reached."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return hf.refresh(hub_api(), store, record), None
    except (FtError, HfHubHTTPError, *hf.transport_errors()) as err:
        return record, f"{record.id}: stage as last seen; the Hub could not be asked ({err})"


def duration(record: JobRecord) -> str:
    start = record.started_at or record.created_at
    end = record.finished_at or (time.time() if record.active else record.updated_at)
    seconds = max(0, int(end - start))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def public_fields(record: JobRecord) -> dict:
    from dataclasses import asdict

    return asdict(record)


def inspect(store: JobStore, job_id: str, namespace: str | None, as_json: bool, write=print) -> int:
    record = refreshed(store, resolve(store, job_id, namespace))
    fields = public_fields(record)
    if as_json:
        write(json.dumps(fields, indent=2))
        return 0
    for key, value in fields.items():
        if key == "spec":
            continue
        if key.endswith("_at") and value:
            value = datetime.fromtimestamp(value).isoformat(timespec="seconds")
        if value not in (None, "", False):
            write(f"{key}: {value}")
    write("spec: " + json.dumps(record.spec, indent=2))
    return 0


def logs(store: JobStore, job_id: str, namespace: str | None, follow: bool, write=print) -> int:
    record = resolve(store, job_id, namespace)
    try:
        if record.backend == "local":
            local.follow_log(store, record, write, follow=follow)
        else:
            hf.follow_logs(hub_api(), record, write, follow=follow)
    except KeyboardInterrupt:
        write(f"\nstopped following; job {record.id} keeps running.")
        return 130
    return 0


def cancel(store: JobStore, job_id: str, namespace: str | None, write=print) -> int:
    record = refreshed(store, resolve(store, job_id, namespace))
    if record.stage in TERMINAL_STAGES:
        write(f"job {record.id} already ended: {record.stage}")
        return 0
    if record.backend == "local":
        write(f"stopping job {record.id}: SIGTERM to its training, which writes a checkpoint first")
        record = local.cancel(store, record)
    else:
        record = hf.cancel(hub_api(), store, record)
    write(f"job {record.id}: {record.stage}" + (f" ({record.message})" if record.message else ""))
    if record.stage not in TERMINAL_STAGES:
        raise FtError(f"job {record.id} is still {record.stage}; check again with `ft jobs inspect {record.id}`.")
    return 0


def wait(store: JobStore, job_id: str, namespace: str | None, interval_s: float, write=print) -> int:
    record = resolve(store, job_id, namespace)
    if record.backend == "local":
        last = None
        while True:
            record = local.refresh(store, record)
            if record.stage != last:
                write(f"{record.id}: {record.stage}")
                last = record.stage
            if record.stage in TERMINAL_STAGES:
                break
            time.sleep(min(interval_s, 1.0))
    else:
        record = hf.wait(hub_api(), store, record, interval_s, write)
    return report_end(record, write)


def pull(store: JobStore, job_id: str, namespace: str | None, target: str | None, include_checkpoints: bool,
         write=print) -> int:
    record = resolve(store, job_id, namespace)
    if record.backend == "local":
        folder = local.pull(record, Path(target) if target else None, include_checkpoints)
    else:
        destination = Path(target) if target else Path("runs") / (record.run_name or record.id)
        if destination.exists():
            raise FtError(f"{destination} already exists. Pass --to a new folder, or remove it first.")
        folder = hf.pull(hub_api(), record, destination, include_checkpoints, write)
    write(f"run folder: {folder}\n  evaluate it: ft eval {folder} --data HELD_OUT_FILE")
    return 0
