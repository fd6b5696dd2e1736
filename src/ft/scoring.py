"""Score predicted tool calls against reference calls, without a model.

score_turn and aggregate score rows whose reference is a list of ToolCall. bfcl_to_json_schema and bfcl_score
handle Berkeley Function Calling Leaderboard (BFCL) rows, whose ground truth lists every acceptable value of each
argument. This module imports only the standard library and ft.toolcalls, because fast-starting commands import it.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ft.toolcalls import ParsedCalls, ToolCall

_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class BooleanValue:
    """Canonical form of a boolean. Unlike bool, it never equals the numbers 1 and 0."""

    value: bool


def normalize_value(value: Any) -> Any:
    """Return a canonical, hashable form of an argument value, so that values meaning the same compare equal.

    - Floats with an integral value become ints, so 10.0 == 10. Strings containing a plain decimal number become that
      number, so "10" and "10.0" equal 10. NOTE: "007" therefore equals 7, which is wrong for codes such as zip codes.
    - Booleans and the strings "true" and "false" (any case) become BooleanValue.
    - Other strings are stripped of surrounding whitespace and compared case-sensitively, because case often carries
      meaning in arguments (names, ticker symbols, code).
    - Lists and tuples become tuples, compared element by element in order.
    - Dicts become frozensets of (str(key), canonical value) pairs, so key order does not matter.
    - None and other types are returned unchanged.
    """
    # bool is checked before int because bool is a subclass of int.
    if isinstance(value, bool):
        return BooleanValue(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return _normalize_string(value)
    if isinstance(value, (list, tuple)):
        return tuple(normalize_value(item) for item in value)
    if isinstance(value, dict):
        return frozenset((str(key), normalize_value(item)) for key, item in value.items())
    return value


def _normalize_string(value: str) -> Any:
    text = value.strip()
    if text.lower() in ("true", "false"):
        return BooleanValue(text.lower() == "true")
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return normalize_value(float(text))
    return text


# ---------------------------------------------------------------------------------------------------------------
# Rows with reference calls


def score_turn(reference: list[ToolCall], predicted: ParsedCalls) -> dict:
    """Score one row: whether the model decided correctly to call, and with which names and arguments.

    The order of calls does not matter. name_correct compares the multisets of names. args_exact is True only when
    the multisets of (name, normalised arguments) are equal, so an extra or a missing argument fails it.
    args_correct counts the reference arguments that the matching predicted call gives with an equal normalised
    value, and args_total counts all reference arguments. Reference and predicted calls are paired by name, the
    pairs that agree on the most arguments first. Arguments the prediction adds are not counted.
    name_correct and args_exact are None, and both counts 0, when the reference has no call.
    """
    expected_call = bool(reference)
    made_call = bool(predicted.calls)
    record = {
        "expected_call": expected_call,
        "made_call": made_call,
        "decision_correct": expected_call == made_call,
        "name_correct": None,
        "args_exact": None,
        "args_correct": 0,
        "args_total": 0,
        "malformed": predicted.malformed,
    }
    if not expected_call:
        return record

    record["name_correct"] = Counter(call.name for call in reference) == Counter(call.name for call in predicted.calls)
    record["args_exact"] = Counter(map(_call_key, reference)) == Counter(map(_call_key, predicted.calls))
    record["args_correct"] = _count_matching_arguments(reference, predicted.calls)
    record["args_total"] = sum(len(call.arguments) for call in reference)
    return record


def _call_key(call: ToolCall) -> tuple[str, Any]:
    return call.name, normalize_value(call.arguments)


def _count_matching_arguments(reference: list[ToolCall], predicted: list[ToolCall]) -> int:
    # Pair reference and predicted calls of the same name, best-agreeing pairs first, each call used once.
    # NOTE: greedy pairing can miss the best total when several calls share a name (scores 3, 2 / 2, 0 pair as
    # 3 + 0, not 2 + 2). An exact assignment is not worth it for a per-argument rate.
    pairs = [
        (_matching_argument_count(expected, call), expected_index, predicted_index)
        for expected_index, expected in enumerate(reference)
        for predicted_index, call in enumerate(predicted)
        if call.name == expected.name
    ]
    used_reference: set[int] = set()
    used_predicted: set[int] = set()
    matched = 0
    for count, expected_index, predicted_index in sorted(pairs, key=lambda pair: -pair[0]):
        if expected_index in used_reference or predicted_index in used_predicted:
            continue
        used_reference.add(expected_index)
        used_predicted.add(predicted_index)
        matched += count
    return matched


def _matching_argument_count(expected: ToolCall, call: ToolCall) -> int:
    return sum(
        1
        for argument, value in expected.arguments.items()
        if argument in call.arguments and normalize_value(call.arguments[argument]) == normalize_value(value)
    )


def aggregate(records: list[dict]) -> dict:
    """Summarise per-row records of score_turn or bfcl_score as rates in [0, 1].

    Each rate is taken over the records whose field is a bool and is None when there are none. So
    tool_name_accuracy and argument_exact_match are over rows where a call was expected, and argument_accuracy is
    the sum of args_correct over the sum of args_total (None when that is 0). ended_within_cap_rate is added only
    when records carry a bool "ended" (generation stopped before the token cap), and bfcl_accuracy only when they
    carry a bool "correct" (bfcl_score records).
    """
    args_total = sum(record.get("args_total", 0) for record in records)
    args_correct = sum(record.get("args_correct", 0) for record in records)
    summary = {
        "rows": len(records),
        "call_decision_accuracy": _rate(records, "decision_correct"),
        "tool_name_accuracy": _rate(records, "name_correct"),
        "argument_exact_match": _rate(records, "args_exact"),
        "argument_accuracy": args_correct / args_total if args_total else None,
        "malformed_rate": _rate(records, "malformed"),
    }
    if any(isinstance(record.get("ended"), bool) for record in records):
        summary["ended_within_cap_rate"] = _rate(records, "ended")
    if any(isinstance(record.get("correct"), bool) for record in records):
        summary["bfcl_accuracy"] = _rate(records, "correct")
    return summary


def _rate(records: list[dict], key: str) -> float | None:
    values = [record[key] for record in records if isinstance(record.get(key), bool)]
    if not values:
        return None
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------------------------
# BFCL

_BFCL_TO_JSON_SCHEMA_TYPES = {
    "dict": "object",
    "float": "number",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
}
# BFCL's string normalisation lowercases and removes these characters.
_BFCL_IGNORED_CHARACTERS = re.compile(r"[ ,./\-_*^]")


def bfcl_to_json_schema(function: dict) -> dict:
    """Convert a BFCL function entry to an OpenAI tool dict whose parameters are JSON Schema.

    Types map dict to object, float to number and tuple to array, keep integer, string, boolean and array, and
    drop the type of "any" so it accepts every value. Nested properties, items and additionalProperties are
    converted too. Other keys (description, enum, default, required) are copied. The input is not changed.
    """
    parameters = function.get("parameters") or {"type": "dict", "properties": {}}
    converted = {
        "name": function["name"],
        "description": function.get("description", ""),
        "parameters": _convert_bfcl_schema(parameters),
    }
    return {"type": "function", "function": converted}


def _convert_bfcl_schema(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return copy.deepcopy(schema)
    converted = {}
    for key, value in schema.items():
        if key == "type":
            if value != "any":
                converted["type"] = _BFCL_TO_JSON_SCHEMA_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            converted[key] = {name: _convert_bfcl_schema(item) for name, item in value.items()}
        elif key in ("items", "additionalProperties"):
            converted[key] = (
                [_convert_bfcl_schema(item) for item in value] if isinstance(value, list) else _convert_bfcl_schema(value)
            )
        else:
            converted[key] = copy.deepcopy(value)
    return converted


def bfcl_score(
    predicted: ParsedCalls,
    ground_truth: list[dict] | None,
    functions: list[dict],
    *,
    strict_types: bool = False,
) -> dict:
    """Score one BFCL row with the leaderboard's AST rule.

    ground_truth is [{"function_name": {"argument": [acceptable values...]}}, ...], or None for the irrelevance
    set, where the row is correct when no call was read. A malformed attempt without a call counts as no call there,
    as in BFCL. Otherwise the output must not be malformed, must contain one call per ground-truth entry (in any
    order), and each call must:
    - name the function exactly, dots included ("math.factorial");
    - give every argument that the function's parameters list as required;
    - give only arguments that the function declares and the ground truth lists;
    - give each argument one of its acceptable values;
    - give every argument whose acceptable values do not include "", the mark of an argument that may be left out.
    Strings compare after BFCL's normalisation: lowercased, with spaces and , . / - _ * ^ removed. Lists compare
    element by element in order, and dicts key by key against the nested acceptable values. Ints are accepted for
    float parameters. Other values, and strings that differ after BFCL's normalisation, compare after
    normalize_value, so "10" matches 10. BFCL itself reports a type error there, and so does strict_types=True,
    which also compares strings only by BFCL's normalisation.

    Returns {"correct", "made_call", "expected_call", "decision_correct", "malformed", "reason"}. reason is None when
    the row is correct and otherwise names the first failure found.
    """
    expected_call = ground_truth is not None
    made_call = bool(predicted.calls)
    record = {
        "correct": False,
        "made_call": made_call,
        "expected_call": expected_call,
        "decision_correct": made_call == expected_call,
        "malformed": predicted.malformed,
        "reason": None,
    }

    if ground_truth is None:
        reason = "made a call although no function fits" if made_call else None
    elif not made_call:
        reason = "malformed call" if predicted.malformed else "no call made"
    elif predicted.malformed:
        reason = "output also contains a malformed call"
    elif len(predicted.calls) != len(ground_truth):
        reason = f"expected {len(ground_truth)} call(s), got {len(predicted.calls)}"
    else:
        functions_by_name = {function["name"]: function for function in functions}
        reason = _match_bfcl_calls(predicted.calls, ground_truth, functions_by_name, strict_types)

    record["correct"] = reason is None
    record["reason"] = reason
    return record


def _match_bfcl_calls(
    calls: list[ToolCall], ground_truth: list[dict], functions_by_name: dict[str, dict], strict: bool
) -> str | None:
    unused = list(calls)
    for expected in ground_truth:
        expected_name = _ground_truth_name(expected)
        failures = []
        for call in unused:
            reason = _check_bfcl_call(call, expected, functions_by_name, strict)
            if reason is None:
                unused.remove(call)
                break
            failures.append((call.name == expected_name, reason))
        else:
            # The failure of a call with the expected name says the most, so report it when there is one.
            return max(failures, key=lambda failure: failure[0])[1]
    return None


def _ground_truth_name(expected: dict) -> str:
    if not isinstance(expected, dict) or len(expected) != 1:
        raise ValueError(f"invalid BFCL ground-truth entry {expected!r}: expected one {{function_name: arguments}}")
    return next(iter(expected))


def _check_bfcl_call(call: ToolCall, expected: dict, functions_by_name: dict[str, dict], strict: bool) -> str | None:
    expected_name = _ground_truth_name(expected)
    acceptable_arguments = expected[expected_name]
    if call.name != expected_name:
        return f"wrong function: expected {expected_name}, got {call.name}"
    function = functions_by_name.get(expected_name)
    if function is None:
        return f"function {expected_name} is not among the functions offered"

    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    for argument in parameters.get("required", []):
        if argument not in call.arguments:
            return f"missing required argument {argument!r}"

    for argument, value in call.arguments.items():
        reason = _check_bfcl_argument(argument, value, properties, acceptable_arguments, strict)
        if reason is not None:
            return reason

    for argument, acceptable in acceptable_arguments.items():
        if argument not in call.arguments and "" not in _as_list(acceptable):
            return f"missing argument {argument!r}"
    return None


def _check_bfcl_argument(
    argument: str, value: Any, properties: dict, acceptable_arguments: dict, strict: bool
) -> str | None:
    if argument not in properties:
        return f"unexpected argument {argument!r}"
    if argument not in acceptable_arguments:
        return f"unexpected argument {argument!r} (not in the ground truth)"
    schema = properties[argument]
    declared_type = schema.get("type")
    if strict and not _has_bfcl_type(value, declared_type):
        return f"wrong type for {argument!r}: expected {declared_type}, got {type(value).__name__}"
    if not _matches_any(value, acceptable_arguments[argument], schema, strict):
        return f"invalid value for {argument!r}: {value!r}"
    return None


def _matches_any(value: Any, acceptable_values: Any, schema: dict, strict: bool) -> bool:
    if not isinstance(acceptable_values, list):
        acceptable_values = [acceptable_values]
    return any(_matches(value, acceptable, schema, strict) for acceptable in acceptable_values)


def _matches(value: Any, acceptable: Any, schema: dict, strict: bool) -> bool:
    """Compare a value to one acceptable value. A dict acceptable value maps each key to its acceptable values."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(acceptable, dict):
        return isinstance(value, dict) and _dict_matches(value, acceptable, schema, strict)
    if isinstance(acceptable, list):
        if not isinstance(value, (list, tuple)) or len(value) != len(acceptable):
            return False
        item_schema = schema.get("items")
        item_schema = item_schema if isinstance(item_schema, dict) else {}
        return all(_matches(item, expected, item_schema, strict) for item, expected in zip(value, acceptable))
    if strict and not _has_bfcl_type(value, schema.get("type")):
        return False
    return _scalars_match(value, acceptable, strict)


