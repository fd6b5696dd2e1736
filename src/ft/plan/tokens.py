"""Count the tokens and trained tokens of the configured data, as `ft train` would see them, without torch.

Choice: importing transformers' tokenizer classes imports torch (measured: 4.5 s, and `torch` lands in sys.modules),
so `ft plan` renders the chat template itself with jinja2 and tokenizes with the `tokenizers` library from the
model's tokenizer.json. `TemplateTokenizer` offers the few tokenizer methods ft's data path calls, so the rows go
through the same reading, shape conversion, rendering, span masking and max_length handling as in `ft train`.
Counts are cached by a hash of the data files, tokenizer files and data settings, so a second plan is instant.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from ft.config import Config, DataSection
from ft.errors import FtError

# Above this many rows, the counts come from the first this many rows, scaled to the whole set.
SAMPLE_ROWS = 4000
# Characters per token when no tokenizer is available offline; measured 3.4 on the quickstart rows (SmolLM2).
CHARS_PER_TOKEN = 3.4
CACHE_VERSION = 2


@dataclass
class TokenCounts:
    """Token counts of one side (train or eval) of the data, per used row."""

    lengths: list[int]  # tokens of each used row (of the sample when `method` is "sampled")
    trained: list[int]  # trained tokens of each used row
    rows_used: int  # rows that ft train would use (scaled to the whole set when sampled)
    rows_read: int
    method: str  # "exact", "sampled" or "characters" (estimated without a tokenizer)
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    problems: int = 0
    first_problem: str | None = None
    from_cache: bool = False
    # (tokens before the first trained token, tokens of the first trained run) per used row: the prompt and the
    # first assistant turn, which the tool-call evaluation after training generates.
    first_turns: list[tuple[int, int]] = field(default_factory=list)

    @property
    def scale(self) -> float:
        return self.rows_used / len(self.lengths) if self.lengths else 0.0

    @property
    def tokens(self) -> int:
        return round(sum(self.lengths) * self.scale)

    @property
    def trained_tokens(self) -> int:
        return round(sum(self.trained) * self.scale)

    @property
    def trained_share(self) -> float:
        return sum(self.trained) / sum(self.lengths) if self.lengths else 0.0

    def summary(self) -> dict:
        return {
            "rows_read": self.rows_read, "rows_used": self.rows_used, "tokens": self.tokens,
            "trained_tokens": self.trained_tokens, "trained_share": round(self.trained_share, 4),
            "mean_row_tokens": round(sum(self.lengths) / len(self.lengths), 1) if self.lengths else 0.0,
            "max_row_tokens": max(self.lengths, default=0), "rows_cut_at_prompt_side": self.truncated,
            "rows_dropped": self.dropped, "bad_rows": self.problems, "counted": self.method,
            "from_cache": self.from_cache,
        }


class TemplateTokenizer:
    """The tokenizer interface that ft's data path uses: a Jinja chat template over a `tokenizers` backend."""

    def __init__(self, backend, chat_template, special_tokens: dict[str, str], added_tokens_decoder: dict):
        self.backend_tokenizer = backend
        self.chat_template = chat_template
        self.special_tokens = special_tokens
        self.added_tokens_decoder = added_tokens_decoder
        self.eos_token = special_tokens.get("eos_token")
        named = [backend.token_to_id(text) for text in special_tokens.values()]
        flagged = [token_id for token_id, token in added_tokens_decoder.items() if token.special]
        self.all_special_ids = sorted({token_id for token_id in named + flagged if token_id is not None})
        pad = special_tokens.get("pad_token") or self.eos_token
        self.pad_token_id = backend.token_to_id(pad) if pad else None
        self.templates: dict[bool, object] = {}

    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=False, **kwargs) -> str:
        if tokenize:
            raise ValueError("TemplateTokenizer renders text only; tokenize the result with __call__")
        # Keys whose value is None are dropped, as transformers does, because templates test for a missing key.
        plain = [{key: value for key, value in message.items() if value is not None} for message in messages]
        template = self.compiled(bool(tools))
        return template.render(messages=plain, tools=tools, documents=None,
                               add_generation_prompt=add_generation_prompt, **self.special_tokens, **kwargs)

    def compiled(self, with_tools: bool):
        if with_tools not in self.templates:
            source = self.chat_template
            if isinstance(source, dict):
                source = source.get("tool_use") if with_tools and "tool_use" in source else source.get("default")
                if source is None:
                    raise ValueError("the tokenizer's chat templates have no `default` entry")
            self.templates[with_tools] = jinja_environment().from_string(source)
        return self.templates[with_tools]

    def __call__(self, text, add_special_tokens: bool = False, return_offsets_mapping: bool = False, **kwargs) -> dict:
        if isinstance(text, str):
            encoding = self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens)
            return {"input_ids": encoding.ids, "offset_mapping": encoding.offsets}
        encodings = self.backend_tokenizer.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encodings], "offset_mapping": [e.offsets for e in encodings]}

    def convert_ids_to_tokens(self, token_id: int) -> str | None:
        return self.backend_tokenizer.id_to_token(token_id)


