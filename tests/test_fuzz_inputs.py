"""Malformed configs, data files and flags given to `ft train`, generated from a fixed seed.

Each case must end in one `error:` message of bounded length and exit code 2, with no traceback, and must leave
the case folder exactly as it was (no run folder, nothing half-written). The cases run in-process through
`ft.cli.main` on the tiny model. Training itself is replaced by a function that raises, so a case that gets
that far fails fast instead of training. `pytest -s` shows the closing summary line.
"""

from __future__ import annotations

import json
import random
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import ft.cli
import ft.model
import ft.train
from ft.config import Config

REPO = Path(__file__).resolve().parents[1]
SEED = 1234
MAX_MESSAGE_CHARS = 4000  # a message longer than this is not one clear message
ONE_MB = 1024 * 1024
GOOD_ROWS = [json.loads(line) for line in (REPO / "data/quickstart/train.jsonl").read_text().splitlines()[:4]]

rng = random.Random(SEED)


class ReachedTraining(Exception):
    """The exception that replaces `ft.train.fit` and `ft.model.load_model`: the input got past every check."""


@dataclass
class Workspace:
    """The folder of one case and the model to name in its config."""

    folder: Path
    model_dir: Path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def rows_file(self, lines: list[str], name: str = "train.jsonl") -> Path:
        return self.write(name, "".join(line + "\n" for line in lines))

    def good_data(self, name: str = "train.jsonl") -> Path:
        return self.rows_file([json.dumps(row) for row in GOOD_ROWS], name)

    def tree(self, train: Path | str | None = None) -> dict:
        """A valid config tree (given valid data); cases break one part of it."""
        return {
            "model": {"name": str(self.model_dir)},
            "data": {"train": str(train or self.good_data()), "max_length": 256},
            "training": {"max_steps": 1, "batch_size": 1},
            "output": {"dir": str(self.folder / "runs")},
        }

    def config(self, tree: dict, name: str = "config.yaml") -> str:
        return str(self.write(name, yaml.safe_dump(tree, sort_keys=False)))


@dataclass
class Case:
    id: str
    build: Callable[[Workspace], list[str]]  # returns the arguments after `ft train`
    expect: str | None = None  # text that stderr must contain (the key, file or row); `{folder}` is the case folder
    known_bug: str | None = None  # reason of the strict xfail, while the bug in ft is open


CASES: list[Case] = []


def case(case_id: str, build: Callable[[Workspace], list[str]], expect: str | None = None,
         known_bug: str | None = None) -> None:
    CASES.append(Case(case_id, build, expect, known_bug))


def with_value(dotted: str, value) -> Callable[[Workspace], list[str]]:
    """Build a config whose key `dotted` (e.g. `training.max_steps`) is set to `value`."""
    def build(ws: Workspace) -> list[str]:
        tree = ws.tree()
        *parents, last = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        return [ws.config(tree)]
    return build


def with_source_value(key: str, value) -> Callable[[Workspace], list[str]]:
    """Build a config whose data.train is a one-source list with `key` set to `value`."""
    def build(ws: Workspace) -> list[str]:
        tree = ws.tree()
        tree["data"]["train"] = [{"path": tree["data"]["train"], key: value}]
        return [ws.config(tree)]
    return build


def without(dotted: str) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        tree = ws.tree()
        *parents, last = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        del node[last]
        return [ws.config(tree)]
    return build


def with_rows(lines: list[str], name: str = "train.jsonl", **data_keys) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        tree = ws.tree(ws.rows_file(lines, name))
        tree["data"].update(data_keys)
        return [ws.config(tree)]
    return build


def with_data_file(name: str, content: str | bytes, **data_keys) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        tree = ws.tree(ws.write(name, content))
        tree["data"].update(data_keys)
        return [ws.config(tree)]
    return build


def with_config_text(content: str | bytes) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        return [str(ws.write("config.yaml", content))]
    return build


def with_overrides(*flags: str) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        return [ws.config(ws.tree()), *flags]
    return build


