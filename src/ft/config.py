"""The one config schema: a YAML file in sections model, data, lora, training and output.

Every field is documented once, here; `ft config-help` and the error messages come from these descriptions.
Relative paths in a config are resolved against the current working directory, as the CLI was started.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ft.errors import FtError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop", "adamw_bnb_8bit",
              "paged_adamw_8bit", "paged_adamw_32bit", "lion_32bit", "lion_8bit")
ATTENTION_KERNELS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
REPORTERS = ("none", "all", "tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "neptune", "clearml", "dvclive")
MAX_ECHO = 80  # characters of a user's value or key repeated in an error message
DATA_SHAPES = ("auto", "messages", "sharegpt", "instruction", "prompt_completion", "text", "bfcl")
TOOL_CALL_STYLES = ("auto", "template", "smollm2", "hermes", "guide", "llama", "mistral", "pythonic")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    name: str = Field(description="Hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`), a local model folder, or a `.gguf` file.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) when `name` is a Hub id.")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Training precision. `auto`: bfloat16 where the device computes it natively (a GPU of "
        "compute capability 8.0 or newer, a CPU with AMX or AVX-512 BF16), else float32.")
    chat_template: str | None = Field(
        None, description="A Jinja chat template (file path or the text itself) for a model that has none, or to replace its own.")
    tool_call_style: Literal[TOOL_CALL_STYLES] = Field(  # type: ignore[valid-type]
        "auto", description="How assistant tool calls are written in the trained text. `auto`: the model's template "
        "when it renders `tool_calls`, else the family's documented style. `template` insists on the template.")
    attn_implementation: Literal[ATTENTION_KERNELS] = Field(  # type: ignore[valid-type]
        "sdpa", description="Attention kernel passed to transformers (`sdpa`, `eager`, `flash_attention_2`).")


class SourceSection(Section):
    path: str = Field(description="JSONL, JSON, CSV or Parquet file, a `save_to_disk` folder, or a Hub data set id.")
    split: str | None = Field(None, description="Split to read from a folder or Hub data set (default: `data.split`).")
    name: str | None = Field(None, description="Hub data set configuration name.")
    revision: str | None = Field(None, description="Hub data set revision.")
    weight: float = Field(1.0, gt=0, description="Share of the mixed rows taken from this source (weight / sum of "
                          "weights); the mix has as many rows as all sources together, small sources repeat.")
    messages_column: str | None = Field(None, description="Column holding the message list, when not auto-detected.")
    shape: Literal[DATA_SHAPES] | None = Field(None, description="Shape of this source's rows (default: data.shape).")  # type: ignore[valid-type]
    columns: dict[str, str] | None = Field(None, description="Column names of this source (default: data.columns).")


class DataSection(Section):
    train: Union[str, list[SourceSection]] = Field(
        description="Training data: a path or Hub id, or a list of sources with weights.")
    eval: Union[str, list[SourceSection], None] = Field(None, description="Held-out data for eval loss and tool-call evaluation.")
    split: str = Field("train", description="Split read from a folder or Hub data set for `data.train`.")
    eval_split: str = Field("validation", description="Split read from a folder or Hub data set for `data.eval`.")
    messages_column: str | None = Field(
        None, description="Column holding the chat messages (`messages`, `conversations` and `trace` are found without it).")
    tools_column: str = Field("tools", description="Column holding the tool definitions (a list, or a JSON string).")
    shape: Literal[DATA_SHAPES] = Field(  # type: ignore[valid-type]
        "auto", description="Shape of every row; `auto` detects it per row from the column names.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Column names of your data for the standard fields (messages, tools, system, "
        "history, instruction, input, output, prompt, completion, text, question, function), e.g. "
        "`{instruction: question, output: answer}`.")
    max_length: int = Field(2048, ge=16, description="Maximum training sequence length, in tokens.")
    overlong: Literal["truncate_prompt", "drop"] = Field(
        "truncate_prompt", description="What happens to a row longer than `max_length`: cut the start of the "
        "conversation while keeping the trained answer, or drop the row.")
    train_on: Literal["assistant", "last_assistant", "all"] = Field(
        "assistant", description="Which tokens carry loss: every assistant turn, the last one, or all tokens.")
    packing: bool = Field(True, description="Concatenate the rows of a micro-batch into one sequence with no padding; "
                          "rows never attend to each other.")
    max_rows: int | None = Field(None, ge=1, description="Use only the first N training rows (after mixing; no shuffle before the cut).")
    eval_max_rows: int | None = Field(None, ge=1, description="Use only the first N eval rows.")


class LoraSection(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator (`alpha / r` scales the update).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: Union[str, list[str]] = Field(
        "all-linear", description="`all-linear`, or a list of module names (`q_proj`, `v_proj`, ...).")


class TrainingSection(Section):
    method: Literal["lora", "qlora", "full"] = Field("lora", description="LoRA adapter, LoRA on a 4-bit base (QLoRA, needs a CUDA GPU), or full fine-tuning.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training rows (ignored when `max_steps` is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to run; overrides `epochs`.")
    batch_size: int = Field(8, ge=1, description="Rows per micro-batch on each device.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal[SCHEDULERS] = Field(  # type: ignore[valid-type]
        "cosine", description="transformers scheduler name (`cosine`, `linear`, `constant_with_warmup`, ...).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming up the learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    optimizer: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        "adamw_torch", description="transformers optimizer name.")
    seed: int = Field(42, description="Seed for data order, LoRA initialisation and dropout.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass to save memory.")
    log_every_steps: int = Field(1, ge=1, description="Optimizer steps between log lines and `metrics.jsonl` rows.")
    eval_every_steps: int | None = Field(None, ge=1, description="Optimizer steps between eval-loss passes (default: at the end only).")
    save_every_steps: int | None = Field(None, ge=1, description="Optimizer steps between checkpoints (default: none; a stop by SIGTERM still writes one).")
    save_every_minutes: float | None = Field(None, gt=0, description="Minutes between checkpoints, as well as or instead of save_every_steps.")
    tool_eval_rows: int = Field(20, ge=0, description="Rows of data.eval whose next assistant turn is generated and "
                                "scored for tool calls at the end of training (0: off); the metrics go into summary.json.")
    tool_eval_max_new_tokens: int = Field(128, ge=1, description="Cap on generated tokens per row in that evaluation.")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    report_to: Union[Literal[REPORTERS], list[Literal[REPORTERS]]] = Field(  # type: ignore[valid-type]
        "none", description="Trainer integrations: `none`, `tensorboard`, `wandb`, `trackio`.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice).")
    compile: bool = Field(False, description="Compile each decoder block with torch.compile: faster steps after a "
                          "slower first one (10% to 25% less time per step on a 2-core CPU; see docs/benchmarks.md). Needs a C++ compiler "
                          "(g++ or clang++) on a CPU, Triton on a GPU.")
    fsdp: Literal["off", "full_shard", "shard_grad_op"] = Field(
        "off", description="Shard the model over the processes of `ft train --nproc N` (FSDP) for models that do not "
        "fit one device; `off` is plain data parallel.")

    @field_validator("fsdp", mode="before")
    @classmethod
    def _fsdp_off(cls, value):
        # YAML reads an unquoted `off` as false, so `fsdp: off` would otherwise be rejected.
        return "off" if value is False else value


class OutputSection(Section):
    dir: str = Field("runs", description="Parent folder of the run folders, one per run.")
    run_name: str | None = Field(None, description="Run folder name (default: config file name plus a timestamp).")
    push_to_hub: bool = Field(False, description="Push the adapter and model card to `output.hub_repo` at the end.")
    hub_repo: str | None = Field(None, description="Hub model repo (`user/name`) for `push_to_hub`.")
    private: bool = Field(True, description="Create the Hub repo as private.")


class Config(Section):
    model: ModelSection = Field(description="The model to fine-tune; needs at least `name`.")
    data: DataSection = Field(description="The training data; needs at least `train` (a file, folder or Hub id).")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA adapter settings.")
    training: TrainingSection = Field(default_factory=TrainingSection, description="Optimisation and checkpoint settings.")
    output: OutputSection = Field(default_factory=OutputSection, description="Where the run folder goes, and the Hub push.")


@dataclass
class LoadedConfig:
    """A validated config, with the origin of every value: `file`, `override` or `default`."""

    config: Config
    path: Path
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Return the resolved config as `key = value  (origin)` lines."""
        lines = []
        for key, value in flatten(self.config.model_dump()).items():
            lines.append(f"  {key} = {value!r}  ({self.sources.get(key, 'default')})")
        return "\n".join(lines)

    def to_yaml(self) -> str:
        """Return the resolved config as YAML, each leaf followed by a comment naming its origin."""
        text = yaml.safe_dump(self.config.model_dump(), sort_keys=False, allow_unicode=True)
        out, stack = [], []
        for line in text.splitlines():
            stripped = line.lstrip(" ")
            depth = (len(line) - len(stripped)) // 2
            key = stripped.split(":", 1)[0]
            stack = stack[:depth] + [key]
            dotted = ".".join(stack)
            origin = self.sources.get(dotted)
            out.append(f"{line}  # {origin}" if origin and not line.endswith(":") else line)
        return "\n".join(out) + "\n"


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def load_config(path: str | Path, overrides: list[str] | None = None) -> LoadedConfig:
    """Read, override and validate a config file. Raise FtError listing every problem at once."""
    path = Path(path)
    if not path.is_file():
        raise FtError(f"{path}: config file not found. Pass the path of a YAML file, e.g. configs/quickstart.yaml.")
    text = read_text(path)
    tree, lines = parse_yaml(text, path)

    sources = {key: "file" for key in flatten(tree)}
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(tree, key, value)
        sources[key] = "override"

    try:
        config = Config.model_validate(tree)
    except ValidationError as err:
        raise FtError(format_problems(path, err, lines, sources)) from None
    problems = check_consistency(config)
    if problems:
        raise FtError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(
            f"  {line_label(lines, key)}{key}: {msg}" for key, msg in problems))
    return LoadedConfig(config=config, path=path, sources=sources)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FtError(f"{path}: not valid UTF-8 text (byte {err.start}). Save the config as UTF-8.") from None
    except OSError as err:
        raise FtError(f"{path}: cannot read the config ({err.strerror}).") from None