def _dict_matches(value: dict, acceptable: dict, schema: dict, strict: bool) -> bool:
    properties = schema.get("properties") or {}
    for key, item in value.items():
        if key not in acceptable:
            return False
        if not _matches_any(item, acceptable[key], properties.get(key, {}), strict):
            return False
    return all("" in _as_list(acceptable[key]) for key in acceptable if key not in value)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _scalars_match(value: Any, acceptable: Any, strict: bool) -> bool:
    if isinstance(value, str) and isinstance(acceptable, str):
        if _bfcl_normalize_string(value) == _bfcl_normalize_string(acceptable):
            return True
        return not strict and normalize_value(value) == normalize_value(acceptable)
    if strict and (isinstance(value, str) or isinstance(acceptable, str)):
        return False
    return normalize_value(value) == normalize_value(acceptable)


def _bfcl_normalize_string(text: str) -> str:
    return _BFCL_IGNORED_CHARACTERS.sub("", text.lower()).replace("'", '"')


def _has_bfcl_type(value: Any, bfcl_type: Any) -> bool:
    # bool is a subclass of int, so it is excluded from the numeric types explicitly. BFCL compares exact types,
    # which has the same effect. Unlike BFCL, which expects a string for "any", any value passes for "any" here.
    if bfcl_type == "string":
        return isinstance(value, str)
    if bfcl_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if bfcl_type == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if bfcl_type == "boolean":
        return isinstance(value, bool)
    if bfcl_type in ("array", "tuple"):
        return isinstance(value, (list, tuple))
    if bfcl_type == "dict":
        return isinstance(value, dict)
    return True