def among_good(bad_line: str) -> tuple[list[str], int]:
    """Return the good rows with `bad_line` at a seeded position, and the bad line's 1-based number."""
    lines = [json.dumps(row) for row in GOOD_ROWS]
    position = rng.randrange(len(lines) + 1)
    lines.insert(position, bad_line)
    return lines, position + 1


def row_with(**changes) -> dict:
    row = json.loads(json.dumps(GOOD_ROWS[0]))
    row.update(changes)
    return row


def assistant_call(arguments, name="set_reminder") -> dict:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}


# ---------------------------------------------------------------------------------------------------------------
# Config keys: wrong types, out-of-range values, missing keys, unknown keys, wrong shapes


def schema_leaves() -> list[tuple[str, object]]:
    leaves = []
    for section, info in Config.model_fields.items():
        for name, field in info.annotation.model_fields.items():
            leaves.append((f"{section}.{name}", field))
    return leaves


def wrong_values(field) -> list:
    """Values that no field of this annotation accepts: a mapping always, plus one of another type."""
    text = str(field.annotation)
    values: list = [{"nested": [1, 2]}]
    if "Literal" in text:
        values.append("no-such-choice")
    elif "bool" in text:
        values.append("maybe")
    elif "int" in text:
        values += ["many", 2.5]
    elif "float" in text:
        values.append("fast")
    elif "str" in text:
        values += [123, [[1]]]
    for limit in field.metadata:  # annotated_types Ge, Gt, Lt from Field(ge=..., gt=..., lt=...)
        if hasattr(limit, "ge"):
            values.append(limit.ge - 1)
        elif hasattr(limit, "gt"):
            values.append(limit.gt)
        elif hasattr(limit, "lt"):
            values.append(limit.lt)
    return values


for dotted, field in schema_leaves():
    for index, value in enumerate(wrong_values(field)):
        case(f"key-{dotted}-{index}", with_value(dotted, value), expect=dotted)

SOURCE_KEYS = {"path": [123, {"a": 1}], "split": [[1]], "name": [{"a": 1}], "revision": [7],
               "weight": ["heavy", 0, -1], "messages_column": [[1]]}
for key, values in SOURCE_KEYS.items():
    for index, value in enumerate(values):
        case(f"source-{key}-{index}", with_source_value(key, value), expect=key)

for dotted in ("model", "data", "model.name", "data.train"):
    case(f"missing-{dotted}", without(dotted), expect=f"{dotted}: required key is missing")
case("missing-source-path", with_value("data.train", [{"weight": 1.0}]), expect="path")

UNKNOWN_KEYS = {"modle": "modle", "model.nmae": "model.nmae", "data.trian": "data.trian", "lora.rank": "lora.rank",
                "training.lr": "training.lr", "output.folder": "output.folder", "training.extra.deep": "training.extra"}
for dotted, reported in UNKNOWN_KEYS.items():
    case(f"unknown-{dotted}", with_value(dotted, 1), expect=f"{reported}: unknown key")
case("unknown-source-key", with_source_value("paht", "x.jsonl"), expect="paht")

for section in ("model", "data", "lora", "training", "output"):
    for index, value in enumerate(([1, 2], "text", 3)):
        case(f"shape-{section}-{index}", with_value(section, value), expect=section)
for index, text in enumerate(("- a\n- b\n", "just a string\n", "42\n")):
    case(f"shape-top-{index}", with_config_text(text), expect="config.yaml")

# Values of the right type that no library accepts. They pass the schema but must still stop before training.
for dotted, value in (("training.lr_scheduler", "no-such-schedule"), ("training.optimizer", "no-such-optimizer"),
                      ("model.attn_implementation", "no-such-kernel"), ("training.report_to", "no-such-tracker")):
    case(f"value-{dotted}", with_value(dotted, value), expect=dotted)
case("value-long-string-for-int", with_value("training.max_steps", "x" * ONE_MB), expect="training.max_steps")
case("value-nul-in-model-name", with_value("model.name", "model\x00name"), expect="model.name")
case("value-full-with-targets", lambda ws: [ws.config({**ws.tree(), "training": {"method": "full"},
                                                        "lora": {"target_modules": ["q_proj"]}})],
     expect="lora.target_modules")
