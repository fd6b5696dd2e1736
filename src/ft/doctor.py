"""`ft doctor`: check the installed libraries, the device, the disk, the Hub token, and a config's model and data.

Each check prints one line: `PASS`, `FAIL` with the fix after `->`, or `SKIP` with the reason. The exit code is 0
when nothing failed and 1 when a check failed. A config that does not validate stops with exit code 2, as in every
other command. `cheap_checks` (no network, no model load) is what `ft train` runs before anything is downloaded.

Nothing heavy is imported at the top: the CLI builds its parser from this module on every `ft` call.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ft.errors import FtError

# Supported version ranges: the same ranges as the dependencies in pyproject.toml (a test compares the two).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "torch": (">=2.6",),
    "transformers": (">=5.0", "<6"),
    "peft": (">=0.17",),
    "accelerate": (">=1.10",),
    "datasets": (">=4.0",),
    "huggingface_hub": (">=1.0",),
    "pydantic": (">=2.8",),
    "trl": (">=0.20",),
}
# Packages that ft can run without. A missing one is a SKIP, not a FAIL.
OPTIONAL = {"trl": "used only by the speed benchmark in bench/"}

MIN_FREE_BYTES = 2 * 10**9
MODEL_SIZE_FACTOR = 3  # free space needed for the outputs, as a multiple of the base model's weight files
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
GB = 10**9


@dataclass
class Check:
    """The outcome of one check: `pass`, `fail` (with the fix) or `skip` (with the reason in `message`)."""

    name: str
    status: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status.upper()}  {self.name}  {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text


def passed(name: str, message: str) -> Check:
    return Check(name, "pass", message)


def failed(name: str, message: str, fix: str | None = None) -> Check:
    return Check(name, "fail", message, fix)


def skipped(name: str, reason: str) -> Check:
    return Check(name, "skip", reason)


def raise_on_failure(checks: list[Check]) -> None:
    """Raise FtError listing every failed check, for commands that must stop before heavy work."""
    failures = [check for check in checks if check.status == "fail"]
    if failures:
        lines = "\n".join(f"  {check.line()}" for check in failures)
        raise FtError(f"{len(failures)} preflight check(s) failed:\n{lines}\nRun `ft doctor CONFIG` for every check.")


# ---------------------------------------------------------------------------------------------------------------
# Library versions


def check_versions() -> list[Check]:
    """Compare the installed version of every stack package with SUPPORTED, reading metadata only (no imports)."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return [failed("versions", "the package `packaging` is not installed, so versions cannot be compared",
                       "run `uv sync`")]

    checks = []
    for package, specifiers in SUPPORTED.items():
        required = ",".join(specifiers)
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            if package in OPTIONAL:
                checks.append(skipped("versions", f"{package} not installed (optional: {OPTIONAL[package]})"))
            else:
                checks.append(failed("versions", f"{package} is not installed (supported: {required})",
                                     f"run `uv sync` (or pip install '{package}{required}')"))
            continue
        try:
            # Pre-releases count as their release: a 5.1.0.dev0 build is inside >=5.0,<6.
            inside = SpecifierSet(required).contains(Version(installed), prereleases=True)
        except InvalidVersion:
            inside = False
        if inside:
            checks.append(passed("versions", f"{package} {installed} ({required})"))
        else:
            checks.append(failed("versions", f"{package} {installed} is outside the supported range {required}",
                                 f"run `uv sync` (or pip install '{package}{required}')"))
    return checks


# ---------------------------------------------------------------------------------------------------------------
# Device and precision


def device_info() -> dict:
    """Describe the training device as {"cuda", "name", "bf16", "capability"}.

    bf16 is native support only (compute capability 8.0 or newer, or ROCm). With its default arguments, torch's
    `is_bf16_supported()` also returns True on a T4 (7.5) because a bfloat16 tensor can be created there.
    """
    import torch

    if not torch.cuda.is_available():
        from ft.model import cpu_supports_bf16

        return {"cuda": False, "name": "CPU", "bf16": cpu_supports_bf16(), "capability": None}
    major, minor = torch.cuda.get_device_capability()
    return {"cuda": True, "name": torch.cuda.get_device_name(), "capability": f"{major}.{minor}",
            "bf16": torch.cuda.is_bf16_supported(including_emulation=False)}


