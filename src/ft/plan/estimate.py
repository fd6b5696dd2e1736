"""Estimate memory, time and cost of a config on every hardware flavor and on this machine, before anything runs."""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ft.config import Config, LoadedConfig
from ft.plan.arch import Architecture
from ft.plan.batches import MicroBatch, count_steps, in_order, simulate_order
from ft.plan.calibration import CpuSpeed, cpu_speed, gpu_efficiency, past_runs
from ft.plan.flops import evaluation_flops, training_flops
from ft.plan.hardware import ACCELERATORS, Flavor, PriceList, current_price_list, flavor_named
from ft.plan.memory import (
    CUDA_OVERHEAD_BYTES, HOST_BYTES_PER_DATA_TOKEN, NO_EXTRA, MemoryParts, ResidentTerms, activation_bytes,
    memory_parts, trained_parameters,
)
from ft.plan.model_files import ModelInfo, find_model
from ft.plan.settings import RunSettings, run_settings
from ft.plan.tokens import TokenCounts, count_data_tokens
from ft.plan.tool_eval import tool_eval_seconds

LOCAL = "local"
LOCAL_LABEL = "this machine (cpu)"
HEADROOM = 0.10  # share of device memory left free for allocator fragmentation and estimate error
GPU_SCALING_EFFICIENCY = 0.9  # data-parallel speed-up per added GPU, gradient all-reduce included
# Kernel launches and Python work per decoder layer per micro-batch on a GPU (forward, backward, LoRA layers).
# NOTE: a rough figure, not measured by ft; it only matters for small models, where it dominates.
GPU_LAYER_OVERHEAD_S = 0.0008
FORWARD_SHARE = 1 / 3  # an evaluation micro-batch launches about a third of a training micro-batch's kernels


@dataclass
class Device:
    """A place to run: one flavor or this machine, with its speed and memory."""

    name: str
    label: str
    flavor: Flavor | None
    on_gpu: bool
    supports_bf16: bool
    devices: int  # processes, one per GPU
    memory_bytes: float  # per process
    price_per_hour_usd: float
    flops_per_s: dict[str, float]  # sustained rate per training dtype, per process
    overhead_bytes: float
    speed_source: str
    resident: ResidentTerms = NO_EXTRA  # see memory_parts
    warmup_s: float = 0.0  # once per run, see CpuSpeed
    decode_step_s_per_layer: float = GPU_LAYER_OVERHEAD_S * FORWARD_SHARE  # see ft.plan.tool_eval
    forward_speedup: float = 1.0  # evaluation's FLOP/s over training's (calibrated on this machine)


@dataclass
class FlavorEstimate:
    """Memory, time and cost of the config on one flavor (or this machine). Times exclude the job's start-up."""

    flavor: str
    label: str
    accelerator: str | None
    gpus: int
    processes: int
    memory_gb_per_gpu: float
    device_memory_gb: float
    supports_bf16: bool
    dtype: str
    fits: bool
    peak_memory_gb: float
    memory_gb: dict[str, float]
    time_s: float  # training plus evaluation
    train_time_s: float
    eval_time_s: float
    cost_usd: float
    price_per_hour_usd: float
    steps: int
    micro_batches_per_device: int
    training_flops: float
    blocked: str | None = None  # why ft train cannot run the config there, if it cannot
    speed_source: str = ""

    @property
    def usable(self) -> bool:
        return self.fits and self.blocked is None


@dataclass
class Workload:
    """The config's demand, independent of the hardware: the model's shapes and the data's token counts."""

    loaded: LoadedConfig
    model: ModelInfo
    counts: dict[str, TokenCounts]
    cpu: CpuSpeed
    orders: dict[tuple, list[list[MicroBatch]]] = field(default_factory=dict)
    results: dict[tuple, object] = field(default_factory=dict)

    @property
    def cfg(self) -> Config:
        return self.loaded.config

    @property
    def arch(self) -> Architecture:
        return self.model.architecture

    def rows(self, side: str) -> list[tuple[int, int]]:
        counts = self.counts.get(side)
        return list(zip(counts.lengths, counts.trained)) if counts else []

    def cached(self, function, s: RunSettings, batch: MicroBatch):
        """Return function(arch, s, batch), computed once per distinct micro-batch and settings."""
        key = (function.__name__, s, batch)
        if key not in self.results:
            self.results[key] = function(self.arch, s, batch)
        return self.results[key]

    def simulated(self, micro_batches: int, s: RunSettings) -> list[list[MicroBatch]]:
        """Simulated data orders, shared by the devices that cut micro-batches the same way."""
        key = (micro_batches, s.rows_per_micro_batch, s.packing, s.attn_implementation)
        if key not in self.orders:
            self.orders[key] = simulate_order(self.rows("train"), micro_batches, self.arch, s, self.cfg.training.seed)
        return self.orders[key]


