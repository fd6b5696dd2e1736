from __future__ import annotations

import json
from pathlib import Path

import pytest

from ft.scoring import (
    BooleanValue,
    aggregate,
    bfcl_score,
    bfcl_to_json_schema,
    normalize_value,
    score_turn,
)
from ft.toolcalls import ParsedCalls, ToolCall, format_tool_calls, parse_tool_calls

BFCL = Path("../shared/data/bfcl-v4")

TRIANGLE = {
    "name": "calculate_triangle_area",
    "description": "Calculate the area of a triangle given its base and height.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "The base of the triangle."},
            "height": {"type": "integer", "description": "The height of the triangle."},
            "unit": {"type": "string", "description": "The unit of measure."},
        },
        "required": ["base", "height"],
    },
}
TRIANGLE_TRUTH = [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]

FACTORIAL = {
    "name": "math.factorial",
    "description": "Calculate the factorial of a given number.",
    "parameters": {
        "type": "dict",
        "properties": {"number": {"type": "integer", "description": "The number."}},
        "required": ["number"],
    },
}
FACTORIAL_TRUTH = [{"math.factorial": {"number": [5]}}]

BMI = {
    "name": "bmi",
    "description": "Calculate body mass index.",
    "parameters": {
        "type": "dict",
        "properties": {
            "weight": {"type": "float", "description": "Weight in kilograms."},
            "height": {"type": "float", "description": "Height in meters."},
        },
        "required": ["weight", "height"],
    },
}
BMI_TRUTH = [{"bmi": {"weight": [70.0], "height": [1.75]}}]


def _parsed(*calls: ToolCall) -> ParsedCalls:
    return ParsedCalls(list(calls), False, "hermes")


def _triangle(**arguments) -> ParsedCalls:
    return _parsed(ToolCall("calculate_triangle_area", arguments))


# ---------------------------------------------------------------------------------------------------------------
# normalize_value


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("10", 10),
        ("10.0", 10),
        (10.0, 10),
        (" 2.5 ", 2.5),
        ("-3", -3),
        ("1e3", 1000),
        ("true", True),
        ("False", False),
        (" Paris ", "Paris"),
        ({"a": 1, "b": [1, "2"]}, {"b": [1, 2], "a": "1"}),
        ([1, {"x": "y"}], (1, {"x": "y"})),
        (None, None),
    ],
)
def test_normalize_value_equal(left, right):
    assert normalize_value(left) == normalize_value(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (True, 1),
        (False, 0),
        ("true", 1),
        ("paris", "Paris"),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 1, "b": 2}),
        ([1], 1),
        ("1.5", 1),
        (None, "None"),
    ],
)
def test_normalize_value_different(left, right):
    assert normalize_value(left) != normalize_value(right)


def test_normalize_value_forms():
    assert normalize_value("10") == 10
    assert normalize_value(True) == BooleanValue(True)
    assert normalize_value(["a ", 2.0]) == ("a", 2)
    assert normalize_value({"k": "v"}) == frozenset({("k", "v")})


# ---------------------------------------------------------------------------------------------------------------
# score_turn


def test_score_turn_no_call_expected_none_made():
    record = score_turn([], ParsedCalls())

    assert record == {
        "expected_call": False,
        "made_call": False,
        "decision_correct": True,
        "name_correct": None,
        "args_exact": None,
        "args_correct": 0,
        "args_total": 0,
        "malformed": False,
    }


def test_score_turn_call_made_when_none_expected():
    record = score_turn([], _parsed(ToolCall("f", {})))

    assert record["decision_correct"] is False
    assert record["made_call"] is True
    assert record["name_correct"] is None


def test_score_turn_exact_after_normalisation():
    reference = [ToolCall("f", {"count": 10, "city": "Paris", "deep": {"a": 1, "b": True}})]
    predicted = _parsed(ToolCall("f", {"deep": {"b": "true", "a": 1.0}, "city": "Paris ", "count": "10"}))

    record = score_turn(reference, predicted)

    assert record["decision_correct"] is True
    assert record["name_correct"] is True
    assert record["args_exact"] is True
    assert record["args_correct"] == 3
    assert record["args_total"] == 3


def test_score_turn_partial_arguments():
    reference = [ToolCall("f", {"a": 1, "b": "x"})]
    predicted = _parsed(ToolCall("f", {"a": 1, "b": "X", "extra": 0}))

    record = score_turn(reference, predicted)

    assert record["name_correct"] is True
    assert record["args_exact"] is False
    assert record["args_correct"] == 1
    assert record["args_total"] == 2


