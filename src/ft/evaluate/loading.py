"""Find and load what `ft eval`, `ft chat` and `ft generate` run: a run folder, an adapter folder or a base model.

A run folder (`runs/NAME`) contains `adapter/` with `ft_model.json`, which names the base model, the tool call style
and the end-of-turn token that training used. The tokenizer (with the chat template training used) is read from the
adapter folder, so prompts render as they did in training. A plain model folder, Hub id or .gguf file is evaluated as
a base model, with its family's tool call style.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError
from ft.model import ModelSource

FT_MODEL_FILE = "ft_model.json"
PEFT_CONFIG_FILE = "adapter_config.json"


@dataclass
class ModelTarget:
    """Sources of a model's weights, adapter and tokenizer, found without loading weights.

    kind is "run" (a run folder), "adapter" (an adapter or fully fine-tuned folder written by ft, or any PEFT adapter)
    or "model" (a base model). For kind "model", base and tokenizer_source are the same. adapter_dir is set when the
    weights are a PEFT adapter on top of base, and full_model_dir when training saved all weights there instead.
    """

    name: str
    kind: str
    base: ModelSource
    tokenizer_source: ModelSource
    tool_call_style: str = "auto"
    end_token_id: int | None = None
    run_dir: Path | None = None
    adapter_dir: Path | None = None
    full_model_dir: Path | None = None

    @property
    def label(self) -> str:
        """The column name in reports: "tuned" for fine-tuned weights, "base" for a base model."""
        return "base" if self.kind == "model" else "tuned"


@dataclass
class LoadedModel:
    """A model ready to generate, with the tokenizer, template traits and end-of-turn token to use with it."""

    target: ModelTarget
    model: object
    tokenizer: object
    traits: object
    end_token_id: int


def find_target(name: str) -> ModelTarget:
    """Work out what name points at. Raise FtError with the fix when it is neither a run, an adapter nor a model."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / "adapter" / FT_MODEL_FILE).is_file():
        return ft_adapter_target(name, path / "adapter", run_dir=path)
    if path.is_dir() and (path / FT_MODEL_FILE).is_file():
        run_dir = path.parent if (path.parent / "config.yaml").is_file() else None
        return ft_adapter_target(name, path, run_dir)
    if path.is_dir() and (path / PEFT_CONFIG_FILE).is_file():
        return peft_adapter_target(name, path)
    if path.is_dir() and (path / "checkpoints").is_dir() and not (path / "config.json").is_file():
        raise FtError(f"{name}: this run folder has no adapter/{FT_MODEL_FILE}, so training has not finished. "
                      f"Wait for `ft train` to end, or resume it with `ft train CONFIG --resume`.")
    if not path.exists() and path.parent.name and path.parent.is_dir():
        # `runs/NAME` is also a valid Hub id, but an existing `runs` folder shows that a local path was meant.
        raise FtError(f"{name}: folder not found in {path.parent}. Give a run folder (runs/NAME, holding "
                      f"adapter/{FT_MODEL_FILE}), a model folder, a .gguf file or a Hub model id.")
    source = resolve_base(name, "MODEL_OR_RUN")
    return ModelTarget(name, "model", source, source)


def ft_adapter_target(name: str, adapter_dir: Path, run_dir: Path | None) -> ModelTarget:
    info = read_ft_model_file(adapter_dir / FT_MODEL_FILE)
    base = base_source(info, adapter_dir / FT_MODEL_FILE)
    tokenizer_source = ModelSource(str(adapter_dir), adapter_dir, origin="local")
    is_peft = (adapter_dir / PEFT_CONFIG_FILE).is_file()
    if not is_peft and not (adapter_dir / "config.json").is_file():
        raise FtError(f"{adapter_dir}: contains neither {PEFT_CONFIG_FILE} (a LoRA adapter) nor config.json (fully "
                      "fine-tuned weights). The folder is incomplete; run `ft train` again.")
    return ModelTarget(
        name, "run" if run_dir else "adapter", base, tokenizer_source,
        tool_call_style=info.get("tool_call_style") or "auto", end_token_id=info.get("end_token_id"),
        run_dir=run_dir, adapter_dir=adapter_dir if is_peft else None,
        full_model_dir=None if is_peft else adapter_dir,
    )