@dataclass
class PlanReport:
    """The plan for one config: an estimate per flavor, the recommended flavors, and warnings."""

    workload: Workload
    estimates: list[FlavorEstimate]
    cheapest: str | None
    fastest: str | None  # the fastest flavor costing at most twice the cheapest
    warnings: list[str] = field(default_factory=list)
    prices_source: str = ""

    def estimate(self, name: str) -> FlavorEstimate:
        return next(e for e in self.estimates if e.flavor == name)

    def to_json(self) -> dict:
        from ft.plan.report import report_json

        return report_json(self)


_workloads: dict[str, Workload] = {}


def workload_for(loaded: LoadedConfig) -> Workload:
    """Read the model's shapes and count the data's tokens once per config in this process."""
    key = json.dumps([str(loaded.path), loaded.config.model_dump(mode="json")], sort_keys=True)
    if key not in _workloads:
        cfg = loaded.config
        model = find_model(cfg.model.name, cfg.model.revision)
        counts = count_data_tokens(cfg, model.architecture.model_type, model.tokenizer_files)
        speed = cpu_speed(run_efficiencies(cfg, model.architecture))
        _workloads[key] = Workload(loaded, model, counts, speed)
    return _workloads[key]


def run_efficiencies(cfg: Config, arch: Architecture) -> list[float]:
    """Training efficiency of this model's past runs on this machine, against the peak the plan uses."""
    from ft.plan.calibration import machine_peaks, stored_warmup_s

    rates, _ = machine_peaks()
    warmup_s = stored_warmup_s()
    samples = []
    for run in past_runs(cfg.output.dir, cfg.model.name):
        summary = run["summary"]
        # NOTE: a run without a `device` field counts as this machine's, one without `dtype` as float32.
        dtype = summary.get("dtype", "float32")
        if summary.get("device", "cpu") != "cpu" or dtype not in rates:
            continue
        flops = run_training_flops(run["config"], summary, arch, dtype)
        # The plan counts the first step's warm-up and the evaluations on their own, so they leave the rate.
        seconds = max(summary["train_time_s"] - summary.get("eval_time_s", 0.0) - warmup_s, 1e-3)
        samples.append(flops / seconds / rates[dtype])
    return samples


def run_training_flops(cfg: Config, summary: dict, arch: Architecture, dtype: str) -> float:
    """FLOPs of a finished CPU run from its token counts, with every row at the run's mean length."""
    s = run_settings(cfg, on_gpu=False, supports_bf16=dtype == "bfloat16")
    rows = max(1, summary.get("steps", 1) * cfg.training.batch_size * cfg.training.grad_accum)
    mean = summary["tokens_seen"] / rows
    pairs = round(rows * mean * (mean + 1) / 2)
    batch = MicroBatch(rows, summary["tokens_seen"], summary.get("trained_tokens", 0), pairs, pairs, 0, 0)
    return training_flops(arch, s, batch)


def local_memory_bytes() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def host_overhead(workload: Workload) -> float:
    tokens = sum(counts.tokens for counts in workload.counts.values())
    return workload.cpu.base_memory_gb * 1e9 + tokens * HOST_BYTES_PER_DATA_TOKEN


def local_device(workload: Workload) -> Device:
    from ft.model import cpu_supports_bf16

    rates = {dtype: workload.cpu.flops_per_s(dtype) for dtype in ("float32", "bfloat16")}
    return Device(LOCAL, LOCAL_LABEL, None, False, cpu_supports_bf16(), 1, local_memory_bytes(), 0.0,
                  rates, host_overhead(workload), workload.cpu.source, workload.cpu.resident, workload.cpu.warmup_s,
                  workload.cpu.decode_step_s_per_layer, workload.cpu.forward_speedup)


