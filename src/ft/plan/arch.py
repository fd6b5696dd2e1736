"""A decoder-only model's shapes and exact parameter counts, read from config.json, a GGUF header or a built-in table.

Nothing here imports torch or transformers, because `ft plan` must return in seconds, before any weight is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

from ft.errors import FtError

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Architectures whose layers ft plan counts exactly; others are counted as Llama-like and flagged approximate.
KNOWN_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "smollm3"}
GEMMA_TYPES = {"gemma", "gemma2", "gemma3", "gemma3_text"}


@dataclass(frozen=True)
class Architecture:
    """The shapes that decide a decoder-only transformer's parameters, memory and FLOPs."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    qkv_bias: bool = False  # q, k and v projections carry a bias (Qwen2, Llama with attention_bias)
    o_bias: bool = False
    mlp_bias: bool = False
    norms_per_layer: int = 2  # RMSNorms of hidden size per layer: 2 for Llama and Qwen, 4 for Gemma 2 and 3
    qk_norm: bool = False  # per-head RMSNorm on queries and keys (Qwen3, Gemma 3)
    sliding_window: int | None = None
    sliding_layers: int = 0  # layers that attend only to the last `sliding_window` positions

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def approximate(self) -> bool:
        """Whether the layer layout is assumed Llama-like rather than known."""
        return self.model_type not in KNOWN_MODEL_TYPES

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each Linear layer of one decoder layer."""
        d, inter = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (d, self.q_dim), "k_proj": (d, self.kv_dim), "v_proj": (d, self.kv_dim),
            "o_proj": (self.q_dim, d), "gate_proj": (d, inter), "up_proj": (d, inter), "down_proj": (inter, d),
        }

    def layer_linear_parameters(self) -> int:
        """Weights and biases of one layer's Linear layers."""
        weights = sum(i * o for i, o in self.linear_shapes().values())
        biases = (self.q_dim + 2 * self.kv_dim) * self.qkv_bias + self.hidden_size * self.o_bias
        biases += (2 * self.intermediate_size + self.hidden_size) * self.mlp_bias
        return weights + biases

    def layer_norm_parameters(self) -> int:
        return self.norms_per_layer * self.hidden_size + 2 * self.head_dim * self.qk_norm

    def parameter_parts(self) -> dict[str, int]:
        """Parameters by part: embeddings, decoder layers (linear and norm), final norm, and an untied LM head."""
        embeddings = self.vocab_size * self.hidden_size
        return {
            "embeddings": embeddings,
            "layers_linear": self.num_layers * self.layer_linear_parameters(),
            "layers_norm": self.num_layers * self.layer_norm_parameters(),
            "final_norm": self.hidden_size,
            "lm_head": 0 if self.tie_embeddings else embeddings,
        }

    def parameter_count(self) -> int:
        return sum(self.parameter_parts().values())


def lora_parameter_count(arch: Architecture, r: int, target_modules) -> int:
    """Parameters of a LoRA adapter: r * (in + out) per targeted Linear layer of every decoder layer.

    `all-linear` targets every Linear layer of the decoder layers but not the LM head, as PEFT does.
    """
    return lora_count(arch, r, frozenset(lora_targets(target_modules)))


@functools.lru_cache(maxsize=256)
def lora_count(arch: Architecture, r: int, targets: frozenset[str]) -> int:
    per_layer = sum(r * (i + o) for name, (i, o) in arch.linear_shapes().items() if name in targets)
    return arch.num_layers * per_layer


def lora_targets(target_modules) -> set[str]:
    """Return the projection names among LINEAR_NAMES that a LoRA target setting selects."""
    if target_modules == "all-linear":
        return set(LINEAR_NAMES)
    if isinstance(target_modules, frozenset):
        return set(target_modules)
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return {name for name in names if name in LINEAR_NAMES}