def check_device(device: dict, method: str | None = None) -> Check:
    if not device.get("cuda"):
        if method == "qlora":
            return failed("device", "training.method qlora needs a CUDA GPU, and this machine has none",
                          "set training.method: lora")
        return passed("device", "no CUDA GPU: training runs on the CPU")
    capability = f", compute capability {device['capability']}" if device.get("capability") else ""
    bf16 = "bfloat16 supported" if device.get("bf16") else "no bfloat16"
    return passed("device", f"CUDA GPU {device.get('name')}{capability}, {bf16}")


def resolve_precision(precision: str, device: dict) -> str:
    """Return the precision that `auto` stands for on this device: bfloat16 where native (GPU or CPU), else float32."""
    if precision != "auto":
        return precision
    return "bfloat16" if device.get("bf16") else "float32"


def overflows_in_float16(model_type: str | None) -> bool:
    """Return whether the model type is a Gemma 3 one (gemma3, gemma3_text), whose activations overflow float16."""
    # NOTE: the prefix also matches gemma3n, which is assumed to behave like Gemma 3 but was not measured here.
    return bool(model_type) and model_type.startswith("gemma3")


def check_precision(precision: str, model_type: str | None, device: dict) -> Check:
    """Check model.precision against the device and the architecture, without touching torch.

    `device` is a dict as `device_info` returns it, so a caller can check a GPU it does not have, e.g.
    {"cuda": True, "name": "Tesla T4", "bf16": False}.
    """
    where = device.get("name") or ("a CUDA GPU" if device.get("cuda") else "CPU")
    if precision == "auto":
        return passed("precision", f"auto -> {resolve_precision(precision, device)} on {where}")
    if precision not in ("float32", "bfloat16", "float16"):
        return failed("precision", f"{precision!r} is not a precision", "set model.precision: auto, float32, "
                      "bfloat16 or float16")
    if precision == "bfloat16" and device.get("cuda") and not device.get("bf16"):
        return failed("precision", f"bfloat16 not supported on {where}", "set model.precision: auto")
    if precision == "float16" and not device.get("cuda"):
        return failed("precision", f"float16 training needs a CUDA GPU, not {where}", "set model.precision: auto")
    if precision == "float16" and overflows_in_float16(model_type):
        fix = "set model.precision: auto or bfloat16" if device.get("bf16") else "set model.precision: auto"
        return failed("precision", f"float16 overflows in {model_type} models (activations exceed its range)", fix)
    return passed("precision", f"{precision} on {where}")


# ---------------------------------------------------------------------------------------------------------------
# Model files on this machine (no network)


def local_model_path(name: str, revision: str | None) -> Path | None:
    """Return the model's folder (or .gguf file) when it is already on this machine, without any network access."""
    from ft.model import GGUF_FALLBACKS, ft_cache_dir, hub_cache_folder

    path = Path(name).expanduser()
    if path.exists():
        return path
    cached = hub_cache_folder(name, revision)
    if cached:
        return cached
    if name in GGUF_FALLBACKS:
        converted = ft_cache_dir() / "models" / GGUF_FALLBACKS[name][1].replace(".gguf", "")
        if (converted / "config.json").is_file():
            return converted
    return None


def local_model_type(path: Path | None) -> str | None:
    """Read `model_type` from a local folder's config.json, or the architecture of a .gguf file."""
    if path is None:
        return None
    if path.is_file() and path.suffix == ".gguf":
        return gguf_architecture(path)
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def gguf_architecture(path: Path) -> str | None:
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields.get("general.architecture")
        return bytes(field.parts[field.data[0]]).decode("utf-8") if field else None
    except (OSError, ValueError, IndexError):
        return None


def weights_bytes(path: Path | None) -> int | None:
    """Return the size of the model's weight files, or None when they are not on this machine."""
    if path is None:
        return None
    if path.is_file():
        return path.stat().st_size
    files = [item for item in path.iterdir() if item.suffix in WEIGHT_SUFFIXES and item.is_file()]
    return sum(item.stat().st_size for item in files) or None


# ---------------------------------------------------------------------------------------------------------------
# Disk


