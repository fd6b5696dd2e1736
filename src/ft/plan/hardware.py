"""Hugging Face Jobs flavors: GPUs, memory, bfloat16 support, peak FLOP/s and hourly prices.

Prices come from `HfApi().list_jobs_hardware()` when the Hub is reachable, else from the last list fetched (cached under
~/.cache/ft/plan), else from the built-in table below.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

from ft.errors import FtError

log = logging.getLogger("ft")


@dataclass(frozen=True)
class Accelerator:
    """One GPU model: memory and dense peak TFLOP/s per training dtype (no sparsity)."""

    name: str
    memory_gb: float
    supports_bf16: bool
    peak_tflops: dict[str, float]


# Dense tensor-core peaks from the vendors' data sheets; float32 is the non-tensor-core rate, because PyTorch keeps
# TF32 matmuls off by default. T4 has no bfloat16.
ACCELERATORS: dict[str, Accelerator] = {
    "T4": Accelerator("T4", 16, False, {"float16": 65, "float32": 8.1}),
    "A10G": Accelerator("A10G", 24, True, {"bfloat16": 125, "float16": 125, "float32": 31.2}),
    "L4": Accelerator("L4", 24, True, {"bfloat16": 121, "float16": 121, "float32": 30.3}),
    "L40S": Accelerator("L40S", 48, True, {"bfloat16": 362, "float16": 362, "float32": 91.6}),
    "A100": Accelerator("A100", 80, True, {"bfloat16": 312, "float16": 312, "float32": 19.5}),
    "H100": Accelerator("H100", 80, True, {"bfloat16": 989, "float16": 989, "float32": 67}),
    "H200": Accelerator("H200", 141, True, {"bfloat16": 989, "float16": 989, "float32": 67}),
}


@dataclass(frozen=True)
class Flavor:
    """A Jobs hardware flavor. `gpus` is 0 for CPU flavors, whose memory is `ram_gb`."""

    name: str
    accelerator: str | None
    gpus: int
    memory_gb_per_gpu: float
    price_per_hour_usd: float
    supports_bf16: bool
    cpus: int
    ram_gb: float

    @property
    def device_memory_gb(self) -> float:
        """Memory one training process may use: one GPU's, or the machine's RAM for a CPU flavor."""
        return self.memory_gb_per_gpu if self.gpus else self.ram_gb


def gpu_flavor(name: str, accelerator: str, gpus: int, price: float, cpus: int, ram_gb: float) -> Flavor:
    spec = ACCELERATORS[accelerator]
    return Flavor(name, accelerator, gpus, spec.memory_gb, price, spec.supports_bf16, cpus, ram_gb)


def cpu_flavor(name: str, price: float, cpus: int, ram_gb: float) -> Flavor:
    return Flavor(name, None, 0, 0.0, price, False, cpus, ram_gb)


# Offline fallback: the Hub's Jobs pricing page (huggingface.co/pricing), as listed in 2026, USD per hour.
PRICES_DATE = "2026"
FLAVORS: dict[str, Flavor] = {
    flavor.name: flavor for flavor in [
        cpu_flavor("cpu-basic", 0.01, 2, 16),
        cpu_flavor("cpu-upgrade", 0.03, 8, 32),
        gpu_flavor("t4-small", "T4", 1, 0.40, 4, 15),
        gpu_flavor("t4-medium", "T4", 1, 0.60, 8, 30),
        gpu_flavor("l4x1", "L4", 1, 0.80, 8, 30),
        gpu_flavor("l4x4", "L4", 4, 3.80, 48, 186),
        gpu_flavor("l40sx1", "L40S", 1, 1.80, 8, 62),
        gpu_flavor("a10g-small", "A10G", 1, 1.00, 4, 15),
        gpu_flavor("a10g-large", "A10G", 1, 1.50, 12, 46),
        gpu_flavor("a10g-largex2", "A10G", 2, 3.00, 24, 92),
        gpu_flavor("a10g-largex4", "A10G", 4, 5.00, 48, 184),
        gpu_flavor("a100-large", "A100", 1, 2.50, 12, 142),
        gpu_flavor("a100x4", "A100", 4, 10.00, 48, 568),
        gpu_flavor("a100x8", "A100", 8, 20.00, 96, 1136),
        gpu_flavor("h200", "H200", 1, 5.00, 23, 256),
        gpu_flavor("h200x8", "H200", 8, 40.00, 184, 2048),
    ]
}


@dataclass
class PriceList:
    """The flavors in use and where their prices come from."""

    flavors: dict[str, Flavor]
    source: str
    skipped: list[str]  # live flavors with an accelerator ft plan has no figures for


_price_list: PriceList | None = None


def current_price_list(refresh: bool = False) -> PriceList:
    """Return the live flavor list when the Hub is reachable, else the cached one, else the built-in table.

    The result is kept for the life of the process, because `ft submit` asks for one flavor at a time.
    """
    global _price_list
    if _price_list is not None and not refresh:
        return _price_list
    from ft.plan.model_files import hub_online

    live = fetch_live_price_list() if hub_online() else None
    _price_list = live or cached_price_list() or PriceList(dict(FLAVORS), f"built-in table (Hub pricing page, {PRICES_DATE})", [])
    return _price_list


def fetch_live_price_list(endpoint: str | None = None) -> PriceList | None:
    """Fetch the flavors from the Hub and cache them; return None (and log why) when the request fails."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    # The endpoint the reachability check used; huggingface_hub reads HF_ENDPOINT only when it is imported.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    try:
        hardware = HfApi(endpoint=endpoint).list_jobs_hardware()
    except (HfHubHTTPError, OSError, ValueError, KeyError) as err:
        log.warning("plan: cannot fetch the Jobs hardware list (%s: %s); using stored prices", type(err).__name__, err)
        return None
    rows = [hardware_row(item) for item in hardware]
    price_list = price_list_from_rows(rows, "Hub hardware list, fetched now")
    store_price_rows(rows)
    return price_list


