"""Data sources: every file kind and folder kind, row locations, Arrow null padding, Hub loading, weighted mixing."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from ft.config import DataSection
from ft.data.prepare import PreparedData, load_conversations, shares, source_list
from ft.data.sources import read_source
from ft.errors import FtError

# Two tools whose parameter schemas have different keys: Arrow stores them as one struct type and pads with nulls.
TOOLS_A = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}]
TOOLS_B = [{"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"type": "integer"}}}}}]
ROWS = [
    {"messages": [{"role": "user", "content": "Oslo?"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}], "tools": TOOLS_A},
    {"messages": [{"role": "user", "content": "1+2?"}, {"role": "assistant", "content": "3"}], "tools": TOOLS_B},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_jsonl_locations_skip_blank_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n")
    rows = read_source(str(path), "train")
    assert [row.where for row in rows] == ["t.jsonl:1", "t.jsonl:3"]
    assert rows[1].row == ROWS[1]


def test_jsonl_bad_lines_listed(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join([json.dumps(ROWS[0]), "[1, 2]", "{oops"] + ["{"] * 6) + "\n")
    with pytest.raises(FtError) as err:
        read_source(str(path), "train")
    message = str(err.value)
    assert "t.jsonl: 8 bad row(s):" in message
    assert "line 2: expected a JSON object, got list" in message
    assert "line 3: invalid JSON" in message
    assert "... and 3 more" in message


def test_json_array_item_lines(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(ROWS, indent=2))
    rows = read_source(str(path), "train")
    assert [row.row for row in rows] == ROWS
    second_line = path.read_text().splitlines().index("  {", 2) + 1
    assert rows[0].where == "t.json:2 (item 0)"
    assert rows[1].where == f"t.json:{second_line} (item 1)"


def test_json_array_non_object_item(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[\n{"text": "a"},\n"b"\n]')
    with pytest.raises(FtError, match=r"line 3 \(item 1\): expected an object, got str"):
        read_source(str(path), "train")


def test_json_array_syntax_error_line(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[\n{"text": "a"},\n{"text": }\n]')
    with pytest.raises(FtError, match="t.json: line 3, column 10: invalid JSON"):
        read_source(str(path), "train")


def test_json_suffix_holding_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "bfcl.json", ROWS)
    assert [row.where for row in read_source(str(path), "train")] == ["bfcl.json:1", "bfcl.json:2"]


def test_gzipped_jsonl(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(row) + "\n" for row in ROWS).encode()))
    assert [row.row for row in read_source(str(path), "train")] == ROWS


def test_csv_rows_and_multiline_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('instruction,output\n"two\nlines",a\nthird,b\n')
    rows = read_source(str(path), "train")
    assert [row.where for row in rows] == ["t.csv:2", "t.csv:4"]
    assert rows[0].row == {"instruction": "two\nlines", "output": "a"}


def test_csv_extra_cells_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("instruction,output\na,b,c\n")
    with pytest.raises(FtError, match="line 2: 1 more cell"):
        read_source(str(path), "train")


def test_missing_file_named(tmp_path):
    with pytest.raises(FtError, match="data file not found"):
        read_source(str(tmp_path / "nope.jsonl"), "train")


def test_parquet_tools_survive_arrow(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    rows = read_source(str(path), "train")
    assert [row.row["tools"] for row in rows] == [TOOLS_A, TOOLS_B]
    assert rows[0].row["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert rows[1].where == "t.parquet row 1"


def test_save_to_disk_tools_survive_arrow(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])}).save_to_disk(tmp_path / "saved")
    rows = read_source(str(tmp_path / "saved"), "train")
    assert [row.row["tools"] for row in rows] == [TOOLS_A, TOOLS_B]
    assert rows[0].where == "saved[train] row 0"


def test_save_to_disk_missing_split_lists_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(ROWS)}).save_to_disk(tmp_path / "saved")
    with pytest.raises(FtError, match="no split 'validation'; it has train"):
        read_source(str(tmp_path / "saved"), "validation")


def test_folder_of_data_files_loads_offline(tmp_path):
    """A folder that is not a `save_to_disk` folder goes through `load_dataset`, the code path of Hub ids."""
    folder = tmp_path / "repo" / "data"
    folder.mkdir(parents=True)
    write_jsonl(folder / "train.jsonl", ROWS)
    write_jsonl(folder / "validation.jsonl", ROWS[:1])
    rows = read_source(str(tmp_path / "repo"), "validation")
    assert len(rows) == 1
    assert rows[0].where == "repo[validation] row 0"
    assert rows[0].row["tools"] == TOOLS_A


def test_hub_id_passes_name_split_revision(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = read_source("someone/tool-data", "test", name="en", revision="4d81dc84")
    assert calls == [("someone/tool-data", "en", "test", "4d81dc84")]
    assert rows[1].where == "someone/tool-data[test] row 1"
    assert rows[1].row["tools"] == TOOLS_B


def test_hub_failure_names_id_and_fix(monkeypatch):
    import datasets

    def failing_load_dataset(path, name=None, split=None, revision=None):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", failing_load_dataset)
    with pytest.raises(FtError) as err:
        read_source("someone/tool-data", "train")
    assert "cannot load data set 'someone/tool-data' split 'train' (ConnectionError: offline)" in str(err.value)
    assert "HF_ENDPOINT" in str(err.value)


def text_rows(prefix: str, count: int) -> list[dict]:
    return [{"text": f"{prefix}{index}"} for index in range(count)]


def mixed_texts(tmp_path, seed: int, weights=(1.0, 3.0)) -> tuple[list[str], PreparedData]:
    a = write_jsonl(tmp_path / "a.jsonl", text_rows("a", 30))
    b = write_jsonl(tmp_path / "b.jsonl", text_rows("b", 10))
    data = DataSection(train=[{"path": str(a), "weight": weights[0]}, {"path": str(b), "weight": weights[1]}])
    result = PreparedData(examples=[])
    conversations = load_conversations(source_list(data.train, "train", None), data, seed, None, result, [])
    return [c.messages[0]["content"] for c in conversations], result


def test_mix_gives_weighted_shares(tmp_path):
    texts, result = mixed_texts(tmp_path, seed=1)
    assert len(texts) == 40
    assert result.rows_mixed == {str(tmp_path / "a.jsonl"): 10, str(tmp_path / "b.jsonl"): 30}
    from_a = [t for t in texts if t.startswith("a")]
    from_b = Counter(t for t in texts if t.startswith("b"))
    assert len(from_a) == len(set(from_a)) == 10
    assert set(from_b.values()) == {3}
    assert len(from_b) == 10


def test_mix_is_deterministic_per_seed(tmp_path):
    first, _ = mixed_texts(tmp_path, seed=7)
    again, _ = mixed_texts(tmp_path, seed=7)
    other, _ = mixed_texts(tmp_path, seed=8)
    assert first == again
    assert first != other


def test_mix_equal_weights_interleave(tmp_path):
    texts, _ = mixed_texts(tmp_path, seed=3, weights=(1.0, 1.0))
    assert sum(t.startswith("a") for t in texts) == 20
    assert sum(t.startswith("a") for t in texts[:20]) not in (0, 20)


def test_shares_add_up():
    assert shares(10, [1, 1, 1]) == [4, 3, 3]
    assert shares(7, [0.5, 2]) == [1, 6]
    assert sum(shares(1001, [0.3, 0.3, 0.4])) == 1001


def test_unknown_mapping_field_stops_once(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", text_rows("a", 3))
    data = DataSection(train=str(path), columns={"answer": "reply"})
    with pytest.raises(FtError, match="data.columns: unknown field"):
        load_conversations(source_list(data.train, "train", None), data, 0, None, PreparedData(examples=[]), [])


def test_mapping_and_shape_from_config(tmp_path):
    """data.shape and data.columns rename the standard fields."""
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "answer": "4"}])
    data = DataSection(train=str(path), shape="instruction", columns={"instruction": "question", "output": "answer"})
    result = PreparedData(examples=[])
    conversations = load_conversations(source_list(data.train, "train", None), data, 0, None, result, [])
    assert result.shapes == {"instruction": 1}
    assert conversations[0].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