def nearest_existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(output_dir: str, model_bytes: int | None) -> Check:
    """Check that output.dir can be created and its disk has MODEL_SIZE_FACTOR x the model free (2 GB at least)."""
    folder = nearest_existing(Path(output_dir))
    if not folder.is_dir():
        return failed("disk", f"output.dir {output_dir}: {folder} is a file, not a folder",
                      "set output.dir to a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        return failed("disk", f"output.dir {output_dir}: no write permission in {folder}",
                      "set output.dir to a folder you can write to")
    needed = max(MODEL_SIZE_FACTOR * (model_bytes or 0), MIN_FREE_BYTES)
    basis = (f"{MODEL_SIZE_FACTOR} x the {model_bytes / GB:.2f} GB model" if model_bytes
             else "model size unknown until it downloads")
    free = shutil.disk_usage(folder).free
    summary = (f"{free / GB:.1f} GB free in {folder} (needs {needed / GB:.1f} GB: {basis}; "
               f"minimum {MIN_FREE_BYTES / GB:.0f} GB)")
    if free < needed:
        return failed("disk", f"only {summary}", "free some space or set output.dir to a bigger disk")
    return passed("disk", summary)


# ---------------------------------------------------------------------------------------------------------------
# Hub token and write access


def offline_reason() -> str | None:
    """Return why the Hub cannot be used (HF_HUB_OFFLINE, or no connection), or None when it can."""
    from ft.model import hub_reachable

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return "offline (HF_HUB_OFFLINE=1)"
    if not hub_reachable():
        return f"offline ({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} cannot be reached)"
    return None


