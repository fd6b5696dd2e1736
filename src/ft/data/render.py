"""Render conversations with the model's chat template and find the trained span of every assistant turn.

The trained span is found by rendering prefixes, not from generation markers in the template: the text that
`messages[:i+1]` adds to `messages[:i]` rendered with a generation prompt is assistant turn i, including the tokens
that end the turn. Templates that ignore `tool_calls` or `tools`, or that reject a role, get stated transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

from ft.data.shapes import Conversation, RowError
from ft.toolcalls import ToolCall, default_style, format_tool_calls, format_tools_prompt

PROBE_NAME = "ft_probe_tool_7f3a"


@dataclass
class TemplateTraits:
    """What a chat template does with tool calls, tools and roles, found by rendering probe conversations."""

    renders_tool_calls: bool
    renders_tools: bool
    accepts_system: bool
    accepts_tool_role: bool
    style: str  # "template" when the template writes the calls itself, else a style of ft.toolcalls


def probe_template(tokenizer, configured_style: str, model_type: str | None, name: str | None) -> TemplateTraits:
    call = {"type": "function", "function": {"name": PROBE_NAME, "arguments": {"x": 1}}}
    tool = {"type": "function", "function": {"name": PROBE_NAME, "description": "probe",
                                              "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
    user = {"role": "user", "content": "hi"}
    calls_text = try_render(tokenizer, [user, {"role": "assistant", "content": "", "tool_calls": [call]}])
    tools_text = try_render(tokenizer, [user], tools=[tool])
    traits = TemplateTraits(
        renders_tool_calls=bool(calls_text and PROBE_NAME in calls_text),
        renders_tools=bool(tools_text and PROBE_NAME in tools_text),
        accepts_system=try_render(tokenizer, [{"role": "system", "content": "s"}, user]) is not None,
        accepts_tool_role=try_render(tokenizer, [user, {"role": "assistant", "content": "", "tool_calls": [call]},
                                                 {"role": "tool", "content": "1"}]) is not None,
        style=configured_style,
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
    except Exception:  # jinja2 TemplateError and template-raised exceptions: the probe only asks "does it render"
        return None


def prepare_messages(conv: Conversation, traits: TemplateTraits) -> tuple[list[dict], list[dict] | None]:
    """Apply the transforms this template needs; return template-ready messages and the tools to pass it."""
    messages = [dict(m) for m in conv.messages]
    tools = conv.tools
    if traits.style != "template":
        messages = [calls_into_text(m, traits.style) for m in messages]
    if tools and not (traits.style == "template" and traits.renders_tools):
        messages = with_system_text(messages, format_tools_prompt(tools, "smollm2" if traits.style == "template" else traits.style))
        tools = None
    if not traits.accepts_tool_role:
        messages = [tool_as_user(m) for m in messages]
    if not traits.accepts_system:
        messages = fold_system(messages)
    return messages, tools


def calls_into_text(message: dict, style: str) -> dict:
    if message["role"] != "assistant" or not message.get("tool_calls"):
        return message
    calls = [ToolCall(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]
    text = format_tool_calls(calls, style)
    content = message.get("content") or ""
    return {"role": "assistant", "content": f"{content}\n{text}" if content.strip() else text}


def with_system_text(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{text}"}] + messages[1:]
    return [{"role": "system", "content": text}] + messages


def tool_as_user(message: dict) -> dict:
    """A template without a tool role gets tool results as a user turn, wrapped as Hermes-style templates do."""
    if message["role"] != "tool":
        return message
    return {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}


def fold_system(messages: list[dict]) -> list[dict]:
    """A template without a system role gets the system text at the start of the first user turn."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], messages[1:]
    for index, message in enumerate(rest):
        if message["role"] == "user":
            rest = list(rest)
            rest[index] = {"role": "user", "content": f"{system}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": system}] + rest


def render_with_spans(tokenizer, messages: list[dict], tools, train_on: str) -> tuple[str, list[tuple[int, int]]]:
    """Return the full text and the character spans to train on."""
    full = render(tokenizer, messages, tools, add_generation_prompt=False)
    if train_on == "all":
        return full, [(0, len(full))]
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], tools, add_generation_prompt=True) if index else ""
        through = render(tokenizer, messages[: index + 1], tools, add_generation_prompt=False)
        if not (full.startswith(before) and full.startswith(through) and len(through) > len(before)):
            raise RowError(f"the chat template renders turn {index} differently once later turns follow, so its "
                           "trained span cannot be located; set model.chat_template to a template that renders "
                           "earlier turns unchanged")
        spans.append((len(before), len(through)))
    if not spans:
        raise RowError("no assistant turn to train on (the row holds prompts only)")
    if train_on == "last_assistant":
        spans = spans[-1:]
    return full, spans


def render(tokenizer, messages: list[dict], tools, add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as err:  # jinja2.TemplateError or raise_exception() inside the template
        roles = ",".join(m["role"] for m in messages)
        raise RowError(f"the chat template rejected the conversation (roles {roles}): {err}") from None


def find_end_token(tokenizer) -> int:
    """Return the special token that ends an assistant turn (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, ...).

    Raise ValueError when the rendered assistant turn holds no special token after its text: such a template
    would never teach the model to stop.
    """
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "ft probe answer"}]
    text, spans = render_with_spans(tokenizer, messages, None, "assistant")
    start, end = spans[-1]
    answer_end = text.index("ft probe answer", start) + len("ft probe answer")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for token, (token_start, _) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if answer_end <= token_start < end and token in special:
            return token
    raise ValueError("the chat template ends an assistant turn with no special token, so the model would never "
                     "learn to stop; set model.chat_template to a template that closes turns with the EOS token")