def test_score_turn_extra_argument_fails_exact_only():
    record = score_turn([ToolCall("f", {"a": 1})], _parsed(ToolCall("f", {"a": 1, "b": 2})))

    assert record["args_exact"] is False
    assert record["args_correct"] == 1
    assert record["args_total"] == 1


def test_score_turn_wrong_name():
    record = score_turn([ToolCall("f", {"a": 1})], _parsed(ToolCall("g", {"a": 1})))

    assert record["name_correct"] is False
    assert record["args_exact"] is False
    assert record["args_correct"] == 0
    assert record["args_total"] == 1


def test_score_turn_several_calls_any_order():
    reference = [ToolCall("f", {"a": 1}), ToolCall("g", {"b": 2})]
    predicted = _parsed(ToolCall("g", {"b": 2}), ToolCall("f", {"a": 1}))

    record = score_turn(reference, predicted)

    assert record["name_correct"] is True
    assert record["args_exact"] is True
    assert record["args_correct"] == 2


def test_score_turn_same_name_calls_pair_best_first():
    reference = [ToolCall("f", {"a": 1}), ToolCall("f", {"a": 2})]
    predicted = _parsed(ToolCall("f", {"a": 2}), ToolCall("f", {"a": 3}))

    record = score_turn(reference, predicted)

    assert record["name_correct"] is True
    assert record["args_exact"] is False
    assert record["args_correct"] == 1
    assert record["args_total"] == 2


def test_score_turn_names_as_multiset():
    reference = [ToolCall("f", {}), ToolCall("f", {})]

    record = score_turn(reference, _parsed(ToolCall("f", {})))

    assert record["name_correct"] is False
    assert record["args_exact"] is False


def test_score_turn_malformed_without_call():
    record = score_turn([ToolCall("f", {"a": 1})], ParsedCalls([], True, "hermes"))

    assert record["made_call"] is False
    assert record["decision_correct"] is False
    assert record["name_correct"] is False
    assert record["malformed"] is True
    assert record["args_correct"] == 0
    assert record["args_total"] == 1


# ---------------------------------------------------------------------------------------------------------------
# aggregate


def test_aggregate_exact_rates():
    records = [
        score_turn([], ParsedCalls()),
        score_turn([], _parsed(ToolCall("f", {}))),
        score_turn([ToolCall("f", {"a": 1, "b": 2})], _parsed(ToolCall("f", {"a": 1, "b": 2}))),
        score_turn([ToolCall("f", {"a": 1, "b": 2})], _parsed(ToolCall("f", {"a": 1, "b": 3}))),
        score_turn([ToolCall("f", {"a": 1, "b": 2})], ParsedCalls([], True, "hermes")),
    ]

    summary = aggregate(records)

    assert summary == {
        "rows": 5,
        "call_decision_accuracy": 3 / 5,
        "tool_name_accuracy": 2 / 3,
        "argument_exact_match": 1 / 3,
        "argument_accuracy": 3 / 6,
        "malformed_rate": 1 / 5,
    }


def test_aggregate_ended_rate():
    records = [dict(score_turn([], ParsedCalls()), ended=ended) for ended in (True, True, False, True)]

    summary = aggregate(records)

    assert summary["ended_within_cap_rate"] == 0.75
    assert summary["tool_name_accuracy"] is None
    assert summary["argument_accuracy"] is None


def test_aggregate_empty():
    assert aggregate([]) == {
        "rows": 0,
        "call_decision_accuracy": None,
        "tool_name_accuracy": None,
        "argument_exact_match": None,
        "argument_accuracy": None,
        "malformed_rate": None,
    }


def test_aggregate_bfcl_records():
    records = [
        bfcl_score(_triangle(base=10, height=5), TRIANGLE_TRUTH, [TRIANGLE]),
        bfcl_score(_triangle(base=11, height=5), TRIANGLE_TRUTH, [TRIANGLE]),
        bfcl_score(ParsedCalls(), None, [TRIANGLE]),
        bfcl_score(ParsedCalls(), TRIANGLE_TRUTH, [TRIANGLE]),
    ]

    summary = aggregate(records)

    assert summary["bfcl_accuracy"] == 0.5
    assert summary["call_decision_accuracy"] == 0.75
    assert summary["malformed_rate"] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# bfcl_to_json_schema