case("value-push-without-repo", with_value("output.push_to_hub", True), expect="output.hub_repo")
case("value-repo-not-an-id", with_value("output.hub_repo", "no-namespace"), expect="output.hub_repo")
case("value-output-dir-is-file", lambda ws: [ws.config({**ws.tree(), "output": {"dir": str(ws.write("runs", "x"))}})],
     expect="output.dir")

# ---------------------------------------------------------------------------------------------------------------
# The config file itself


def truncated_config(ws: Workspace, cut_fraction: float) -> list[str]:
    """Write a valid config whose last line is data.train, cut at a fraction of its length."""
    tree = ws.tree()
    ordered = {"output": tree["output"], "training": tree["training"], "model": tree["model"], "data": tree["data"]}
    ordered["data"] = {"max_length": 256, "train": tree["data"]["train"]}
    text = yaml.safe_dump(ordered, sort_keys=False)
    cut = max(1, min(len(text) - 2, int(len(text) * cut_fraction)))  # len - 1 would keep the whole path
    return [str(ws.write("config.yaml", text[:cut]))]


for index in range(25):
    fraction = rng.random()
    # A cut inside the data.train path leaves a valid config naming a missing file, so no single text is expected.
    case(f"config-truncated-{index}", lambda ws, fraction=fraction: truncated_config(ws, fraction))

case("config-empty", with_config_text(""), expect="empty")
case("config-whitespace", with_config_text("  \n\n\t\n"), expect="config.yaml")
case("config-comments-only", with_config_text("# nothing here\n"), expect="empty")
case("config-not-utf8", with_config_text(b"model:\n  name: caf\xe9\xff\n"), expect="UTF-8")
case("config-random-bytes", with_config_text(bytes(rng.randrange(256) for _ in range(512))), expect="config.yaml")
case("config-tab-indent", with_config_text("model:\n\tname: x\n"), expect="invalid YAML")
case("config-unclosed-flow", with_config_text("model: {name: x\n"), expect="invalid YAML")
case("config-long-junk-line", with_config_text("x" * ONE_MB + "\n"), expect="config.yaml")
case("config-long-unknown-key", lambda ws: [ws.config({**ws.tree(), "k" * ONE_MB: 1})], expect="unknown key")
case("config-missing", lambda ws: [str(ws.folder / "nope.yaml")], expect="nope.yaml")
case("config-is-directory", lambda ws: [str((ws.folder / "confdir").mkdir() or ws.folder / "confdir")],
     expect="confdir")

# ---------------------------------------------------------------------------------------------------------------
# Command-line flags

for index, flag in enumerate(("training.max_steps=abc", "training.max_steps", "=5", "training..x=1",
                              "training.max_steps=[1, 2]", "model=3", "data.train.path=x.jsonl", "lora.r=-1",
                              "output.push_to_hub=yes", "model.precision=fp8", "training.max_steps=1: 2",
                              "training.max_steps={", "no_section_key=1", "training.batch_size=")):
    case(f"set-{index}", with_overrides("--set", flag))
case("flag-unknown", with_overrides("--no-such-flag"))
case("flag-config-missing-arg", lambda ws: [])
case("flag-resume-missing-folder", lambda ws: [ws.config(ws.tree()), "--resume", str(ws.folder / "no-run")],
     expect="--resume")

# ---------------------------------------------------------------------------------------------------------------
# Data files: missing, empty, wrong format, not UTF-8, truncated, very long lines

case("data-missing-absolute", lambda ws: [ws.config(ws.tree(ws.folder / "absent.jsonl"))], expect="absent.jsonl")
case("data-hub-id-offline", lambda ws: [ws.config(ws.tree("nobody/no-such-dataset"))], expect="nobody/no-such-dataset")
case("data-missing-relative", lambda ws: [ws.config(ws.tree("does/not/exist.jsonl"))], expect="exist.jsonl")
case("data-directory-empty", lambda ws: [ws.config(ws.tree((ws.folder / "d").mkdir() or ws.folder / "d"))],
     expect="{folder}/d")
# A folder of .txt files is a valid plain-text data set for `datasets`, so the junk here is a binary file.
case("data-directory-junk", lambda ws: [ws.config(ws.tree(ws.write("d/junk.bin", b"\x00\x01").parent))],
     expect="{folder}/d")