def flavor_device(workload: Workload, flavor: Flavor) -> Device:
    if not flavor.gpus:
        # NOTE: assumes the flavor's vCPUs train as fast as this machine's logical cores in float32, and that they
        # have no native bfloat16, so `auto` is planned as float32 there.
        rate = workload.cpu.flops_per_s("float32") / (os.cpu_count() or 1) * flavor.cpus
        return Device(flavor.name, flavor.name, flavor, False, False, 1, flavor.ram_gb * 1e9,
                      flavor.price_per_hour_usd, {"float32": rate},
                      host_overhead(workload), f"this machine's rate per core x {flavor.cpus} vCPUs",
                      workload.cpu.resident, decode_step_s_per_layer=workload.cpu.decode_step_s_per_layer,
                      forward_speedup=workload.cpu.forward_speedup)
    spec = ACCELERATORS[flavor.accelerator]
    efficiency, source = gpu_efficiency(flavor.accelerator)
    rates = {dtype: tflops * 1e12 * efficiency for dtype, tflops in spec.peak_tflops.items()}
    return Device(flavor.name, flavor.name, flavor, True, flavor.supports_bf16, flavor.gpus,
                  flavor.memory_gb_per_gpu * 1e9, flavor.price_per_hour_usd, rates, CUDA_OVERHEAD_BYTES,
                  f"data-sheet peak x {efficiency:.2f} ({source})")


def blocked_reason(cfg: Config, device: Device, s: RunSettings) -> str | None:
    """Why ft train cannot run the config on the device (mirrors ft.model.choose_dtype and the qlora check)."""
    if s.dtype == "bfloat16" and device.on_gpu and not device.supports_bf16:
        return f"no bfloat16 ({device.flavor.accelerator})"
    if cfg.model.precision == "float16" and not device.on_gpu:
        return "float16 needs a CUDA GPU"
    if cfg.training.method == "qlora" and not device.on_gpu:
        return "qlora needs a CUDA GPU"
    return None


def estimate_on(workload: Workload, device: Device) -> FlavorEstimate:
    """Estimate the config's peak memory per device, time and cost on one device."""
    cfg, arch = workload.cfg, workload.arch
    s = run_settings(cfg, device.on_gpu, device.supports_bf16)
    rows_used = workload.counts["train"].rows_used
    steps, micro_batches = count_steps(rows_used, cfg.training.epochs, cfg.training.max_steps, s, device.devices)
    orders = workload.simulated(micro_batches, s)

    parts = peak_memory(workload, s, orders, device.overhead_bytes, device.resident)
    simulated = [workload.cached(training_flops, s, batch) for order in orders for batch in order]
    train_flops = statistics.fmean(simulated) * micro_batches if simulated else 0.0

    rate = device.flops_per_s.get(s.dtype, 0.0)
    per_batch_overhead = GPU_LAYER_OVERHEAD_S * arch.num_layers if device.on_gpu else 0.0
    scaling = GPU_SCALING_EFFICIENCY if device.devices > 1 else 1.0
    train_s = math.inf
    if rate:
        train_s = (train_flops / rate + micro_batches * per_batch_overhead) / scaling + device.warmup_s
    eval_flops, eval_batches = evaluation_work(workload, s, steps, device.devices)
    eval_s = math.inf
    if rate:
        eval_s = (eval_flops / (rate * device.forward_speedup) + eval_batches * per_batch_overhead * FORWARD_SHARE)
        eval_s /= scaling
    eval_s += tool_eval_time(workload, s, device)
    time_s = train_s + eval_s
    flavor = device.flavor

    return FlavorEstimate(
        flavor=device.name, label=device.label, accelerator=flavor.accelerator if flavor else None,
        gpus=flavor.gpus if flavor else 0, processes=device.devices,
        memory_gb_per_gpu=flavor.memory_gb_per_gpu if flavor else 0.0,
        device_memory_gb=round(device.memory_bytes / 1e9, 1), supports_bf16=device.supports_bf16, dtype=s.dtype,
        fits=parts.peak <= device.memory_bytes * (1 - HEADROOM), peak_memory_gb=round(parts.peak / 1e9, 3),
        memory_gb=parts.as_gb(), time_s=round(time_s, 1), train_time_s=round(train_s, 1), eval_time_s=round(eval_s, 1),
        cost_usd=round(time_s / 3600 * device.price_per_hour_usd, 4), price_per_hour_usd=device.price_per_hour_usd,
        steps=steps, micro_batches_per_device=micro_batches, training_flops=train_flops * device.devices,
        blocked=blocked_reason(cfg, device, s), speed_source=device.speed_source,
    )