def hardware_row(item) -> dict:
    """Convert a JobHardwareInfo to plain JSON for the cache."""
    accelerator = item.accelerator
    return {
        "name": item.name, "cpu": item.cpu, "ram": item.ram,
        "accelerator": None if accelerator is None else {
            "model": accelerator.model, "quantity": accelerator.quantity, "vram": accelerator.vram},
        "unit_cost_usd": item.unit_cost_usd, "unit_label": item.unit_label,
    }


UNIT_HOURS = {"minute": 1 / 60, "hour": 1.0, "second": 1 / 3600}


def price_list_from_rows(rows: list[dict], source: str) -> PriceList:
    flavors, skipped = {}, []
    for row in rows:
        per_hour = float(row["unit_cost_usd"]) / UNIT_HOURS.get(str(row["unit_label"]).lower(), 1 / 60)
        cpus, ram_gb = leading_number(row.get("cpu")), leading_number(row.get("ram"))
        accelerator = row.get("accelerator")
        if accelerator is None:
            flavors[row["name"]] = cpu_flavor(row["name"], per_hour, int(cpus), ram_gb)
            continue
        model = str(accelerator["model"]).upper()
        if model not in ACCELERATORS:
            skipped.append(f"{row['name']} ({accelerator['model']})")
            continue
        gpus = int(leading_number(accelerator.get("quantity")) or 1)
        flavors[row["name"]] = gpu_flavor(row["name"], model, gpus, per_hour, int(cpus), ram_gb)
    return PriceList(flavors, source, skipped)


def leading_number(text) -> float:
    """Return 8 for "8 vCPU" or 8, 30 for "30 GB"; 0 when there is no number."""
    if isinstance(text, (int, float)):
        return float(text)
    head = str(text or "").strip().split(" ")[0]
    try:
        return float(head)
    except ValueError:
        return 0.0


def price_cache_path():
    from ft.model import ft_cache_dir

    return ft_cache_dir() / "plan" / "hardware.json"


def store_price_rows(rows: list[dict]) -> None:
    from ft.outputs import write_json_atomic

    write_json_atomic(price_cache_path(), {"fetched_at": time.strftime("%Y-%m-%d %H:%M"), "hardware": rows})


def cached_price_list() -> PriceList | None:
    try:
        stored = json.loads(price_cache_path().read_text(encoding="utf-8"))
        return price_list_from_rows(stored["hardware"], f"Hub hardware list fetched {stored['fetched_at']} (cached)")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def flavor_named(name: str, price_list: PriceList) -> Flavor:
    """Return a flavor by name. Raise FtError listing the known names when it is unknown."""
    if name not in price_list.flavors:
        raise FtError(f"--flavor {name!r} is not a known Hugging Face Jobs flavor. Known flavors: "
                      f"{', '.join(price_list.flavors)}.")
    return price_list.flavors[name]