case("data-empty-jsonl", with_data_file("train.jsonl", ""), expect="empty")
case("data-blank-lines", with_data_file("train.jsonl", "\n\n  \n"), expect="empty")
case("data-empty-json", with_data_file("train.json", ""), expect="empty")
case("data-json-number", with_data_file("train.json", "42\n"), expect="train.json")
case("data-json-array-of-numbers", with_data_file("train.json", "[1, 2, 3]"), expect="item 0")
case("data-json-array-empty", with_data_file("train.json", "[]"), expect="no row")
case("data-csv-empty", with_data_file("train.csv", ""), expect="train.csv")
case("data-csv-header-only", with_data_file("train.csv", "messages,tools\n"), expect="no rows")
case("data-csv-unknown-columns", with_data_file("train.csv", "a,b\n1,2\n3,4\n"), expect="train.csv")
case("data-csv-not-utf8", with_data_file("train.csv", b"text\ncaf\xe9\n"), expect="UTF-8")
case("data-parquet-text", with_data_file("train.parquet", "this is not parquet\n"), expect="Parquet")
case("data-parquet-empty", with_data_file("train.parquet", b""), expect="Parquet")
case("data-parquet-truncated", with_data_file("train.parquet", b"PAR1\x00\x00\x00PAR"), expect="Parquet")