def model_tokenizer(files: dict[str, Path], chat_template_setting: str | None, where: str) -> TemplateTokenizer:
    """Build the model's own tokenizer from tokenizer.json, tokenizer_config.json and its chat template."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(files["tokenizer.json"]))
    backend.no_truncation()
    backend.no_padding()
    config = read_optional_json(files.get("tokenizer_config.json"))
    special_map = read_optional_json(files.get("special_tokens_map.json"))
    template = choose_template(files, config, chat_template_setting)
    if not template:
        raise FtError(f"model.name: {where!r} has no chat template. Set model.chat_template to a Jinja file "
                      "or template text (a ChatML template works for most base models).")
    special = special_token_strings({**special_map, **config})
    return TemplateTokenizer(backend, template, special, dict(backend.get_added_tokens_decoder()))


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_SPECIAL = {"<|im_start|>": 1, "<|im_end|>": 2}


class CharacterEncoding:
    """The parts of a `tokenizers.Encoding` that ft's data path reads."""

    def __init__(self, ids: list[int], offsets: list[tuple[int, int]]):
        self.ids = ids
        self.offsets = offsets
        self.starts = [start for start, _ in offsets]

    def char_to_token(self, position: int) -> int | None:
        index = bisect.bisect_right(self.starts, position) - 1
        if index >= 0 and self.offsets[index][0] <= position < self.offsets[index][1]:
            return index
        return None


class CharacterChunks:
    """A stand-in tokenizer backend: one token per CHARS_PER_TOKEN characters, ChatML markers as single tokens."""

    truncation = None
    padding = None

    def encode(self, text: str, add_special_tokens: bool = False) -> CharacterEncoding:
        ids, offsets, position = [], [], 0
        for piece in re.split(r"(<\|im_start\|>|<\|im_end\|>)", text):
            if piece in CHATML_SPECIAL:
                ids.append(CHATML_SPECIAL[piece])
                offsets.append((position, position + len(piece)))
            elif piece:
                count = max(1, round(len(piece) / CHARS_PER_TOKEN))
                bounds = [position + round(k * len(piece) / count) for k in range(count + 1)]
                ids.extend([100] * count)
                offsets.extend(zip(bounds[:-1], bounds[1:]))
            position += len(piece)
        return CharacterEncoding(ids, offsets)

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[CharacterEncoding]:
        return [self.encode(text) for text in texts]

    def token_to_id(self, text: str) -> int | None:
        return CHATML_SPECIAL.get(text)

    def id_to_token(self, token_id: int) -> str:
        return {v: k for k, v in CHATML_SPECIAL.items()}.get(token_id, "<chars>")


def character_tokenizer() -> TemplateTokenizer:
    """Build a tokenizer that estimates counts from characters, for a model whose tokenizer is not available offline."""
    special = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    added = {token_id: SimpleNamespace(content=text, special=True) for text, token_id in CHATML_SPECIAL.items()}
    return TemplateTokenizer(CharacterChunks(), CHATML_TEMPLATE, special, added)


def jinja_environment():
    """Build a sandboxed Jinja environment with the options, filters and globals that Hub chat templates rely on.

    The same settings as transformers 5 (trim_blocks, lstrip_blocks, loop controls, a `tojson` that keeps non-ASCII
    text and takes indent/separators/sort_keys, `raise_exception`, `strftime_now`, and a `{% generation %}` block
    that only marks assistant text).
    """
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[GenerationBlock, "jinja2.ext.loopcontrols"])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda pattern: datetime.now().strftime(pattern)
    return environment