def read_ft_model_file(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FtError(f"{path}: cannot read ({err}). The file is written by `ft train`; train again to restore it.") from None
    if not isinstance(info, dict) or not info.get("base_model"):
        raise FtError(f"{path}: missing `base_model`. The file is written by `ft train`; train again to restore it.")
    return info


def base_source(info: dict, info_path: Path) -> ModelSource:
    """Return the base model of an ft adapter: the folder training read when it still exists, else the named model."""
    base_model = info["base_model"]
    base_folder = Path(info.get("base_folder") or "")
    if info.get("base_folder") and (base_folder / "config.json").is_file() and not base_model.endswith(".gguf"):
        return ModelSource(base_model, base_folder, origin=info.get("origin") or "local")
    return resolve_base(base_model, f"{info_path} base_model")


def peft_adapter_target(name: str, adapter_dir: Path) -> ModelTarget:
    """Build the target of a PEFT adapter saved by another tool, whose config names the base model.

    The tool call style is the base model family's, because nothing records the one used in training.
    """
    try:
        config = json.loads((adapter_dir / PEFT_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FtError(f"{adapter_dir / PEFT_CONFIG_FILE}: cannot read ({err}).") from None
    base_model = config.get("base_model_name_or_path")
    if not base_model:
        raise FtError(f"{adapter_dir / PEFT_CONFIG_FILE}: no `base_model_name_or_path`, so the base model is unknown.")
    base = resolve_base(base_model, f"{adapter_dir / PEFT_CONFIG_FILE} base_model_name_or_path")
    has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
    tokenizer_source = ModelSource(str(adapter_dir), adapter_dir, origin="local") if has_tokenizer else base
    return ModelTarget(name, "adapter", base, tokenizer_source, adapter_dir=adapter_dir)


def resolve_base(name: str, argument_name: str) -> ModelSource:
    """resolve_model with a message that names the argument at fault instead of the config key."""
    from ft.model import resolve_model

    try:
        return resolve_model(name)
    except FtError as err:
        detail = str(err).removeprefix("model.name: ")
        raise FtError(f"{argument_name}: {detail} A run folder (runs/NAME) contains adapter/{FT_MODEL_FILE}, and a "
                      "model folder contains config.json.") from None


def default_output_dir(target: ModelTarget) -> Path:
    """Return `<run>/eval` for a run, else `eval-<timestamp>` in the current folder."""
    if target.run_dir is not None:
        return target.run_dir / "eval"
    return Path(f"eval-{time.strftime('%Y%m%d-%H%M%S')}")


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer and template, before any weights load


def load_tokenizer_traits(target: ModelTarget, tool_call_style: str | None = None):
    """Load the tokenizer, probe its chat template and find the end-of-turn token.

    tool_call_style overrides the style of the target (the one training used, or "auto" for base models).
    Returns (tokenizer, traits, end_token_id). Raise FtError when the chat template cannot be used.
    """
    from ft.data.render import find_end_token, probe_template
    from ft.model import load_tokenizer, read_model_config

    tokenizer = load_tokenizer(target.tokenizer_source)
    model_type = read_model_config(target.base).model_type
    style = tool_call_style or target.tool_call_style
    try:
        traits = probe_template(tokenizer, style, model_type, target.base.name)
    except ValueError as err:
        raise FtError(f"{target.name}: {err}") from None
    end_token_id = target.end_token_id
    if end_token_id is None:
        try:
            end_token_id = find_end_token(tokenizer)
        except ValueError:
            # A template without an end-of-turn token still stops at EOS.
            end_token_id = tokenizer.eos_token_id
    return tokenizer, traits, end_token_id


def check_style_override(target: ModelTarget, tool_call_style: str | None) -> None:
    """Raise FtError when --tool-call-style is given for fine-tuned weights, which keep the style they learned."""
    if tool_call_style and target.kind != "model":
        raise FtError(f"--tool-call-style: {target.name} is fine-tuned, so it always gets the tool call style it was "
                      "trained with. Leave out --tool-call-style.")


# ---------------------------------------------------------------------------------------------------------------
# Weights


def resolve_dtype(precision: str):
    """choose_dtype with a message that names --precision instead of the config key."""
    from ft.model import choose_dtype

    try:
        return choose_dtype(precision)
    except FtError as err:
        raise FtError(f"--precision {precision}: {str(err).removeprefix('model.precision: ')}") from None


def load_base_weights(target: ModelTarget, dtype):
    """Load the weights of the base model, or the fully fine-tuned weights when the target has them."""
    from ft.model import load_model

    if target.full_model_dir is not None:
        return load_model(ModelSource(str(target.full_model_dir), target.full_model_dir, origin="local"), dtype, "sdpa")
    return load_model(target.base, dtype, "sdpa")


def attach_adapter(model, target: ModelTarget):
    """Wrap the base model with the target's PEFT adapter, or return it unchanged when the target has none."""
    if target.adapter_dir is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(target.adapter_dir))


def load_for_generation(name: str, precision: str = "auto", tool_call_style: str | None = None) -> LoadedModel:
    """Load a run, adapter or model with everything needed to generate, for `ft chat` and `ft generate`."""
    target = find_target(name)
    check_style_override(target, tool_call_style)
    dtype = resolve_dtype(precision)
    tokenizer, traits, end_token_id = load_tokenizer_traits(target, tool_call_style)
    model = attach_adapter(load_base_weights(target, dtype), target)
    model.eval()
    return LoadedModel(target, model, tokenizer, traits, end_token_id)
