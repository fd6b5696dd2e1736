"""Read raw rows from JSONL, JSON, CSV, Parquet, `save_to_disk` folders and Hub data sets.

Each row comes with a location (`train.jsonl:17`, `hf-disk[train] row 4`) so that every later error can point at it.
JSON files are parsed with the standard library, row by row: Arrow would turn a `tools` column whose dicts differ in
shape into dicts padded with nulls, which then render as different tools.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

MAX_REPORTED = 5


@dataclass
class RawRow:
    where: str
    row: dict


def read_source(path: str, split: str, name: str | None = None, revision: str | None = None) -> list[RawRow]:
    """Return every row of one source. Raise FtError naming the file and line of the first bad rows."""
    local = Path(path).expanduser()
    if local.is_dir():
        return read_disk_folder(local, split)
    if local.is_file():
        return read_file(local)
    if path.startswith((".", "/", "~")) or local.suffix in (".jsonl", ".json", ".csv", ".parquet"):
        raise FtError(f"{path}: data file not found. Check the path (relative paths start at the current folder).")
    return read_hub(path, split, name, revision)


def read_file(path: Path) -> list[RawRow]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet(path)
    if suffix == ".csv":
        return read_csv(path)
    text = read_utf8(path)
    if not text.strip():
        raise FtError(f"{path}: the file is empty. It needs one JSON object per line (JSONL) or a JSON array.")
    if text.lstrip().startswith("[") and suffix != ".jsonl":
        return read_json_array(path, text)
    return read_jsonl(path, text)


def read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise FtError(f"{path}: not valid UTF-8 (byte offset {err.start}). Re-encode the file as UTF-8.") from None
    except OSError as err:
        raise FtError(f"{path}: cannot read the file ({err.strerror}).") from None


def read_jsonl(path: Path, text: str) -> list[RawRow]:
    rows, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append(f"line {number}: invalid JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(value, dict):
            bad.append(f"line {number}: expected a JSON object, got {type(value).__name__}")
            continue
        rows.append(RawRow(f"{path.name}:{number}", value))
    if bad:
        raise FtError(bad_rows_message(path, bad, "Fix or remove those lines"))
    return rows


def read_json_array(path: Path, text: str) -> list[RawRow]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise FtError(f"{path}: line {err.lineno}, column {err.colno}: invalid JSON ({err.msg}).") from None
    if not isinstance(value, list):
        raise FtError(f"{path}: expected a JSON array of objects, got {type(value).__name__}.")
    bad = [f"item {index}: expected an object, got {type(item).__name__}"
           for index, item in enumerate(value) if not isinstance(item, dict)]
    if bad:
        raise FtError(bad_rows_message(path, bad, "Each item must be a JSON object"))
    return [RawRow(f"{path.name}[{index}]", item) for index, item in enumerate(value)]


def read_csv(path: Path) -> list[RawRow]:
    text = read_utf8(path)
    reader = csv.DictReader(text.splitlines())
    rows = [RawRow(f"{path.name}:{index + 2}", dict(row)) for index, row in enumerate(reader)]
    if not rows:
        raise FtError(f"{path}: no rows under the header line.")
    return rows


def read_parquet(path: Path) -> list[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError and others for a bad file
        raise FtError(f"{path}: cannot read as Parquet ({err}).") from None
    return [RawRow(f"{path.name} row {index}", row) for index, row in enumerate(table.to_pylist())]


def read_disk_folder(folder: Path, split: str) -> list[RawRow]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(folder))
    except Exception as err:  # datasets raises FileNotFoundError and its own errors for a foreign folder
        raise FtError(f"{folder}: not a `save_to_disk` folder ({err}). Point at a data file or a saved data set.") from None
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise FtError(f"{folder}: no split {split!r}; it has {', '.join(loaded)}. Set data.split (or data.eval_split).")
        loaded = loaded[split]
    assert isinstance(loaded, Dataset)
    label = f"{folder.name}[{split}]"
    return [RawRow(f"{label} row {index}", row) for index, row in enumerate(loaded.to_list())]


def read_hub(repo_id: str, split: str, name: str | None, revision: str | None) -> list[RawRow]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(repo_id, name, split=split, revision=revision)
    except Exception as err:  # network, missing repo, missing split: datasets has no common base class
        raise FtError(f"data: cannot load Hub data set {repo_id!r} split {split!r} ({type(err).__name__}: {err}). "
                      "Check the id and split, your connection (or HF_ENDPOINT), or use a local file.") from None
    return [RawRow(f"{repo_id}[{split}] row {index}", row) for index, row in enumerate(dataset.to_list())]


def bad_rows_message(path: Path, bad: list[str], fix: str) -> str:
    shown = "\n".join(f"  {item}" for item in bad[:MAX_REPORTED])
    more = f"\n  ... and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
    return f"{path}: {len(bad)} bad row(s):\n{shown}{more}\n{fix}."