def test_bfcl_schema_maps_types_recursively():
    function = {
        "name": "plan",
        "description": "Plan a trip.",
        "parameters": {
            "type": "dict",
            "properties": {
                "budget": {"type": "dict", "properties": {"max": {"type": "float"}}, "required": ["max"]},
                "stops": {"type": "array", "items": {"type": "dict", "properties": {"days": {"type": "integer"}}}},
                "coordinates": {"type": "tuple", "items": {"type": "float"}},
                "payload": {"type": "any", "description": "Anything."},
                "mode": {"type": "string", "enum": ["car", "train"]},
                "direct": {"type": "boolean", "default": False},
            },
            "required": ["budget"],
        },
    }

    converted = bfcl_to_json_schema(function)

    assert converted == {
        "type": "function",
        "function": {
            "name": "plan",
            "description": "Plan a trip.",
            "parameters": {
                "type": "object",
                "properties": {
                    "budget": {"type": "object", "properties": {"max": {"type": "number"}}, "required": ["max"]},
                    "stops": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"days": {"type": "integer"}}},
                    },
                    "coordinates": {"type": "array", "items": {"type": "number"}},
                    "payload": {"description": "Anything."},
                    "mode": {"type": "string", "enum": ["car", "train"]},
                    "direct": {"type": "boolean", "default": False},
                },
                "required": ["budget"],
            },
        },
    }
    assert function["parameters"]["type"] == "dict"


# ---------------------------------------------------------------------------------------------------------------
# bfcl_score


def test_bfcl_optional_argument_left_out():
    record = bfcl_score(_triangle(base=10, height=5), TRIANGLE_TRUTH, [TRIANGLE])

    assert record == {
        "correct": True,
        "made_call": True,
        "expected_call": True,
        "decision_correct": True,
        "malformed": False,
        "reason": None,
    }


def test_bfcl_optional_argument_given():
    assert bfcl_score(_triangle(base=10, height=5, unit="Units"), TRIANGLE_TRUTH, [TRIANGLE])["correct"] is True

    record = bfcl_score(_triangle(base=10, height=5, unit="cm"), TRIANGLE_TRUTH, [TRIANGLE])
    assert record["correct"] is False
    assert record["reason"] == "invalid value for 'unit': 'cm'"