def read_optional_json(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FtError(f"{path}: cannot read it as JSON ({err}). Re-download the model's tokenizer files.") from None
    return value if isinstance(value, dict) else {}


def special_token_strings(config: dict) -> dict[str, str]:
    """Return the special tokens a template may use (`bos_token`, `eos_token`, ...) as plain strings."""
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    return out


def choose_template(files: dict[str, Path], config: dict, setting: str | None):
    """Return the chat template: model.chat_template, else chat_template.jinja, else tokenizer_config.json's."""
    if setting:
        path = Path(setting)
        return path.read_text(encoding="utf-8") if path.is_file() else setting
    if "chat_template.jinja" in files:
        return files["chat_template.jinja"].read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        return {item.get("name"): item.get("template") for item in template if isinstance(item, dict)}
    return template


def count_data_tokens(cfg: Config, model_type: str, tokenizer_files: dict[str, Path]) -> dict[str, TokenCounts]:
    """Return the token counts of `train` (and `eval` when configured), from the cache when nothing changed."""
    from ft.data.render import find_end_token, probe_template
    from ft.model import ft_cache_dir
    from ft.outputs import write_json_atomic

    sides = ["train"] + (["eval"] if cfg.data.eval else [])
    usable = "tokenizer.json" in tokenizer_files
    key = cache_key(cfg, tokenizer_files if usable else {}, sides)
    cache_path = ft_cache_dir() / "plan" / "tokens" / f"{key}.json"
    cached = read_cache(cache_path, sides)
    if cached is not None:
        return cached

    if usable:
        tokenizer = model_tokenizer(tokenizer_files, cfg.model.chat_template, cfg.model.name)
        style = cfg.model.tool_call_style
    else:
        tokenizer = character_tokenizer()
        style = "auto" if cfg.model.tool_call_style == "template" else cfg.model.tool_call_style
    try:
        traits = probe_template(tokenizer, style, model_type, cfg.model.name)
        end_token_id = find_end_token(tokenizer)
    except ValueError as err:
        raise FtError(f"model.chat_template: {err}") from None
    method = "exact" if usable else "characters"
    counts = {side: count_side(cfg.data, tokenizer, traits, end_token_id, cfg.training.seed, side, method)
              for side in sides}
    write_json_atomic(cache_path, {side: asdict(value) for side, value in counts.items()})
    return counts


def count_side(data: DataSection, tokenizer, traits, end_token_id: int, seed: int, side: str, method: str) -> TokenCounts:
    """Run ft's own data path (read, convert, render, mask, fit to max_length) on one side of the data.

    A set of more than SAMPLE_ROWS rows is counted on its first SAMPLE_ROWS rows (after mixing, when several
    sources are mixed), scaled to the whole set.
    """
    from ft.data.prepare import prepare

    requested = data.max_rows if side == "train" else data.eval_max_rows
    limit = min(requested or SAMPLE_ROWS, SAMPLE_ROWS)
    limited = data.model_copy(update={"max_rows" if side == "train" else "eval_max_rows": limit})
    result = prepare(limited, tokenizer, traits, end_token_id, seed, side, strict=False)
    available = sum(result.rows_mixed.values()) if result.rows_mixed else sum(result.rows_read.values())
    wanted = min(available, requested) if requested else available
    sampled = wanted > limit
    # NOTE: the sample is the first rows, not a random draw: a file sorted by length skews the estimate.
    used = len(result.examples)
    return TokenCounts(
        lengths=[len(e.input_ids) for e in result.examples],
        trained=[e.trained_tokens for e in result.examples],
        rows_used=round(used * wanted / limit) if sampled else used,
        rows_read=sum(result.rows_read.values()),
        method="sampled" if sampled and method == "exact" else method,
        dropped=dict(result.dropped), truncated=result.truncated,
        problems=len(result.problems), first_problem=result.problems[0] if result.problems else None,
        first_turns=[first_turn(e.labels) for e in result.examples],
    )


def first_turn(labels: list[int]) -> tuple[int, int]:
    """Return (positions before the first trained label, length of the run of trained labels that starts there)."""
    from ft.data.prepare import IGNORE

    start = next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))
    end = next((i for i in range(start, len(labels)) if labels[i] == IGNORE), len(labels))
    return start, end - start


def cache_key(cfg: Config, tokenizer_files: dict[str, Path], sides: list[str]) -> str:
    """Hash everything the counts depend on: data files, tokenizer files, template, data settings and ft's data code."""
    import ft.data
    import ft.toolcalls
    from ft.data.prepare import source_list

    code = sorted(Path(ft.data.__file__).parent.glob("*.py")) + [Path(ft.toolcalls.__file__), Path(__file__)]
    parts = {
        "version": CACHE_VERSION,
        "code": [file_digest(path) for path in code],
        "data": cfg.data.model_dump(mode="json"),
        "style": cfg.model.tool_call_style,
        "template": fingerprint_text(cfg.model.chat_template),
        "seed": cfg.training.seed,
        "tokenizer": {name: file_digest(path) for name, path in sorted(tokenizer_files.items())},
    }
    for side in sides:
        value = cfg.data.train if side == "train" else cfg.data.eval
        split = cfg.data.split if side == "train" else cfg.data.eval_split
        parts[f"files_{side}"] = [source_fingerprint(s.path, s.split, s.revision)
                                  for s in source_list(value, split, cfg.data.messages_column)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def fingerprint_text(setting: str | None) -> str | None:
    if setting and Path(setting).is_file():
        return file_digest(Path(setting))
    return setting


def source_fingerprint(path_text: str, split: str | None, revision: str | None) -> str:
    path = Path(path_text).expanduser()
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode())
            digest.update(file_digest(item).encode())
        return digest.hexdigest()
    # NOTE: a Hub data set is identified by id, split and revision only. Without a pinned revision, rows changed
    # upstream are not seen until the cache entry is removed from ~/.cache/ft/plan/tokens.
    return f"hub:{path_text}:{split}:{revision}"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise FtError(f"{path}: cannot read the file ({err.strerror}).") from None
    return digest.hexdigest()


def read_cache(path: Path, sides: list[str]) -> dict[str, TokenCounts] | None:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        counts = {side: TokenCounts(**stored[side]) for side in sides}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or written by another version: count again
    for value in counts.values():
        value.from_cache = True
    return counts
