"""`ft plan` on a CPU: the resident-memory terms the calibration fits, and the time of the tool-call evaluation.

The fit is checked by feeding it the peaks that known terms predict and asking for the terms back. The evaluation
time is checked against a hand calculation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ft.plan.arch import table_lookup
from ft.plan.batches import MicroBatch, make_micro_batch
from ft.plan.calibration import DEFAULT_CPU_RESIDENT, stored_resident
from ft.plan.flops import evaluation_flops
from ft.plan.measure import allocator_terms
from ft.plan.memory import ResidentTerms, activation_bytes, memory_parts
from ft.plan.settings import RunSettings
from ft.plan.tool_eval import EVAL_BATCH_ROWS, tool_eval_seconds

REPO = Path(__file__).resolve().parents[1]
ALL_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
ARCH = table_lookup("HuggingFaceTB/SmolLM2-135M")
CPU_BF16 = RunSettings(method="lora", dtype="bfloat16", lora_r=16, lora_targets=ALL_LINEAR, lora_dropout=0.0,
                       optimizer="adamw_torch", gradient_checkpointing=False, attn_implementation="sdpa",
                       packing=True, on_gpu=False, rows_per_micro_batch=1, micro_batches_per_step=8)
SHORT_ROWS = [[(300, 60)], [(500, 50)], [(420, 90)]]
LONG_ROW = [(2000, 63)]
OVERHEAD = 0.7e9


def planned_peak(micro_batches, terms: ResidentTerms) -> float:
    batches = [make_micro_batch(rows, ARCH, CPU_BF16) for rows in micro_batches]
    return max(memory_parts(ARCH, CPU_BF16, batch, OVERHEAD, terms).peak for batch in batches)


def test_resident_terms_count_logits_once():
    batch = make_micro_batch([(2048, 1500)], ARCH, CPU_BF16)
    activations, logits = activation_bytes(ARCH, CPU_BF16, batch)
    plain = memory_parts(ARCH, CPU_BF16, batch, OVERHEAD)
    resident = memory_parts(ARCH, CPU_BF16, batch, OVERHEAD, ResidentTerms(0.3e9, 2.0))
    assert resident.peak - plain.peak == pytest.approx(0.3e9 + activations)
    assert resident.logits == plain.logits == logits


@pytest.mark.parametrize("retained, factor", [(0.35e9, 1.95), (0.0, 1.5), (0.8e9, 1.0)])
def test_fit_recovers_known_terms(retained, factor):
    truth = ResidentTerms(retained, factor)
    steps = {"all_micro_batches": SHORT_ROWS, "peak_bytes": planned_peak(SHORT_ROWS, truth),
             "long_row": {"rows": LONG_ROW, "peak_bytes": planned_peak([LONG_ROW], truth)}}
    fitted = allocator_terms(ARCH, CPU_BF16, steps, OVERHEAD)
    assert fitted["retained_bytes"] == pytest.approx(retained, abs=1e3)
    assert fitted["activation_factor"] == pytest.approx(factor, rel=1e-6)


def test_fit_single_point():
    truth = ResidentTerms(0.0, 2.5)
    steps = {"all_micro_batches": SHORT_ROWS, "peak_bytes": planned_peak(SHORT_ROWS, truth), "long_row": None}
    fitted = allocator_terms(ARCH, CPU_BF16, steps, OVERHEAD)
    assert fitted == {"retained_bytes": 0.0, "activation_factor": pytest.approx(2.5)}


def test_fit_factor_bounds():
    # A long row that took less memory than the short ones cannot make the factor drop below 1.
    steps = {"all_micro_batches": SHORT_ROWS, "peak_bytes": 3e9, "long_row": {"rows": LONG_ROW, "peak_bytes": 2e9}}
    fitted = allocator_terms(ARCH, CPU_BF16, steps, OVERHEAD)
    assert fitted["activation_factor"] == 1.0
    assert fitted["retained_bytes"] > 0


def test_stored_resident_entry_versions():
    assert stored_resident({"retained_memory_gb": 0.35, "activation_factor": 1.9}) == ResidentTerms(0.35e9, 1.9)
    assert stored_resident({"allocator_factor": 2.6}) == ResidentTerms(0.0, 2.6)  # an entry from before the two-point fit
    assert stored_resident({}) == DEFAULT_CPU_RESIDENT


def test_tool_eval_hand_calculation():
    # Ten rows of (prompt tokens, turn tokens) make two batches, the 8 longest prompts first.
    turns = [(370 + 9 * i, 30 + i) for i in range(10)]
    step_s, rate = 0.002, 1e12
    seconds = tool_eval_seconds(ARCH, CPU_BF16, turns, max_new_tokens=128, flops_per_s=rate,
                                decode_step_s_per_layer=step_s)
    expected = 0.0
    for batch in (turns[2:], turns[:2]):
        longest = max(prompt for prompt, _ in batch)
        pairs = longest * (longest + 1) // 2
        prefill = MicroBatch(rows=len(batch), tokens=len(batch) * longest, trained=len(batch),
                             causal_pairs=len(batch) * pairs, window_pairs=len(batch) * pairs,
                             mask_elements=len(batch) * longest ** 2, masked_layers=ARCH.num_layers)
        new_tokens = max(turn for _, turn in batch) + 1
        expected += evaluation_flops(ARCH, CPU_BF16, prefill) / rate + new_tokens * step_s * ARCH.num_layers
    assert len(turns[2:]) == EVAL_BATCH_ROWS
    assert seconds == pytest.approx(expected)
    # The cap bounds the turn: with at most 8 new tokens, decoding is 2 batches x 8 steps.
    capped = tool_eval_seconds(ARCH, CPU_BF16, turns, 8, rate, step_s)
    prefill_only = tool_eval_seconds(ARCH, CPU_BF16, turns, 0, rate, step_s)
    assert capped - prefill_only == pytest.approx(2 * 8 * step_s * ARCH.num_layers)


def test_first_turn_of_masked_labels():
    from ft.data.prepare import IGNORE
    from ft.plan.tokens import first_turn

    assert first_turn([IGNORE] * 5 + [1, 2, 3] + [IGNORE] * 4 + [4, 5]) == (5, 3)
    assert first_turn([IGNORE, 7, 8]) == (1, 2)
    assert first_turn([IGNORE] * 3) == (3, 0)


def test_plan_counts_tool_eval(private_plan_cache):
    from ft.config import load_config
    from ft.plan import plan_run

    def eval_seconds(rows: int) -> dict[str, float]:
        report = plan_run(load_config(REPO / "configs" / "quickstart.yaml", [f"training.tool_eval_rows={rows}"]))
        return {e.flavor: e.eval_time_s for e in report.estimates}

    with_generation, without = eval_seconds(20), eval_seconds(0)
    for flavor in ("local", "l4x1", "cpu-basic"):
        assert with_generation[flavor] > without[flavor] > 0, flavor