def test_bfcl_argument_without_empty_mark_is_needed():
    truth = [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units"]}}]

    record = bfcl_score(_triangle(base=10, height=5), truth, [TRIANGLE])

    assert record["correct"] is False
    assert record["reason"] == "missing argument 'unit'"


def test_bfcl_required_argument_missing():
    record = bfcl_score(_triangle(base=10), TRIANGLE_TRUTH, [TRIANGLE])

    assert record["correct"] is False
    assert record["reason"] == "missing required argument 'height'"


def test_bfcl_string_number_matches_integer():
    assert bfcl_score(_triangle(base="10", height=5.0), TRIANGLE_TRUTH, [TRIANGLE])["correct"] is True

    strict = bfcl_score(_triangle(base="10", height=5), TRIANGLE_TRUTH, [TRIANGLE], strict_types=True)
    assert strict["correct"] is False
    assert strict["reason"] == "wrong type for 'base': expected integer, got str"


def test_bfcl_integer_accepted_for_float():
    predicted = _parsed(ToolCall("bmi", {"weight": 70, "height": 1.75}))

    assert bfcl_score(predicted, BMI_TRUTH, [BMI])["correct"] is True
    assert bfcl_score(predicted, BMI_TRUTH, [BMI], strict_types=True)["correct"] is True


def test_bfcl_wrong_number():
    record = bfcl_score(_parsed(ToolCall("bmi", {"weight": 70, "height": 1.8})), BMI_TRUTH, [BMI])

    assert record["correct"] is False
    assert record["reason"] == "invalid value for 'height': 1.8"


def test_bfcl_bool_is_not_an_integer():
    record = bfcl_score(_triangle(base=True, height=5), TRIANGLE_TRUTH, [TRIANGLE])

    assert record["correct"] is False
    assert record["reason"] == "invalid value for 'base': True"


def test_bfcl_dotted_function_name():
    predicted = parse_tool_calls("[math.factorial(number=5)]")

    assert bfcl_score(predicted, FACTORIAL_TRUTH, [FACTORIAL])["correct"] is True

    renamed = parse_tool_calls("[math_factorial(number=5)]")
    record = bfcl_score(renamed, FACTORIAL_TRUTH, [FACTORIAL])
    assert record["correct"] is False
    assert record["reason"] == "wrong function: expected math.factorial, got math_factorial"


def test_bfcl_multiple_functions_offered():
    functions = [BMI, FACTORIAL, TRIANGLE]

    right = bfcl_score(_triangle(base=10, height=5), TRIANGLE_TRUTH, functions)
    wrong = bfcl_score(_parsed(ToolCall("math.factorial", {"number": 10})), TRIANGLE_TRUTH, functions)

    assert right["correct"] is True
    assert wrong["correct"] is False
    assert wrong["reason"] == "wrong function: expected calculate_triangle_area, got math.factorial"


def test_bfcl_unknown_argument():
    record = bfcl_score(_triangle(base=10, height=5, color="red"), TRIANGLE_TRUTH, [TRIANGLE])

    assert record["correct"] is False
    assert record["reason"] == "unexpected argument 'color'"


def test_bfcl_argument_not_in_ground_truth():
    truth = [{"calculate_triangle_area": {"base": [10], "height": [5]}}]

    record = bfcl_score(_triangle(base=10, height=5, unit="cm"), truth, [TRIANGLE])

    assert record["correct"] is False
    assert record["reason"] == "unexpected argument 'unit' (not in the ground truth)"


def test_bfcl_irrelevance():
    no_call = bfcl_score(ParsedCalls([], False, None), None, [BMI])
    malformed = bfcl_score(ParsedCalls([], True, "hermes"), None, [BMI])
    called = bfcl_score(_parsed(ToolCall("bmi", {"weight": 1, "height": 1})), None, [BMI])

    assert no_call["correct"] is True
    assert no_call["expected_call"] is False
    assert malformed["correct"] is True
    assert called["correct"] is False
    assert called["decision_correct"] is False
    assert called["reason"] == "made a call although no function fits"


def test_bfcl_no_call_and_malformed():
    assert bfcl_score(ParsedCalls(), TRIANGLE_TRUTH, [TRIANGLE])["reason"] == "no call made"
    assert bfcl_score(ParsedCalls([], True, "hermes"), TRIANGLE_TRUTH, [TRIANGLE])["reason"] == "malformed call"

    half = ParsedCalls([ToolCall("calculate_triangle_area", {"base": 10, "height": 5})], True, "hermes")
    assert bfcl_score(half, TRIANGLE_TRUTH, [TRIANGLE])["reason"] == "output also contains a malformed call"


def test_bfcl_wrong_call_count():
    predicted = _parsed(
        ToolCall("calculate_triangle_area", {"base": 10, "height": 5}),
        ToolCall("calculate_triangle_area", {"base": 10, "height": 5}),
    )

    assert bfcl_score(predicted, TRIANGLE_TRUTH, [TRIANGLE])["reason"] == "expected 1 call(s), got 2"


def test_bfcl_parallel_calls_any_order():
    truth = TRIANGLE_TRUTH + FACTORIAL_TRUTH
    predicted = _parsed(ToolCall("math.factorial", {"number": 5}), ToolCall("calculate_triangle_area", {"base": 10, "height": 5}))

    assert bfcl_score(predicted, truth, [TRIANGLE, FACTORIAL])["correct"] is True


def test_bfcl_string_normalisation():
    date_function = {
        "name": "winner",
        "parameters": {"type": "dict", "properties": {"date": {"type": "string"}}, "required": ["date"]},
    }
    truth = [{"winner": {"date": ["April 1, 2024"]}}]

    for value in ["april 1 2024", "April-1,2024", " APRIL 1, 2024."]:
        assert bfcl_score(_parsed(ToolCall("winner", {"date": value})), truth, [date_function])["correct"] is True
    assert bfcl_score(_parsed(ToolCall("winner", {"date": "April 2, 2024"})), truth, [date_function])["correct"] is False


def test_bfcl_nested_dicts_and_lists():
    query = {
        "name": "database.query",
        "parameters": {
            "type": "dict",
            "properties": {
                "table": {"type": "string"},
                "conditions": {
                    "type": "array",
                    "items": {
                        "type": "dict",
                        "properties": {"field": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
            },
            "required": ["table", "conditions"],
        },
    }
    truth = [
        {
            "database.query": {
                "table": ["user"],
                "conditions": [[{"field": ["age"], "value": ["25"]}, {"field": ["job"], "value": ["engineer", ""]}]],
            }
        }
    ]

    good = _parsed(ToolCall("database.query", {"table": "user", "conditions": [{"field": "age", "value": 25}, {"field": "job"}]}))
    swapped = _parsed(
        ToolCall("database.query", {"table": "user", "conditions": [{"field": "job"}, {"field": "age", "value": "25"}]})
    )
    extra_key = _parsed(
        ToolCall("database.query", {"table": "user", "conditions": [{"field": "age", "value": "25", "op": ">"}, {"field": "job"}]})
    )

    assert bfcl_score(good, truth, [query])["correct"] is True
    assert bfcl_score(swapped, truth, [query])["correct"] is False
    assert bfcl_score(extra_key, truth, [query])["correct"] is False


# ---------------------------------------------------------------------------------------------------------------
# Real BFCL data: the ideal prediction written in a style and parsed back must score correct


def _ideal_value(acceptable_values: list):
    value = next(value for value in acceptable_values if value != "")
    return _ideal_nested(value)


def _ideal_nested(value):
    # A dict in the ground truth maps each key to its own acceptable values.
    if isinstance(value, dict):
        return {key: _ideal_value(values) for key, values in value.items() if any(item != "" for item in values)}
    if isinstance(value, list):
        return [_ideal_nested(item) for item in value]
    return value


def _ideal_calls(ground_truth: list[dict]) -> list[ToolCall]:
    calls = []
    for entry in ground_truth:
        ((name, arguments),) = entry.items()
        ideal = {key: _ideal_value(values) for key, values in arguments.items() if any(item != "" for item in values)}
        calls.append(ToolCall(name, ideal))
    return calls


def _load_bfcl(file_name: str, limit: int | None = None) -> list[tuple[dict, dict]]:
    questions_path = BFCL / file_name
    answers_path = BFCL / "possible_answer" / file_name
    if not questions_path.exists() or not answers_path.exists():
        pytest.skip(f"{questions_path} not found: the shared data folder is not next to the repository")

    questions = {}
    for line in questions_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        questions[row["id"]] = row
    answers = [json.loads(line) for line in answers_path.read_text(encoding="utf-8").splitlines()[:limit]]
    return [(questions[answer["id"]], answer) for answer in answers]


def test_bfcl_simple_first_rows_ideal_prediction():
    rows = _load_bfcl("BFCL_v4_simple_python.json", limit=20)
    assert len(rows) == 20

    for question, answer in rows:
        text = format_tool_calls(_ideal_calls(answer["ground_truth"]), "pythonic")
        parsed = parse_tool_calls(text)
        record = bfcl_score(parsed, answer["ground_truth"], question["function"], strict_types=True)

        assert parsed.malformed is False, text
        assert record["correct"] is True, (answer["id"], text, record["reason"])


@pytest.mark.parametrize("file_name", ["BFCL_v4_simple_python.json", "BFCL_v4_multiple.json"])
def test_bfcl_all_rows_ideal_prediction(file_name):
    rows = _load_bfcl(file_name)
    assert len(rows) >= 200

    for question, answer in rows:
        text = format_tool_calls(_ideal_calls(answer["ground_truth"]), "hermes")
        record = bfcl_score(parse_tool_calls(text), answer["ground_truth"], question["function"])

        assert record["correct"] is True, (answer["id"], text, record["reason"])


def test_bfcl_first_rows_extra_argument_fails():
    for question, answer in _load_bfcl("BFCL_v4_simple_python.json", limit=20):
        calls = _ideal_calls(answer["ground_truth"])
        broken = [ToolCall(call.name, {**call.arguments, "unexpected_argument": 1}) for call in calls]

        record = bfcl_score(_parsed(*broken), answer["ground_truth"], question["function"])

        assert record["correct"] is False
        assert record["reason"] == "unexpected argument 'unexpected_argument'"


def _schema_types(schema) -> set[str]:
    """Collect every "type" value in a schema, descending into properties and items."""
    if not isinstance(schema, dict):
        return set()
    types = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for child in (schema.get("properties") or {}).values():
        types |= _schema_types(child)
    return types | _schema_types(schema.get("items"))


def test_bfcl_rows_convert_to_json_schema_types():
    json_schema_types = {"object", "number", "integer", "string", "boolean", "array"}
    path = BFCL / "BFCL_v4_irrelevance.json"
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder is not next to the repository")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    for row in rows:
        for function in row["function"]:
            schema = bfcl_to_json_schema(function)["function"]["parameters"]

            assert schema["type"] == "object"
            assert _schema_types(schema) <= json_schema_types, function["name"]
        assert bfcl_score(ParsedCalls(), None, row["function"])["correct"] is True
