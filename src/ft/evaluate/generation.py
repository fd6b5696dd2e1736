"""Generate assistant turns with transformers, batched with left padding, or streamed for the chat.

Generation is greedy unless a temperature is given. It stops at the end-of-turn token that training taught the model
to write (and at the tokenizer's EOS token), or after max_new_tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("ft")


@dataclass
class Generation:
    """One generated turn: its text up to the stop token, the new token count, and whether it ended by itself.

    ended is True when a stop token was generated within max_new_tokens, and False when the cap cut it off.
    new_tokens counts the stop token when there is one.
    """

    text: str
    new_tokens: int
    ended: bool


def stop_token_ids(tokenizer, end_token_id: int | None) -> list[int]:
    """Return the token ids that end a turn: the end-of-turn token, then the tokenizer's EOS when it differs."""
    ids = [end_token_id] if end_token_id is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the tokenizer has no EOS token and no end-of-turn token was given, so generation cannot stop")
    return ids


def generate_batched(model, tokenizer, prompts: list[list[int]], stop_ids: list[int], max_new_tokens: int,
                     batch_size: int, label: str = "model") -> list[Generation]:
    """Generate greedily for each prompt (token ids) and return the generations in the order of prompts.

    Prompts are sorted by length, longest first, so that each batch contains similar lengths (little padding) and the
    largest batch runs first, where a memory error shows at once. Logs one progress line per batch.
    """
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    results: list[Generation | None] = [None] * len(prompts)
    started = time.perf_counter()
    new_tokens = 0
    for batch_start in range(0, len(order), batch_size):
        batch = order[batch_start: batch_start + batch_size]
        generations = generate_batch(model, tokenizer, [prompts[index] for index in batch], stop_ids, max_new_tokens)
        for index, generation in zip(batch, generations):
            results[index] = generation
            new_tokens += generation.new_tokens
        elapsed_s = time.perf_counter() - started
        done = batch_start + len(batch)
        log.info("eval %s: %d/%d rows, %.0f s, %.1f new tokens/s", label, done, len(prompts), elapsed_s,
                 new_tokens / max(elapsed_s, 1e-9))
    return results  # type: ignore[return-value]


def generate_batch(model, tokenizer, prompts: list[list[int]], stop_ids: list[int], max_new_tokens: int,
                   temperature: float = 0.0, streamer=None, stopping_criteria=None) -> list[Generation]:
    """Generate one turn for each prompt of a single batch, padded on the left."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    longest = max(len(prompt) for prompt in prompts)
    input_ids = [[pad_id] * (longest - len(prompt)) + prompt for prompt in prompts]
    attention_mask = [[0] * (longest - len(prompt)) + [1] * len(prompt) for prompt in prompts]
    device = next(model.parameters()).device
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(
                input_ids=torch.tensor(input_ids, device=device),
                attention_mask=torch.tensor(attention_mask, device=device),
                max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id, use_cache=True,
                streamer=streamer, stopping_criteria=stopping_criteria, **sampling,
            )
    finally:
        model.train(was_training)
    return [decode_generation(tokenizer, row[longest:].tolist(), stop_ids) for row in output]


def decode_generation(tokenizer, new_ids: list[int], stop_ids: list[int]) -> Generation:
    """Cut the new tokens at the first stop token and decode the rest, keeping special tokens in the text."""
    stop_positions = [position for position, token in enumerate(new_ids) if token in stop_ids]
    if stop_positions:
        end = stop_positions[0]
        return Generation(tokenizer.decode(new_ids[:end], skip_special_tokens=False), end + 1, True)
    return Generation(tokenizer.decode(new_ids, skip_special_tokens=False), len(new_ids), False)


def generate_streaming(model, tokenizer, prompt: list[int], stop_ids: list[int], max_new_tokens: int,
                       temperature: float, on_text: Callable[[str], None]) -> Generation:
    """Generate one turn, passing each piece of decoded text to on_text as it is produced, and return the turn.

    Generation runs in a thread while this thread reads transformers' TextIteratorStreamer, which skips the prompt
    and special tokens, so the end-of-turn token is not shown. Ctrl-C stops the turn early and returns what was
    generated so far, with ended=False.
    """
    from threading import Event, Thread

    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    interrupted = Event()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["generation"] = generate_batch(model, tokenizer, [prompt], stop_ids, max_new_tokens, temperature,
                                                   streamer, stop_when_set(interrupted))[0]
        except BaseException as error:  # re-raised in the calling thread below
            outcome["error"] = error
            streamer.end()

    thread = Thread(target=work, daemon=True)
    thread.start()
    try:
        for piece in streamer:
            on_text(piece)
    except KeyboardInterrupt:
        interrupted.set()
        for _ in streamer:
            pass
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["generation"]


def stop_when_set(event):
    """Return stopping criteria for model.generate that end every row once the event is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopWhenSet()])