def peak_memory(workload: Workload, s: RunSettings, orders: list[list[MicroBatch]], overhead: float,
                resident: ResidentTerms) -> MemoryParts:
    """Average, over simulated data orders, the parts at each order's largest micro-batch.

    The largest micro-batch is the one with the most activation and logit bytes, the activations scaled by
    `resident.activation_factor`. The other parts are the same for every micro-batch.
    """
    arch = workload.arch
    if not orders:
        return memory_parts(arch, s, MicroBatch(0, 0, 0, 0, 0, 0, 0), overhead, resident)

    def dynamic_bytes(batch: MicroBatch) -> float:
        activations, logits = workload.cached(activation_bytes, s, batch)
        return resident.activation_factor * activations + logits

    largest = [max(order, key=dynamic_bytes) for order in orders]
    worst = [memory_parts(arch, s, batch, overhead, resident) for batch in largest]
    averaged = {name: statistics.fmean(getattr(p, name) for p in worst) for name in vars(worst[0])}
    return MemoryParts(**averaged)


def tool_eval_time(workload: Workload, s: RunSettings, device: Device) -> float:
    """Seconds of the tool-call evaluation ft train runs after training (on the first process only)."""
    cfg = workload.cfg
    counts = workload.counts.get("eval")
    rate = device.flops_per_s.get(s.dtype, 0.0)
    if counts is None or not rate:
        return 0.0
    turns = [tuple(turn) for turn in counts.first_turns[:cfg.training.tool_eval_rows]]
    return tool_eval_seconds(workload.arch, s, turns, cfg.training.tool_eval_max_new_tokens, rate,
                             device.decode_step_s_per_layer)


def evaluation_work(workload: Workload, s: RunSettings, steps: int, devices: int) -> tuple[float, int]:
    """Return (FLOPs, micro-batches) per device of all evaluation passes: periodic ones and the final one."""
    eval_rows = workload.rows("eval")
    if not eval_rows:
        return 0.0, 0
    every = workload.cfg.training.eval_every_steps
    passes = 1 + (steps // every if every else 0)
    batches = in_order(eval_rows, workload.arch, s)
    scale = workload.counts["eval"].scale / devices
    flops = sum(evaluation_flops(workload.arch, s, b) for b in batches) * scale * passes
    return flops, math.ceil(len(batches) * scale * passes)


def choose(estimates: list[FlavorEstimate]) -> tuple[str | None, str | None]:
    """Return the cheapest flavor that fits, and the fastest one costing at most twice as much."""
    usable = [e for e in estimates if e.usable and e.flavor != LOCAL and math.isfinite(e.time_s)]
    if not usable:
        return None, None
    cheapest = min(usable, key=lambda e: (e.cost_usd, e.time_s))
    within = [e for e in usable if e.cost_usd <= 2 * cheapest.cost_usd]
    fastest = min(within, key=lambda e: (e.time_s, e.cost_usd))
    return cheapest.flavor, fastest.flavor


def plan_run(loaded: LoadedConfig) -> PlanReport:
    """Estimate the config on this machine and every Jobs flavor; choose flavors and collect warnings."""
    from ft.plan.warnings import collect_warnings

    workload = workload_for(loaded)
    price_list = current_price_list()
    estimates = estimates_for(workload, price_list)
    cheapest, fastest = choose(estimates)
    report = PlanReport(workload, estimates, cheapest, fastest, prices_source=price_list.source)
    report.warnings = collect_warnings(report, price_list)
    return report


def estimates_for(workload: Workload, price_list: PriceList) -> list[FlavorEstimate]:
    devices = [local_device(workload)] + [flavor_device(workload, f) for f in price_list.flavors.values()]
    return [estimate_on(workload, device) for device in devices]


def estimate_for_flavor(loaded: LoadedConfig, flavor: str) -> FlavorEstimate:
    """Estimate the config on one Jobs flavor. Raise FtError listing the known flavors for an unknown name."""
    price_list = current_price_list()
    chosen = flavor_named(flavor, price_list)
    workload = workload_for(loaded)
    return estimate_on(workload, flavor_device(workload, chosen))


def trained_parameter_count(workload: Workload, on_gpu: bool = True) -> int:
    return trained_parameters(workload.arch, run_settings(workload.cfg, on_gpu, True))