def check_token(output=None, api=None) -> list[Check]:
    """Check that a Hub token is present and, when output.push_to_hub is set, that it can write to output.hub_repo.

    The token itself never appears in a message. `api` is an `HfApi` (a test passes one aimed at a local server).
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    pushing = bool(output and output.push_to_hub)
    token = get_token()
    if token is None:
        if pushing:
            return [failed("token", "no Hugging Face token found, and output.push_to_hub is true",
                           "run `hf auth login` with a write token, or set HF_TOKEN")]
        return [skipped("token", "no Hugging Face token (needed only for output.push_to_hub and gated models)")]
    reason = offline_reason()
    if reason:
        return [skipped("token", f"present, not verified: {reason}")]

    api = api or HfApi()
    try:
        info = api.whoami(token=token)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            return [failed("token", "rejected by the Hub (invalid or expired)",
                           "create a token at https://huggingface.co/settings/tokens and run `hf auth login`")]
        return [failed("token", f"the Hub's whoami request failed (HTTP {status})", "retry later")]
    except Exception as err:  # the client's transport errors (connect, timeout) share no base class with OSError
        return [failed("token", f"the Hub's whoami request failed ({type(err).__name__})",
                       "check the connection or HF_ENDPOINT")]

    checks = [passed("token", f"present (user {info.get('name')})")]
    if pushing:
        checks.append(check_write_access(info, output.hub_repo))
    return checks


def check_write_access(info: dict, repo_id: str) -> Check:
    """Check, from a whoami response, that the token may write to `repo_id` (`namespace/name`)."""
    namespace, _, repo_name = repo_id.partition("/")
    user = info.get("name")
    orgs = {org.get("name"): org for org in info.get("orgs") or []}
    if namespace != user and namespace not in orgs:
        known = ", ".join([str(user), *orgs])
        return failed("hub-write", f"output.hub_repo {repo_id}: namespace {namespace!r} is not this token's user or "
                      f"one of its organizations ({known})", f"set output.hub_repo: {user}/{repo_name}")

    access = (info.get("auth") or {}).get("accessToken") or {}
    role = access.get("role")
    new_token = "create a token with write access at https://huggingface.co/settings/tokens and run `hf auth login`"
    if role == "read":
        return failed("hub-write", f"the token is read-only, so the push to {repo_id} would fail", new_token)
    if role == "fineGrained" and not fine_grained_can_write(access.get("fineGrained") or {}, namespace, repo_id):
        return failed("hub-write", f"the fine-grained token has no repo.write permission on {namespace}",
                      f"add `repo.write` for {namespace} to the token at https://huggingface.co/settings/tokens")
    # NOTE: `roleInOrg` is the field name seen in public whoami-v2 responses; no API reference documents it.
    if orgs.get(namespace, {}).get("roleInOrg") == "read":
        return failed("hub-write", f"user {user} has only the read role in the organization {namespace}",
                      f"ask an admin of {namespace} for the write role, or set output.hub_repo: {user}/{repo_name}")
    if role is None:
        return skipped("hub-write", "the Hub did not report the token's role, so write access is unverified")
    return passed("hub-write", f"token role {role} can write to {repo_id}")


def fine_grained_can_write(fine_grained: dict, namespace: str, repo_id: str) -> bool:
    """Return whether a fine-grained token has `repo.write` on the namespace, on the repo itself, or globally."""
    for scope in fine_grained.get("scoped") or []:
        entity = (scope.get("entity") or {}).get("name")
        if entity in (namespace, repo_id) and "repo.write" in (scope.get("permissions") or []):
            return True
    return "repo.write" in (fine_grained.get("global") or [])


# ---------------------------------------------------------------------------------------------------------------
# Config, model and data


def cheap_checks(loaded) -> list[Check]:
    """Run the version, device, precision and disk checks, which need no network and no model load.

    They are cheap so that `ft train` can run them before anything is downloaded. When a version is outside its
    range, the checks that import torch are skipped because the import itself may fail.
    """
    checks = check_versions()
    if any(check.status == "fail" for check in checks):
        return checks + [skipped(name, "fix the versions first") for name in ("device", "precision", "disk")]
    cfg = loaded.config if loaded else None
    device = device_info()
    checks.append(check_device(device, cfg.training.method if cfg else None))
    if cfg is None:
        checks.append(check_precision("auto", None, device))
        return checks
    model_path = local_model_path(cfg.model.name, cfg.model.revision)
    checks.append(check_precision(cfg.model.precision, local_model_type(model_path), device))
    checks.append(check_disk(cfg.output.dir, weights_bytes(model_path)))
    if cfg.training.compile:
        checks.append(check_compiler(device))
    return checks


def check_compiler(device: dict) -> Check:
    """training.compile: torch.compile builds C++ kernels on a CPU (a C++ compiler, $CXX or g++; clang++ on macOS)
    and Triton kernels on a GPU (the triton package and a C compiler for its launcher)."""
    import importlib.util
    import sys

    variable = "CC" if device.get("cuda") else "CXX"
    if device.get("cuda"):
        if importlib.util.find_spec("triton") is None:
            return failed("compile", "training.compile needs the triton package on a GPU, and it is not installed",
                          "`uv pip install triton`, or set training.compile: false")
        names = [os.environ["CC"]] if "CC" in os.environ else ["cc", "gcc", "clang"]  # any one builds the launcher
    else:
        # Inductor reads CXX the same way: set but empty means an empty compiler name, not the default.
        names = [os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")]
    if variable in os.environ:
        fix = f"set {variable} to a working compiler, or unset it, or set training.compile: false"
    else:
        fix = f"install one (e.g. `apt install {'gcc' if variable == 'CC' else 'g++'}`), or set training.compile: false"
    found = next(filter(None, map(shutil.which, filter(None, names))), None)
    if found is None:
        where = f"{variable}={names[0]!r}" if variable in os.environ else " or ".join(names)
        return failed("compile", f"training.compile needs a compiler, and {where} is not found", fix)
    problem = compile_probe(found, "c" if variable == "CC" else "c++")
    if problem:
        return failed("compile", f"training.compile needs a working compiler, and {found} {problem}", fix)
    return passed("compile", f"torch.compile will build its kernels with {found}")


def compile_probe(compiler: str, language: str) -> str | None:
    """Compile a file that includes Python.h, as Inductor's kernels do; return what went wrong, or None.

    This finds a compiler that cannot build anything, and missing Python headers (a python3-dev package)."""
    import sysconfig
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ft-compile-check-") as folder:
        source = Path(folder) / f"probe.{'c' if language == 'c' else 'cpp'}"
        source.write_text("#include <Python.h>\nint probe(void) { return 0; }\n", encoding="utf-8")
        target = Path(folder) / "probe.o"
        command = [compiler, "-c", str(source), "-I", sysconfig.get_paths()["include"], "-o", str(target)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return "timed out after 60 s on a one-line file"
        except OSError as err:
            return f"could not be run ({err.strerror})"
        built = target.is_file()
    if result.returncode != 0 or not built:
        first = next((line for line in (result.stderr + result.stdout).splitlines() if line.strip()), "no output")
        return f"failed on a one-line file that includes Python.h (exit code {result.returncode}: {first.strip()[:200]})"
    return None


def check_model(loaded) -> list[Check]:
    """Resolve model.name, read its config (no weights) and check the LoRA targets against its layers."""
    from ft.model import check_lora_targets, read_model_config, resolve_model

    cfg = loaded.config
    try:
        source = resolve_model(cfg.model.name, cfg.model.revision)
        model_config = read_model_config(source)
    except FtError as err:
        return [failed("model", str(err)), skipped("lora", "needs the model")]
    except (OSError, ValueError) as err:  # transformers: unreadable or unknown config.json
        return [failed("model", f"model.name {cfg.model.name!r}: cannot read its config ({err})",
                       "point model.name at a complete transformers model folder or a Hub id"),
                skipped("lora", "needs the model")]
    origin = {"hub": "downloads from the Hub", "cache": "in the Hub cache", "local": "local",
              "gguf-converted": f"offline copy converted from GGUF in {source.folder}"}[source.origin]
    checks = [passed("model", f"{cfg.model.name} ({model_config.model_type}, {origin})")]

    if cfg.training.method == "full":
        checks.append(skipped("lora", "training.method is full"))
        return checks
    try:
        check_lora_targets(cfg.lora.target_modules, model_config)
    except FtError as err:
        checks.append(failed("lora", str(err)))
        return checks
    targets = cfg.lora.target_modules
    if targets == "all-linear":
        description = "all-linear (PEFT adapts every linear layer except the output head)"
    else:
        description = f"{targets if isinstance(targets, str) else ', '.join(targets)} found"
    checks.append(passed("lora", f"lora.target_modules {description}"))
    return checks


def check_data(loaded) -> list[Check]:
    """Run the data part of `ft train` (chat template probe, read, render, mask) and report the row counts."""
    from ft.train import prepare_run

    try:
        prepared = prepare_run(loaded)
    except FtError as err:
        message = str(err)
        name = "template" if message.startswith(("model.chat_template", "model.name")) else "data"
        return [failed(name, message)]
    token = prepared.tokenizer.convert_ids_to_tokens(prepared.end_token_id)
    checks = [passed("template", f"tool calls in {prepared.traits.style} style, end-of-turn token {token}")]
    for side, data in (("train", prepared.train), ("eval", prepared.eval)):
        if data is None:
            continue
        read = sum(data.rows_read.values())
        dropped = ", ".join(f"{count} {reason}" for reason, count in data.dropped.items()) or "none"
        share = data.trained_tokens / max(data.tokens, 1)
        checks.append(passed("data", f"data.{side}: {read} rows read, {len(data.examples)} used, "
                             f"{data.truncated} cut at the prompt side, dropped: {dropped}; "
                             f"{data.tokens} tokens, {share:.0%} trained"))
    return checks


def iter_checks(loaded) -> Iterator[Check]:
    """Yield every check in order; the slow ones (Hub, model, data) come last."""
    if loaded is not None:
        overridden = sum(1 for origin in loaded.sources.values() if origin == "override")
        yield passed("config", f"{loaded.path} is valid ({overridden} value(s) from --set)")
    cheap = cheap_checks(loaded)
    yield from cheap
    if any(check.status == "fail" and check.name == "versions" for check in cheap):
        return
    yield from check_token(loaded.config.output if loaded else None)
    if loaded is None:
        return
    model_checks = check_model(loaded)
    yield from model_checks
    if model_checks[0].status == "fail":
        yield skipped("data", "needs the model")
        return
    yield from check_data(without_lora_targets(loaded))


def without_lora_targets(loaded):
    """Return a copy of the config with lora.target_modules set to `all-linear`.

    prepare_run checks the targets before it reads the data, so a wrong target, which the lora check has already
    reported, would otherwise hide every data problem.
    """
    from dataclasses import replace

    cfg = loaded.config
    lora = cfg.lora.model_copy(update={"target_modules": "all-linear"})
    return replace(loaded, config=cfg.model_copy(update={"lora": lora}))


# ---------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser) -> None:
    from ft.cli import add_set

    parser.add_argument("config", nargs="?", help="YAML config file; without it, only the libraries, device and "
                        "token are checked")
    add_set(parser)
    parser.add_argument("--json", action="store_true", help="print the checks as a JSON list")


def run(args) -> int:
    """Print every check; return 0 when none failed, 1 when one did. A config that does not validate raises FtError."""
    from ft.config import load_config

    if args.overrides and not args.config:
        raise FtError("--set needs a CONFIG: ft doctor CONFIG --set KEY=VALUE.")
    loaded = load_config(args.config, args.overrides) if args.config else None
    checks = []
    for check in iter_checks(loaded):
        checks.append(check)
        if not args.json:
            print(check.line(), flush=True)
    if args.json:
        print(json.dumps([asdict(check) for check in checks], indent=2, ensure_ascii=False))
    return 1 if any(check.status == "fail" for check in checks) else 0