def from_config_dict(config: dict, where: str) -> Architecture:
    """Read the shapes from a transformers config.json (a multimodal config's `text_config` for its language model)."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    values = {**config, **text} if text else config
    model_type = str(values.get("model_type") or config.get("model_type") or "unknown")
    try:
        hidden = int(values["hidden_size"])
        heads = int(values["num_attention_heads"])
        arch = Architecture(
            model_type=model_type,
            hidden_size=hidden,
            num_layers=int(values["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(values.get("num_key_value_heads") or heads),
            head_dim=int(values.get("head_dim") or hidden // heads),
            intermediate_size=int(values["intermediate_size"]),
            vocab_size=int(values["vocab_size"]),
            tie_embeddings=bool(config.get("tie_word_embeddings", values.get("tie_word_embeddings",
                                                                             model_type in GEMMA_TYPES))),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise FtError(f"{where}: cannot read the model shapes ({type(err).__name__}: {err}). "
                      "model.name must be a decoder-only transformers model with hidden_size, num_hidden_layers, "
                      "num_attention_heads, intermediate_size and vocab_size in its config.json.") from None
    return with_family_traits(arch, values)


def with_family_traits(arch: Architecture, values: dict) -> Architecture:
    """Add what the model family decides beyond the plain shapes: biases, extra norms, sliding-window layers."""
    model_type = arch.model_type
    attention_bias = bool(values.get("attention_bias", False))
    traits = {
        "qkv_bias": model_type == "qwen2" or attention_bias,
        "o_bias": attention_bias and model_type != "qwen2",
        "mlp_bias": bool(values.get("mlp_bias", False)),
        "norms_per_layer": 4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 2,
        "qk_norm": model_type in ("qwen3", "gemma3", "gemma3_text"),
    }
    window = values.get("sliding_window")
    if window and values.get("use_sliding_window", True):
        traits["sliding_window"] = int(window)
        traits["sliding_layers"] = count_sliding_layers(arch, values)
    return replace(arch, **traits)


def count_sliding_layers(arch: Architecture, values: dict) -> int:
    layer_types = values.get("layer_types")
    if isinstance(layer_types, list):
        return sum(1 for kind in layer_types if kind == "sliding_attention")
    pattern = values.get("sliding_window_pattern")
    if arch.model_type in ("gemma3", "gemma3_text"):
        # Gemma 3 configs without layer_types: every `pattern`-th layer is global, the rest slide (pattern 6).
        pattern = int(pattern or 6)
        return arch.num_layers - arch.num_layers // pattern
    if arch.model_type == "gemma2":
        return arch.num_layers // 2
    return arch.num_layers  # Mistral v0.1 style: every layer slides


GGUF_MODEL_TYPES = {"gemma3": "gemma3_text"}


def from_gguf(path: Path) -> Architecture:
    """Read the shapes from a GGUF file's header (metadata and tensor shapes; no tensor data is read)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as err:
        raise FtError(f"{path}: cannot read the GGUF header ({err}). Check that the file is a complete .gguf file.") from None

    def field(key: str, default=None):
        found = reader.get_field(key)
        return found.contents() if found is not None else default

    family = str(field("general.architecture", "llama"))
    tensors = {tensor.name: [int(n) for n in tensor.shape] for tensor in reader.tensors}
    try:
        hidden = int(field(f"{family}.embedding_length"))
        heads = int(field(f"{family}.attention.head_count"))
        vocab = field(f"{family}.vocab_size") or len(reader.get_field("tokenizer.ggml.tokens").data)
        arch = Architecture(
            model_type=GGUF_MODEL_TYPES.get(family, family),
            hidden_size=hidden,
            num_layers=int(field(f"{family}.block_count")),
            num_heads=heads,
            num_kv_heads=int(field(f"{family}.attention.head_count_kv", heads)),
            head_dim=int(field(f"{family}.attention.key_length", hidden // heads)),
            intermediate_size=int(field(f"{family}.feed_forward_length")),
            vocab_size=int(vocab),
            tie_embeddings="output.weight" not in tensors,
        )
    except (TypeError, ValueError, AttributeError) as err:
        raise FtError(f"{path}: the GGUF header lacks the model shapes ({err}); ft plan reads "
                      f"`{family}.embedding_length`, `block_count`, `attention.head_count` and `feed_forward_length`.") from None
    layer_norms = [name for name, shape in tensors.items()
                   if name.startswith("blk.0.") and name.endswith("norm.weight") and shape == [hidden]]
    window = field(f"{family}.attention.sliding_window")
    arch = replace(arch, qkv_bias="blk.0.attn_q.bias" in tensors, o_bias="blk.0.attn_output.bias" in tensors,
                   norms_per_layer=len(layer_norms), qk_norm="blk.0.attn_q_norm.weight" in tensors)
    if window:
        arch = replace(arch, sliding_window=int(window), sliding_layers=count_sliding_layers(arch, {}))
    return arch


def table_entry(hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, tied, model_type,
                sliding_window: int | None = None) -> Architecture:
    values = {"sliding_window": sliding_window}
    arch = Architecture(model_type, hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, tied)
    return with_family_traits(arch, values)


# Published config.json values of popular models (hidden size, layers, heads, kv heads, head_dim, intermediate
# size, vocab, tied embeddings), for planning offline. Keys are Hub ids without the -Instruct/-it/-pt suffix.
BUILTIN_SHAPES: dict[str, Architecture] = {
    "HuggingFaceTB/SmolLM2-135M": table_entry(576, 30, 9, 3, 64, 1536, 49152, True, "llama"),
    "HuggingFaceTB/SmolLM2-360M": table_entry(960, 32, 15, 5, 64, 2560, 49152, True, "llama"),
    "HuggingFaceTB/SmolLM2-1.7B": table_entry(2048, 24, 32, 32, 64, 8192, 49152, True, "llama"),
    "Qwen/Qwen2.5-0.5B": table_entry(896, 24, 14, 2, 64, 4864, 151936, True, "qwen2"),
    "Qwen/Qwen2.5-1.5B": table_entry(1536, 28, 12, 2, 128, 8960, 151936, True, "qwen2"),
    "Qwen/Qwen2.5-3B": table_entry(2048, 36, 16, 2, 128, 11008, 151936, True, "qwen2"),
    "Qwen/Qwen2.5-7B": table_entry(3584, 28, 28, 4, 128, 18944, 152064, False, "qwen2"),
    "Qwen/Qwen3-0.6B": table_entry(1024, 28, 16, 8, 128, 3072, 151936, True, "qwen3"),
    "Qwen/Qwen3-1.7B": table_entry(2048, 28, 16, 8, 128, 6144, 151936, True, "qwen3"),
    "Qwen/Qwen3-4B": table_entry(2560, 36, 32, 8, 128, 9728, 151936, True, "qwen3"),
    "Qwen/Qwen3-8B": table_entry(4096, 36, 32, 8, 128, 12288, 151936, False, "qwen3"),
    "meta-llama/Llama-3.2-1B": table_entry(2048, 16, 32, 8, 64, 8192, 128256, True, "llama"),
    "meta-llama/Llama-3.2-3B": table_entry(3072, 28, 24, 8, 128, 8192, 128256, True, "llama"),
    "meta-llama/Llama-3.1-8B": table_entry(4096, 32, 32, 8, 128, 14336, 128256, False, "llama"),
    # The language model only: the Gemma 3 4B checkpoint also contains a vision tower that ft plan leaves out.
    "google/gemma-3-1b": table_entry(1152, 26, 4, 1, 256, 6912, 262144, True, "gemma3_text", 512),
    "google/gemma-3-4b": table_entry(2560, 34, 8, 4, 256, 10240, 262208, True, "gemma3_text", 1024),
    "mistralai/Mistral-7B-v0.3": table_entry(4096, 32, 32, 8, 128, 14336, 32768, False, "mistral"),
    "mistralai/Mistral-7B-v0.1": table_entry(4096, 32, 32, 8, 128, 14336, 32000, False, "mistral", 4096),
}
VARIANT_SUFFIXES = ("-it", "-pt", "-base")
ALIASES = {"mistralai/mistral-7b-v0.2": "mistralai/mistral-7b-v0.1"}  # v0.2 has v0.1's shapes


def table_lookup(name: str) -> Architecture | None:
    """Return the built-in shapes for a Hub id, ignoring case, `-Instruct` and an -it/-pt/-Base suffix."""
    key = name.strip().lower().replace("-instruct", "")
    for suffix in VARIANT_SUFFIXES:
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    key = ALIASES.get(key, key)
    for known, arch in BUILTIN_SHAPES.items():
        if known.lower() == key:
            return arch
    return None
