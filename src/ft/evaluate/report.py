"""Combine the runs of one evaluation into eval.json, report.md, eval.png and a console table.

With a baseline, every report shows the baseline first, then the evaluated model, then the difference
(evaluated minus baseline, in rate points).
"""

from __future__ import annotations

import os
from pathlib import Path

from ft.outputs import write_json_atomic, write_text_atomic

# Rates in [0, 1], in report order, with the label shown for each. Higher is better except malformed_rate.
METRIC_LABELS = {
    "call_decision_accuracy": "call decision accuracy",
    "tool_name_accuracy": "tool name accuracy",
    "argument_exact_match": "argument exact match",
    "argument_accuracy": "argument accuracy",
    "bfcl_accuracy": "BFCL accuracy (AST)",
    "malformed_rate": "malformed output rate",
    "ended_within_cap_rate": "ended within token cap",
}
# Per-row fields that belong to one model's output; the rest of a record describes the row.
ROW_FIELDS = ("where", "id", "turn", "prompt_tokens")


def build_result(runs: list[tuple[str, str, dict]], items, data: dict, settings: dict) -> dict:
    """Merge per-model results into the eval.json structure.

    runs lists (label, model name, evaluate_items result), the baseline first. data describes the data read and
    settings the generation settings. Each record holds the row fields and reference once, and each model's output
    under "outputs"[label].
    """
    models = [{"label": label, "name": name, "metrics": result["metrics"], "timing": result["timing"]}
              for label, name, result in runs]
    records = []
    for index, item in enumerate(items):
        first = runs[0][2]["records"][index]
        record = {key: first[key] for key in ROW_FIELDS}
        record["reference"] = item.reference_json()
        record["outputs"] = {label: model_output(result["records"][index]) for label, _, result in runs}
        records.append(record)
    output = {"data": data, "settings": settings, "models": models}
    if len(models) == 2:
        output["difference"] = metric_difference(models[0]["metrics"], models[1]["metrics"])
    output["records"] = records
    return output


def model_output(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ROW_FIELDS}


def metric_difference(baseline: dict, evaluated: dict) -> dict:
    """Return evaluated minus baseline for each rate both have (None where either is None)."""
    difference = {}
    for key in METRIC_LABELS:
        if key not in baseline and key not in evaluated:
            continue
        before, after = baseline.get(key), evaluated.get(key)
        difference[key] = None if before is None or after is None else after - before
    return difference


def summary_of(result: dict) -> dict:
    """Return the result without the per-row records, for `--json` and logs."""
    return {key: value for key, value in result.items() if key != "records"}


# ---------------------------------------------------------------------------------------------------------------
# Tables


def metric_rows(result: dict) -> list[tuple[str, list[float | None], float | None]]:
    """Return (label, value per model, difference or None) for every rate that some model has a value for.

    A rate with no value anywhere (argument exact match on BFCL rows, say) is left out of the tables and the chart,
    but stays in eval.json as null.
    """
    rows = []
    difference = result.get("difference", {})
    for key, label in METRIC_LABELS.items():
        values = [model["metrics"].get(key) for model in result["models"]]
        if all(value is None for value in values):
            continue
        rows.append((label, values, difference.get(key)))
    return rows


def format_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_change(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def column_names(result: dict) -> list[str]:
    names = [model["label"] for model in result["models"]]
    return names + ["change"] if "difference" in result else names


def console_table(result: dict) -> str:
    """Return the metrics as an aligned plain-text table, with a header line naming the models and data."""
    header = ["metric"] + column_names(result)
    body = []
    for label, values, change in metric_rows(result):
        cells = [label] + [format_rate(value) for value in values]
        if "difference" in result:
            cells.append(format_change(change))
        body.append(cells)
    body.append(["rows scored"] + [str(model["metrics"]["rows"]) for model in result["models"]]
                + ([""] if "difference" in result else []))
    body.append(["wall time (s)"] + [f"{model['timing']['wall_time_s']:.1f}" for model in result["models"]]
                + ([""] if "difference" in result else []))

    widths = [max(len(row[column]) for row in [header] + body) for column in range(len(header))]
    lines = [describe_models(result)]
    for row in [header] + body:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def describe_models(result: dict) -> str:
    models = ", ".join(f"{model['label']} = {model['name']}" for model in result["models"])
    settings = result["settings"]
    return (f"{result['data']['path']} ({result['data']['kind']}, {settings['turns']} assistant turn(s)); {models}; "
            f"greedy, max {settings['max_new_tokens']} new tokens")


def markdown_report(result: dict) -> str:
    """Return report.md: what was evaluated, and the metrics table with the difference."""
    header = ["metric"] + column_names(result)
    lines = [
        "# Tool-calling evaluation",
        "",
        f"- data: `{result['data']['path']}` ({result['data']['kind']}, {result['data']['items']} turns scored "
        f"from {result['data']['rows_read']} rows, {result['settings']['turns']} assistant turn(s) per row)",
    ]
    for model in result["models"]:
        timing = model["timing"]
        lines.append(f"- {model['label']}: `{model['name']}` ({timing['wall_time_s']:.1f} s, "
                     f"{timing['new_tokens']} new tokens, {timing['new_tokens_per_s']:.1f} tokens/s)")
    lines.append(f"- generation: greedy, at most {result['settings']['max_new_tokens']} new tokens, batches of "
                 f"{result['settings']['batch_size']} rows")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values, change in metric_rows(result):
        cells = [label] + [format_rate(value) for value in values]
        if "difference" in result:
            cells.append(format_change(change))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Rates are in [0, 1]. A lower malformed output rate is better; every other rate is better higher.",
              "Per-row generations and scores are in `eval.json`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Files


def plot_result(result: dict, png_path: Path) -> None:
    """Draw one group of bars per metric, one bar per model, into a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = metric_rows(result)
    labels = [label for label, _, _ in rows]
    width = 0.8 / len(result["models"])
    figure, axes = plt.subplots(figsize=(max(7, 1.3 * len(rows)), 4.5), dpi=100)
    for position, model in enumerate(result["models"]):
        values = [values[position] or 0.0 for _, values, _ in rows]
        offsets = [index + (position - (len(result["models"]) - 1) / 2) * width for index in range(len(rows))]
        bars = axes.bar(offsets, values, width, label=f"{model['label']} ({model['name']})")
        axes.bar_label(bars, labels=[format_rate(values[position]) for _, values, _ in rows], fontsize=7)
    axes.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("rate (malformed: lower is better)")
    axes.set_title(f"tool calling on {Path(result['data']['path']).name}")
    axes.legend(fontsize=7)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()

    temp = png_path.with_name(f".{png_path.name}.tmp.png")
    figure.savefig(temp)
    plt.close(figure)
    os.replace(temp, png_path)


def write_reports(result: dict, out_dir: Path) -> None:
    """Write eval.json, report.md and eval.png into out_dir, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "eval.json", result)
    write_text_atomic(out_dir / "report.md", markdown_report(result))
    plot_result(result, out_dir / "eval.png")
