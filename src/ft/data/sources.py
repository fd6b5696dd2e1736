"""Read raw rows from JSONL, JSON, CSV, Parquet, `save_to_disk` folders, data-file folders and Hub data sets.

Each row comes with a location (`train.jsonl:17`, `en.json:40 (item 3)`, `hf-disk[train] row 4`) so that every later
error can point at it. JSON, JSONL and CSV files are parsed with the standard library, row by row.

Rows that come through Arrow (Parquet, `save_to_disk` folders, `datasets.load_dataset`) lose a property of JSON.
Arrow stores a list of objects as a list of structs with one shared set of keys, so objects that had different keys
come back padded with `None` for the keys they lacked. A tool list then renders as tools with `"required": null`
and parameters that were never defined, and call arguments gain null arguments. Those sources therefore drop every
`None`-valued key inside nested objects (see `drop_arrow_nulls`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

MAX_REPORTED = 5
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".gz")
# Files that `save_to_disk` writes: a folder with one of them is loaded with `load_from_disk`.
SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")
WHITESPACE = re.compile(r"\s*")


@dataclass
class RawRow:
    where: str
    row: dict


def read_source(path: str, split: str, name: str | None = None, revision: str | None = None) -> list[RawRow]:
    """Return every row of one source. Raise FtError naming the file and line of the first bad rows.

    A folder written by `save_to_disk` is loaded with `load_from_disk`. Any other folder (a downloaded copy of a Hub
    data set repository, say) and any string that is not a local path go to `datasets.load_dataset`.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        if any((local / marker).is_file() for marker in SAVED_DATASET_MARKERS):
            return read_disk_folder(local, split)
        return read_hub(str(local), split, name, revision)
    if local.is_file():
        return read_file(local)
    if path.startswith((".", "/", "~")) or local.suffix.lower() in FILE_SUFFIXES:
        raise FtError(f"{path}: data file not found. Check the path (relative paths start at the current folder).")
    return read_hub(path, split, name, revision)


def read_file(path: Path) -> list[RawRow]:
    """Read one data file, chosen by its suffix; `.gz` files are decompressed first."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes[-1:] == [".parquet"]:
        return read_parquet(path)
    text = read_utf8(path)
    if suffixes[-1:] == [".csv"] or suffixes[-2:] == [".csv", ".gz"]:
        return read_csv(path, text)
    if not text.strip():
        raise FtError(f"{path}: the file is empty. It needs one JSON object per line (JSONL) or a JSON array.")
    # A `.json` file may hold JSON Lines (BFCL files do), so the first character decides, not the suffix.
    if text.lstrip().startswith("[") and ".jsonl" not in suffixes:
        return read_json_array(path, text)
    return read_jsonl(path, text)


def read_utf8(path: Path) -> str:
    """Return the text of a UTF-8 file, decompressing it when its name ends in `.gz`."""
    try:
        data = path.read_bytes()
        if path.suffix.lower() == ".gz":
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FtError(f"{path}: not valid UTF-8 (byte offset {err.start}). Re-encode the file as UTF-8.") from None
    except (OSError, EOFError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise FtError(f"{path}: cannot read the file ({reason}).") from None


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
        except RecursionError:
            bad.append(f"line {number}: JSON nested too deeply to read")
            continue
        if not isinstance(value, dict):
            bad.append(f"line {number}: expected a JSON object, got {type(value).__name__}")
            continue
        rows.append(RawRow(f"{path.name}:{number}", value))
    if bad:
        raise FtError(bad_rows_message(path, bad, "Fix or remove those lines"))
    return rows


def read_json_array(path: Path, text: str) -> list[RawRow]:
    """Read a JSON array item by item, so that each row's location names the line where the item starts."""
    decoder = json.JSONDecoder()
    rows, bad = [], []
    position = text.index("[") + 1
    line = 1 + text.count("\n", 0, position)
    while True:
        start = WHITESPACE.match(text, position).end()
        line += text.count("\n", position, start)
        if start < len(text) and text[start] == "]" and not rows and not bad:
            break
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as err:
            raise FtError(f"{path}: line {err.lineno}, column {err.colno}: invalid JSON ({err.msg}).") from None
        index = len(rows) + len(bad)
        if isinstance(value, dict):
            rows.append(RawRow(f"{path.name}:{line} (item {index})", value))
        else:
            bad.append(f"line {line} (item {index}): expected an object, got {type(value).__name__}")
        line += text.count("\n", start, end)
        position = WHITESPACE.match(text, end).end()
        line += text.count("\n", end, position)
        if position < len(text) and text[position] == ",":
            position += 1
            continue
        if position < len(text) and text[position] == "]" and not text[position + 1:].strip():
            break
        raise FtError(f"{path}: line {line}: invalid JSON (expected `,` or a final `]` after item {index}).")
    if bad:
        raise FtError(bad_rows_message(path, bad, "Each item must be a JSON object"))
    return rows


