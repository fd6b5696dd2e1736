"""Render conversations with the model's chat template and find the trained span of every assistant turn.

The trained span is found by rendering prefixes, not from `{% generation %}` markers in the template, which SmolLM2's
template, like most, lacks. The text that `messages[:i+1]` adds to `messages[:i]` rendered with a generation prompt
is assistant turn i, including the tokens that end the turn. Templates that ignore `tool_calls` or `tools`,
or that reject a role, get the stated transforms of `prepare_messages`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ft.data.shapes import Conversation, RowError
from ft.toolcalls import ToolCall, default_style, format_tool_calls, format_tools_prompt

PROBE_NAME = "ft_probe_tool_7f3a"
NO_ASSISTANT = "no assistant turn"


@dataclass
class TemplateTraits:
    """Behaviour of a chat template with tool calls, tools and roles, found by rendering probe conversations."""

    renders_tool_calls: bool
    renders_tools: bool
    accepts_system: bool
    accepts_tool_role: bool
    style: str  # "template" when the template writes the calls itself, else a style of ft.toolcalls
    accepts_repeated_role: bool = True  # False for templates that require user and assistant turns to alternate


def probe_template(tokenizer, configured_style: str, model_type: str | None, name: str | None) -> TemplateTraits:
    """Render probe conversations to learn what the template supports, and choose the tool-call style.

    Raise ValueError when model.tool_call_style is `template` but the template does not render tool calls.
    """
    call = {"type": "function", "function": {"name": PROBE_NAME, "arguments": {"x": 1}}}
    parameters = {"type": "object", "properties": {"x": {"type": "integer"}}}
    tool = {"type": "function", "function": {"name": PROBE_NAME, "description": "probe", "parameters": parameters}}
    user = {"role": "user", "content": "hi"}
    answer = {"role": "assistant", "content": "ok"}
    calls_text = try_render(tokenizer, [user, {"role": "assistant", "content": "", "tool_calls": [call]}])
    tools_text = try_render(tokenizer, [user], tools=[tool])
    traits = TemplateTraits(
        renders_tool_calls=bool(calls_text and PROBE_NAME in calls_text),
        renders_tools=bool(tools_text and PROBE_NAME in tools_text),
        accepts_system=try_render(tokenizer, [{"role": "system", "content": "s"}, user]) is not None,
        accepts_tool_role=try_render(tokenizer, [user, {"role": "assistant", "content": "", "tool_calls": [call]},
                                                 {"role": "tool", "content": "1"}]) is not None,
        style=configured_style,
        accepts_repeated_role=try_render(tokenizer, [user, user, answer]) is not None,
    )
    if configured_style == "auto":
        traits.style = "template" if traits.renders_tool_calls else default_style(model_type, name)
    if traits.style == "template" and not traits.renders_tool_calls:
        raise ValueError("model.tool_call_style is `template` but this chat template does not render tool_calls; "
                         "use `auto` or a named style such as `hermes`")
    return traits


def try_render(tokenizer, messages: list[dict], tools=None) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    except Exception:  # jinja2 TemplateError and template-raised exceptions: the probe only checks whether it renders
        return None


def prepare_messages(conv: Conversation, traits: TemplateTraits) -> tuple[list[dict], list[dict] | None]:
    """Apply the transforms this template needs; return template-ready messages and the tools to pass it.

    - A template that ignores `tool_calls`: calls are written into the assistant text in `traits.style`.
    - A template that ignores `tools`: the tools go into the system message, described in that style.
    - No tool role: tool results become user turns inside `<tool_response>` tags.
    - No system role: the system text opens the first user turn.
    - Roles must alternate: consecutive turns of one role are merged into one.
    """
    messages = [dict(m) for m in conv.messages]
    tools = conv.tools
    if traits.style != "template":
        messages = [calls_into_text(m, traits.style) for m in messages]
    if tools and not (traits.style == "template" and traits.renders_tools):
        # A template that writes calls itself but ignores `tools` gets the Hermes description, the most common one.
        described_style = "hermes" if traits.style == "template" else traits.style
        messages = with_system_text(messages, format_tools_prompt(tools, described_style))
        tools = None
    if not traits.accepts_tool_role:
        messages = [tool_as_user(m) for m in messages]
    if not traits.accepts_system:
        messages = fold_system(messages)
    if not traits.accepts_repeated_role:
        messages = merge_repeated_roles(messages)
    return messages, tools


def calls_into_text(message: dict, style: str) -> dict:
    """Write an assistant message's tool calls after its content, in the given style of ft.toolcalls."""
    if message["role"] != "assistant" or not message.get("tool_calls"):
        return message
    calls = [ToolCall(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]
    try:
        text = format_tool_calls(calls, style)
    except ValueError as err:  # pythonic style cannot write names or values that are not Python
        raise RowError(f"tool call cannot be written in {style} style ({err}); set model.tool_call_style") from None
    content = message.get("content") or ""
    return {"role": "assistant", "content": f"{content}\n{text}" if content.strip() else text}


def with_system_text(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{text}"}] + messages[1:]
    return [{"role": "system", "content": text}] + messages


def tool_as_user(message: dict) -> dict:
    """Turn a tool result into a user turn inside `<tool_response>` tags, as Hermes-style templates write it."""
    if message["role"] != "tool":
        return message
    return {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}


def fold_system(messages: list[dict]) -> list[dict]:
    """Move the system text to the start of the first user turn, for templates without a system role."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], messages[1:]
    for index, message in enumerate(rest):
        if message["role"] == "user":
            rest = list(rest)
            rest[index] = {"role": "user", "content": f"{system}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": system}] + rest


def merge_repeated_roles(messages: list[dict]) -> list[dict]:
    """Merge consecutive turns of one role (two tool results, say) for templates that require alternation."""
    merged: list[dict] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            previous = dict(merged[-1])
            separator = "\n" if message["role"] == "assistant" else "\n\n"
            parts = [text for text in (previous.get("content") or "", message.get("content") or "") if text]
            previous["content"] = separator.join(parts)
            if message.get("tool_calls"):
                previous["tool_calls"] = list(previous.get("tool_calls") or []) + list(message["tool_calls"])
            merged[-1] = previous
        else:
            merged.append(message)
    return merged


def render_with_spans(tokenizer, messages: list[dict], tools, train_on: str) -> tuple[str, list[tuple[int, int]]]:
    """Return the full text and the character spans to train on.

    Raise RowError for a row with no assistant turn to train on, or when the template renders an assistant turn in
    a way that cannot be located in the full text.
    """
    full = render(tokenizer, messages, tools, add_generation_prompt=False)
    if train_on == "all":
        return full, [(0, len(full))]
    spans: list[tuple[int, int]] = []
    opening_assistant = False
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if index == 0:
            # No prompt precedes it (a greeting that opens the chat), so it stays as context and is not trained.
            opening_assistant = True
            continue
        spans.append(assistant_span(tokenizer, messages, tools, index, full, spans[-1][1] if spans else 0))
    if not spans:
        reason = ""
        if opening_assistant:
            reason = " (its only assistant turn opens the conversation, with no prompt before it)"
        raise RowError(f"{NO_ASSISTANT} to train on{reason}")
    if train_on == "last_assistant":
        spans = spans[-1:]
    return full, spans


def assistant_span(tokenizer, messages: list[dict], tools, index: int, full: str, after: int) -> tuple[int, int]:
    """Return the character span of assistant turn `index` in `full`, searching at or after `after`."""
    before = render(tokenizer, messages[:index], tools, add_generation_prompt=True)
    through = full if index == len(messages) - 1 else render(tokenizer, messages[: index + 1], tools,
                                                             add_generation_prompt=False)
    if through.startswith(before) and len(through) > len(before):
        if full.startswith(through):
            return len(before), len(through)
        # Some templates render earlier turns differently once later turns follow (Mistral moves the tool list
        # before the last user turn): the turn's own text is then searched for in the full text.
        turn_text = through[len(before):]
        start = full.find(turn_text, after)
        if start >= 0:
            return start, start + len(turn_text)
    raise RowError(f"the chat template renders assistant turn {index} differently once later turns follow, so "
                   "its trained span cannot be located; set model.chat_template to a template that renders "
                   "each turn the same whatever follows it")


def render_text_row(tokenizer, text: str) -> tuple[str, list[tuple[int, int]]]:
    """Plain-text rows are trained as they are, without the chat template, followed by the EOS token."""
    full = text + (tokenizer.eos_token or "")
    return full, [(0, len(full))]


def render(tokenizer, messages: list[dict], tools, add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as err:  # jinja2.TemplateError or raise_exception() inside the template
        roles = ",".join(m["role"] for m in messages)
        raise RowError(f"the chat template rejected the conversation (roles {roles}): {err}") from None


def find_end_token(tokenizer) -> int:
    """Return the special token that ends an assistant turn (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, ...).

    Raise ValueError when the rendered assistant turn contains no special token after its text: such a template
    would never teach the model to stop.
    """
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "ft probe answer"}]
    try:
        text, spans = render_with_spans(tokenizer, messages, None, "assistant")
    except RowError as err:
        raise ValueError(f"the chat template cannot render a plain user/assistant exchange ({err})") from None
    start, end = spans[-1]
    answer_end = text.index("ft probe answer", start) + len("ft probe answer")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for token, (token_start, _) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if answer_end <= token_start < end and token in special:
            return token
    raise ValueError("the chat template ends an assistant turn with no special token, so the model would never "
                     "learn to stop; set model.chat_template to a template that closes turns with the EOS token")