def parquet_rows(ws: Workspace, rows: list[dict]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = ws.folder / "train.parquet"
    table = pa.Table.from_pylist(rows) if rows else pa.table({"messages": pa.array([], pa.string())})
    pq.write_table(table, path)
    return [ws.config(ws.tree(path))]


case("data-parquet-no-rows", lambda ws: parquet_rows(ws, []), expect="no row")
case("data-parquet-unknown-columns", lambda ws: parquet_rows(ws, [{"a": 1, "b": "x"}] * 3), expect="columns")

for index in range(6):
    good = json.dumps(GOOD_ROWS[index % len(GOOD_ROWS)])
    cut = rng.randrange(1, len(good) - 1)
    lines, number = among_good(good[:cut])
    case(f"jsonl-truncated-line-{index}", with_rows(lines), expect=f"line {number}")

for index in range(4):
    raw = json.dumps(GOOD_ROWS[0]).encode()
    spot = rng.randrange(len(raw))
    bad = raw[:spot] + bytes([0x80 + rng.randrange(0x40)]) + raw[spot:]
    lines = [json.dumps(row) for row in GOOD_ROWS]
    content = ("\n".join(lines[:2]) + "\n").encode() + bad + b"\n"
    case(f"jsonl-not-utf8-{index}", with_data_file("train.jsonl", content), expect="UTF-8")

full_json = json.dumps([row for row in GOOD_ROWS])
for index in range(4):
    cut = rng.randrange(1, len(full_json) - 1)
    case(f"json-array-truncated-{index}", with_data_file("train.json", full_json[:cut]), expect="train.json")

for index, bad in enumerate(("[1, 2]", "42", '"a string"', "null", "true", "[]")):
    lines, number = among_good(bad)
    case(f"jsonl-row-not-object-{index}", with_rows(lines), expect=f"line {number}")

case("jsonl-long-unterminated", with_rows(['{"messages": "' + "x" * ONE_MB]), expect="line 1")
case("jsonl-long-no-assistant", with_rows([json.dumps({"messages": [{"role": "user", "content": "x" * ONE_MB}]})]),
     expect="no row")
case("jsonl-deep-nesting", with_rows(["[" * 100_000 + "]" * 100_000]), expect="line 1")

# ---------------------------------------------------------------------------------------------------------------
# Rows of the wrong shape, each placed among good rows


def user(text="hi"):
    return {"role": "user", "content": text}


BAD_ROWS = {
    "no-message-column": {"question": "hi", "answer": "there"},
    "messages-string": {"messages": "hello there"},
    "messages-list-of-strings": {"messages": ["hello", "there"]},
    "messages-empty": {"messages": [], "text": 5},
    "messages-list-of-numbers": {"messages": [1, 2]},
    "message-without-role": {"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]},
    "role-unknown": {"messages": [user(), {"role": "wizard", "content": "abracadabra"}]},
    "role-number": {"messages": [{"role": 3, "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    "content-number": {"messages": [user(), {"role": "assistant", "content": 42}]},
    "content-mapping": {"messages": [user(), {"role": "assistant", "content": {"text": "yo"}}]},
    "content-image-part": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                                        {"role": "assistant", "content": "yo"}]},
    "arguments-bad-json": {"messages": [user(), assistant_call('{"text": "car", "minutes": ')]},
    "arguments-list": {"messages": [user(), assistant_call([1, 2])]},
    "arguments-number": {"messages": [user(), assistant_call(7)]},
    "tool-calls-string": {"messages": [user(), {"role": "assistant", "content": "", "tool_calls": "set_reminder()"}]},
    "tool-call-no-name": {"messages": [user(), {"role": "assistant", "content": "",
                                                "tool_calls": [{"function": {"arguments": "{}"}}]}]},
    "tool-call-name-number": {"messages": [user(), assistant_call("{}", name=5)]},
    "tool-call-entry-string": {"messages": [user(), {"role": "assistant", "content": "", "tool_calls": ["call"]}]},
    "tools-mapping": row_with(tools={"name": "set_reminder"}),
    "tools-number": row_with(tools=5),
    "tools-bad-json-string": row_with(tools='[{"name": "set_reminder"'),
    "tools-list-of-strings": row_with(tools=["set_reminder"]),
    "tools-without-name": row_with(tools=[{"type": "function", "function": {"description": "no name"}}]),
    "sharegpt-unknown-from": {"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "yo"}]},
    "sharegpt-call-bad-json": {"conversations": [{"from": "human", "value": "hi"},
                                                 {"from": "function_call", "value": '{"name": "f", "arg'}]},
    "instruction-without-output": {"instruction": "say hi", "response": "hi"},
    "text-not-string": {"text": 5},
}
for name, row in BAD_ROWS.items():
    lines, number = among_good(json.dumps(row))
    case(f"row-{name}", with_rows(lines), expect=f"train.jsonl:{number}")

case("rows-only-prompts", with_rows([json.dumps({"messages": [user()]})] * 3), expect="no row is left")
case("rows-messages-column-absent", with_rows([json.dumps(row) for row in GOOD_ROWS], messages_column="dialogue"),
     expect="dialogue")
case("rows-tools-column-wrong", with_rows([json.dumps({**GOOD_ROWS[0], "functions": 5})], tools_column="functions"),
     expect="tools")
case("data-eval-bad", lambda ws: [ws.config({**ws.tree(), "data": {**ws.tree()["data"],
                                                                   "eval": str(ws.write("eval.jsonl", "{oops\n"))}})],
     expect="eval.jsonl")
case("data-second-source-missing", lambda ws: [ws.config({**ws.tree(), "data": {
    "train": [{"path": str(ws.good_data())}, {"path": str(ws.folder / "gone.jsonl")}]}})], expect="gone.jsonl")
case("data-overlong-drop-all", with_rows([json.dumps(row) for row in GOOD_ROWS], overlong="drop", max_length=16),
     expect="max_length")

# ---------------------------------------------------------------------------------------------------------------
# Model folders and LoRA targets


def model_folder(ws: Workspace, files: dict[str, str | bytes], name: str = "model") -> list[str]:
    for relative, content in files.items():
        ws.write(f"{name}/{relative}", content)
    tree = ws.tree()
    tree["model"]["name"] = str(ws.folder / name)
    return [ws.config(tree)]


case("model-missing-folder", with_value("model.name", "/no/such/model-folder"), expect="model.name")
case("model-no-config-json", lambda ws: model_folder(ws, {"weights.txt": "x"}), expect="config.json")
case("model-config-not-json", lambda ws: model_folder(ws, {"config.json": "{not json"}), expect="model.name")
case("model-config-unknown-type", lambda ws: model_folder(ws, {"config.json": '{"model_type": "no-such-arch"}'}),
     expect="model.name")
case("model-text-file", lambda ws: [ws.config({**ws.tree(), "model": {"name": str(ws.write("model.txt", "x"))}})],
     expect="gguf")
case("model-gguf-not-gguf", lambda ws: [ws.config({**ws.tree(), "model": {"name": str(ws.write("m.gguf", "no"))}})],
     expect="model.name")
for index, targets in enumerate((["c_attn"], "c_attn", ["q_proj", "query_key_value"], [""])):
    case(f"lora-target-{index}", with_value("lora.target_modules", targets), expect="all-linear")


# ---------------------------------------------------------------------------------------------------------------
# Running the cases

OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def fast_model_steps(tiny_model_dir):
    """Share one tokenizer per model folder, and stop any case that reaches the weights or training.

    Loading the tokenizer took about 0.4 s per case (2 CPU cores), and the cases only read it, so sharing it is safe.
    """
    real_load_tokenizer = ft.model.load_tokenizer
    cache = {}

    def load_tokenizer(source, chat_template=None):
        key = (source.load_id, source.gguf_file, chat_template)
        if key not in cache:
            cache[key] = real_load_tokenizer(source, chat_template)
        return cache[key]

    def reached_training(*args, **kwargs):
        raise ReachedTraining

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ft.model, "load_tokenizer", load_tokenizer)
        patch.setattr(ft.model, "load_model", reached_training)
        patch.setattr(ft.train, "fit", reached_training)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield tiny_model_dir


def snapshot(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_size if path.is_file() else -1
            for path in folder.rglob("*")}


def run_case(item: Case, folder: Path, model_dir: Path, capsys) -> tuple[str, str]:
    """Run one case; return (outcome, details). The outcome is `clear` when the case met every expectation."""
    argv = item.build(Workspace(folder, model_dir))
    before = snapshot(folder)
    capsys.readouterr()
    try:
        code = ft.cli.main(["train", *argv])
    except SystemExit as exit_:  # argparse exits on bad flags
        code = exit_.code
    except ReachedTraining:
        return "reached training", capsys.readouterr().err[-2000:]
    except Exception:  # the bug this test looks for: an exception that escaped the CLI
        capsys.readouterr()
        return "traceback", traceback.format_exc()[-3000:]
    err = capsys.readouterr().err
    if "Traceback" in err:
        return "traceback", err[-3000:]
    if code != 2:
        return "wrong exit code", f"exit code {code}\n{err[-2000:]}"
    if "error:" not in err:
        return "no error line", err[-2000:]
    if len(err) > MAX_MESSAGE_CHARS:
        return "message too long", f"{len(err)} characters: {err[:300]}..."
    expected = item.expect.format(folder=folder) if item.expect else None
    if expected and expected not in err:
        return "location not named", f"expected {expected!r} in:\n{err}"
    after = snapshot(folder)
    if after != before:
        return "files written", f"new or changed: {sorted(set(after.items()) - set(before.items()))[:10]}"
    return "clear", err


def params() -> list:
    out = []
    for item in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=item.known_bug)] if item.known_bug else []
        out.append(pytest.param(item, id=item.id, marks=marks))
    return out


@pytest.mark.parametrize("item", params())
def test_bad_input_clear_error(item, tmp_path, fast_model_steps, capsys):
    outcome, details = run_case(item, tmp_path, fast_model_steps, capsys)
    OUTCOMES["known bug" if item.known_bug else outcome] += 1
    assert outcome == "clear", f"{item.id}: {outcome}\n{details}"


def test_fuzz_summary():
    """Print the totals of the cases above (run the whole file); every case not marked as a known bug is clear."""
    total = sum(OUTCOMES.values())
    if total == 0:
        pytest.skip("the cases did not run in this session; run the whole file")
    known = OUTCOMES["known bug"]
    tracebacks = OUTCOMES["traceback"]
    print(f"\nfuzz: {total} cases, {OUTCOMES['clear']} clear errors, {tracebacks} tracebacks, "
          f"{known} known bugs marked xfail")
    assert len(CASES) >= 200
    assert tracebacks == 0
    assert OUTCOMES["clear"] + known == total, dict(OUTCOMES)