def read_csv(path: Path, text: str) -> list[RawRow]:
    """Read a CSV file with a header line. Cells stay strings; JSON inside a cell is parsed later, by shape."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows, bad = [], []
    line = 2
    try:
        for row in reader:
            if None in row:
                bad.append(f"line {line}: {len(row[None])} more cell(s) than the header has columns")
            else:
                rows.append(RawRow(f"{path.name}:{line}", dict(row)))
            line = reader.line_num + 1
    except csv.Error as err:
        raise FtError(f"{path}: line {reader.line_num}: invalid CSV ({err}).") from None
    if bad:
        raise FtError(bad_rows_message(path, bad, "Quote cells that contain commas, or fix the header"))
    if not rows:
        raise FtError(f"{path}: no rows under the header line.")
    return rows


def read_parquet(path: Path) -> list[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError and others for a bad file
        raise FtError(f"{path}: cannot read as Parquet ({err}).") from None
    return [RawRow(f"{path.name} row {index}", drop_arrow_nulls(row)) for index, row in enumerate(table.to_pylist())]


def read_disk_folder(folder: Path, split: str) -> list[RawRow]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(folder))
    except Exception as err:  # datasets raises FileNotFoundError and its own errors for a foreign folder
        raise FtError(f"{folder}: not a `save_to_disk` folder ({err}). "
                      "Point at a data file or a saved data set.") from None
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise FtError(f"{folder}: no split {split!r}; it has {', '.join(loaded)}. "
                          "Set data.split (data.eval_split for data.eval, or `split` in a source entry).")
        loaded = loaded[split]
    if not isinstance(loaded, Dataset):
        raise FtError(f"{folder}: contains a {type(loaded).__name__}, not a data set saved with `save_to_disk`.")
    label = f"{folder.name}[{split}]"
    return [RawRow(f"{label} row {index}", drop_arrow_nulls(row)) for index, row in enumerate(loaded.to_list())]


def read_hub(repo_id: str, split: str, name: str | None, revision: str | None) -> list[RawRow]:
    """Load one split of a Hub data set (or a local folder of data files) with `datasets.load_dataset`."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(repo_id, name, split=split, revision=revision)
    except Exception as err:  # network, missing repo, missing split: datasets has no common base class
        raise FtError(f"data: cannot load data set {repo_id!r} split {split!r} ({type(err).__name__}: {err}). "
                      "Check the id, `name` and split, your connection (or HF_ENDPOINT), "
                      "or use a local file.") from None
    label = Path(repo_id).name if Path(repo_id).is_dir() else repo_id
    rows = dataset.to_list()
    return [RawRow(f"{label}[{split}] row {index}", drop_arrow_nulls(row)) for index, row in enumerate(rows)]


def drop_arrow_nulls(row: dict) -> dict:
    """Remove `None`-valued keys from every object nested inside the row's columns, which Arrow added.

    Top-level columns keep their `None` (a missing `tool_name` means something there).
    NOTE: a `null` that was really in the data inside a nested object (an argument set to null) is dropped too,
    because Arrow gives no way to tell it from padding. Store `tools` and call `arguments` as JSON strings to keep
    them byte for byte.
    """
    return {key: without_none_keys(value) for key, value in row.items()}


def without_none_keys(value):
    if isinstance(value, dict):
        return {key: without_none_keys(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_none_keys(item) for item in value]
    return value


def bad_rows_message(path: Path, bad: list[str], fix: str) -> str:
    shown = "\n".join(f"  {item}" for item in bad[:MAX_REPORTED])
    more = f"\n  ... and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
    return f"{path}: {len(bad)} bad row(s):\n{shown}{more}\n{fix}."