def parse_yaml(text: str, path: Path) -> tuple[dict, dict[str, int]]:
    """Parse YAML into a dict, plus the 1-based line of every key path (`training.max_steps` -> 12)."""
    try:
        node = yaml.compose(io.StringIO(text))
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise FtError(f"{path}:{where} invalid YAML ({problem}). Fix the syntax at that spot.") from None
    if tree is None:
        raise FtError(f"{path}: the config is empty. It needs at least `model.name` and `data.train`.")
    if not isinstance(tree, dict):
        raise FtError(f"{path}: the config must be a mapping of sections (model, data, lora, training, output), "
                      f"not a {type(tree).__name__}.")
    lines: dict[str, int] = {}
    collect_lines(node, "", lines)
    return tree, lines


def collect_lines(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        dotted = f"{prefix}{key_node.value}"
        lines[dotted] = key_node.start_mark.line + 1
        collect_lines(value_node, dotted + ".", lines)


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise FtError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.max_steps=20.")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise FtError(f"--set {item!r}: the key must be a dotted path such as training.max_steps.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def line_label(lines: dict[str, int], key: str) -> str:
    parts = key.split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line:
            return f"line {line}: "
        parts.pop()
    return ""


def format_problems(path: Path, err: ValidationError, lines: dict[str, int], sources: dict[str, str]) -> str:
    problems = []
    for item in err.errors():
        loc = [shorten(str(part)) for part in item["loc"]
               if not str(part).startswith(("function-", "list[", "str", "literal["))]
        key = ".".join(loc)
        origin = " (from --set)" if sources.get(key) == "override" else ""
        problems.append(f"  {line_label(lines, key)}{key}: {explain(item, loc)}{origin}")
    unique = list(dict.fromkeys(problems))
    return f"{path}: {len(unique)} problem(s):\n" + "\n".join(unique)


def explain(item: dict, loc: list[str]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        known = known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return f"unknown key.{hint} Known keys here: {', '.join(known)}."
    if kind == "missing":
        return f"required key is missing. {field_doc(loc)}"
    given = item.get("input")
    shown = shorten(repr(given)) if not isinstance(given, dict) else "a mapping"
    return f"{shorten(item['msg'], 300).rstrip('.')}, got {shown}. {field_doc(loc)}"


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def section_model(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def known_keys(loc: list[str]) -> list[str]:
    model = section_model(loc)
    return list(model.model_fields) if model else []


def field_doc(loc: list[str]) -> str:
    parent = section_model(loc[:-1])
    if parent is None or loc[-1] not in parent.model_fields:
        return ""
    return parent.model_fields[loc[-1]].description or ""


def check_consistency(config: Config) -> list[tuple[str, str]]:
    """Problems that involve several keys, each as (key, message with the fix)."""
    problems = []
    if config.output.push_to_hub and not config.output.hub_repo:
        problems.append(("output.hub_repo", "required when output.push_to_hub is true; set it to `your-name/model-name`."))
    if config.output.hub_repo and config.output.hub_repo.count("/") != 1:
        problems.append(("output.hub_repo", f"{config.output.hub_repo!r} is not a repo id; write it as `namespace/name`."))
    if config.training.method == "full" and config.lora.target_modules != "all-linear":
        problems.append(("lora.target_modules", "has no effect with training.method `full`; remove it or use `lora`."))
    if config.training.compile and config.training.fsdp != "off":
        # NOTE: ft compiles the blocks before the Trainer wraps them in FSDP; no test here runs that order.
        problems.append(("training.compile", "is not supported together with training.fsdp; set training.compile: "
                         "false, or training.fsdp: off."))
    return problems


def schema_help() -> str:
    """Return every config key with its type, default and description, for `ft config-help`."""
    out = []
    for section, info in Config.model_fields.items():
        out.append(f"{section}:")
        model = info.annotation
        for name, fld in model.model_fields.items():  # type: ignore[union-attr]
            default = "required" if fld.is_required() else f"default {fld.get_default(call_default_factory=True)!r}"
            out.append(f"  {name} ({default}): {fld.description}")
    return "\n".join(out)
