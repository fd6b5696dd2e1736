"""Find a model's architecture and tokenizer files for `ft plan`, without weights, torch or transformers.

Lookup order: a local folder or .gguf file; the Hugging Face cache; ft's converted copy of the offline fallback
model; the built-in table of popular shapes (offline, so no network round trip for a model in it); the Hub,
only when it answers; the packaged GGUF file of the offline fallback model.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ft.errors import FtError
from ft.plan.arch import Architecture, from_config_dict, from_gguf, table_lookup

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
HUB_CHECK_TIMEOUT_S = 1.0


@dataclass
class ModelInfo:
    """A model's shapes, where they came from, and the tokenizer files found next to them."""

    name: str
    architecture: Architecture
    origin: str
    folder: Path | None = None
    tokenizer_files: dict[str, Path] = field(default_factory=dict)
    stored_parameters: int | None = None  # counted from safetensors headers when the weights are local


def find_model(name: str, revision: str | None = None) -> ModelInfo:
    """Return the model's shapes and tokenizer files. Raise FtError naming `model.name` when none can be found."""
    from ft.model import GGUF_FALLBACKS, ft_cache_dir, looks_like_path

    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        return local_model(name, path)

    cached = cached_hub_file(name, "config.json", revision)
    if cached:
        return folder_model(name, cached.parent, "config.json in the Hugging Face cache", revision)

    fallback = GGUF_FALLBACKS.get(name)
    if fallback:
        converted = ft_cache_dir() / "models" / fallback[1].replace(".gguf", "")
        if (converted / "config.json").is_file():
            return folder_model(name, converted, f"ft's copy converted from {fallback[1]}", None)

    arch = table_lookup(name)
    if arch is not None:
        return ModelInfo(name, arch, "ft's built-in table of published shapes",
                         tokenizer_files=cached_tokenizer_files(name, revision))

    if hub_online():
        return hub_model(name, revision)
    if fallback:
        from ft.model import find_package_file

        gguf_path = find_package_file(*fallback)
        return ModelInfo(name, from_gguf(gguf_path), f"GGUF header of {gguf_path.name} ({fallback[0]} package)")
    raise FtError(f"model.name: cannot read the shapes of {name!r}: it is not a local folder, not in the Hugging Face "
                  "cache nor in ft's built-in table, and the Hub cannot be reached. Connect to the Hub once, or "
                  f"download its config (`hf download {name} config.json tokenizer.json tokenizer_config.json`), "
                  "or point model.name at a local folder or .gguf file.")


def local_model(name: str, path: Path) -> ModelInfo:
    from ft.model import resolve_local

    source = resolve_local(name, path)  # the same checks and messages as ft train
    if source.gguf_file:
        return ModelInfo(name, from_gguf(path), f"GGUF header of {path.name}")
    return folder_model(name, path, "config.json in the local folder", None)


def folder_model(name: str, folder: Path, origin: str, revision: str | None) -> ModelInfo:
    config_path = folder / "config.json"
    arch = from_config_dict(read_json(config_path), str(config_path))
    files = {f: folder / f for f in TOKENIZER_FILES if (folder / f).is_file()}
    if "tokenizer.json" not in files:
        files = {**cached_tokenizer_files(name, revision), **files}
    return ModelInfo(name, arch, origin, folder, files, stored_parameter_count(folder, arch))


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FtError(f"{path}: cannot read it as JSON ({err}). Re-download the model's config.") from None
    if not isinstance(value, dict):
        raise FtError(f"{path}: expected a JSON object, got {type(value).__name__}.")
    return value


def cached_hub_file(repo_id: str, filename: str, revision: str | None) -> Path | None:
    """Return a file of a Hub repo when it is in the local Hugging Face cache; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    if repo_id.count("/") != 1:
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except ValueError:  # an id the hub library rejects as malformed
        return None
    return Path(found) if isinstance(found, str) else None


def cached_tokenizer_files(repo_id: str, revision: str | None) -> dict[str, Path]:
    files = {name: cached_hub_file(repo_id, name, revision) for name in TOKENIZER_FILES}
    return {name: path for name, path in files.items() if path is not None}


def hub_online() -> bool:
    """Return whether the Hub (HF_ENDPOINT honoured, HF_HUB_OFFLINE respected) accepts a connection within 1 s."""
    from ft.model import hub_reachable

    return hub_reachable(timeout_s=HUB_CHECK_TIMEOUT_S)


def hub_model(name: str, revision: str | None) -> ModelInfo:
    """Download config.json and the tokenizer files (a few MB, never the weights) from the Hub."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        config_path = Path(hf_hub_download(name, "config.json", revision=revision))
    except EntryNotFoundError:
        raise FtError(f"model.name: the Hub repo {name!r} has no config.json, so it is not a transformers model.") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise FtError(f"model.name: cannot download the config of {name!r} from the Hub ({type(err).__name__}: {err}). "
                      "Check the id (and HF_TOKEN for a gated model), or point model.name at a local folder.") from None
    files: dict[str, Path] = {}
    for filename in TOKENIZER_FILES:
        try:
            files[filename] = Path(hf_hub_download(name, filename, revision=revision))
        except (HfHubHTTPError, OSError, ValueError):
            continue  # optional files (chat_template.jinja, special_tokens_map.json) are often absent
    arch = from_config_dict(read_json(config_path), f"{name}/config.json")
    return ModelInfo(name, arch, "config.json downloaded from the Hub", config_path.parent, files)


def stored_parameter_count(folder: Path, arch: Architecture) -> int | None:
    """Count the parameters in the folder's safetensors headers (a tied LM head stored twice counted once)."""
    shapes: dict[str, list[int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        header = safetensors_header(path)
        if header is None:
            return None
        shapes.update({name: info["shape"] for name, info in header.items() if name != "__metadata__"})
    if not shapes:
        return None
    total = 0
    for name, shape in shapes.items():
        if arch.tie_embeddings and name.endswith("lm_head.weight"):
            continue
        count = 1
        for size in shape:
            count *= int(size)
        total += count
    return total


def safetensors_header(path: Path) -> dict | None:
    """Read the JSON header of a safetensors file: 8 bytes of little-endian length, then the header itself."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return None
            return json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
