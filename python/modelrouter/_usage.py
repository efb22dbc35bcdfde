"""Token sizes of OpenAI-style requests and answers, for admission against token limits (the
routed SDK clients, the gateway, the LiteLLM strategy).

Before a call the prompt is only estimated: about 4 characters a token (OpenAI's rule of
thumb for English text) plus 4 tokens of framing per chat message; the output reserved is the
request's ``max_completion_tokens`` / ``max_tokens`` (0 when unset: nothing is reserved for
it). After the call the answer's ``usage`` gives the real figures, which reconcile the TPM
window (``InFlight.set_usage``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
# Past this many characters the estimate stops reading (a hostile body cannot make it slow).
_MAX_CHARS = 10_000_000


def _chars(value: Any, budget: int = _MAX_CHARS) -> int:
    """Characters of text in a prompt, message content or embedding input (strings, lists of
    strings or of content parts with ``text``); token-id lists count one token each."""
    if isinstance(value, str):
        return min(len(value), budget)
    if isinstance(value, list):
        total = 0
        for item in value:
            if total >= budget:
                break
            if isinstance(item, int):
                total += CHARS_PER_TOKEN  # already a token id
            elif isinstance(item, Mapping):
                total += _chars(item.get("text"), budget - total)
            else:
                total += _chars(item, budget - total)
        return total
    return 0


def estimate(body: Mapping[str, Any]) -> tuple[int, int]:
    """(prompt tokens, max output tokens) of a chat/completions/embeddings request body."""
    chars, framing = 0, 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                chars += _chars(message.get("content"))
                framing += TOKENS_PER_MESSAGE
    chars += _chars(body.get("prompt")) + _chars(body.get("input"))
    prompt = -(-chars // CHARS_PER_TOKEN) + framing
    out = body.get("max_completion_tokens", body.get("max_tokens"))
    max_output = out if isinstance(out, int) and not isinstance(out, bool) and out > 0 else 0
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        max_output *= n
    return prompt, max_output


def usage_of(answer: Any) -> tuple[int, int] | None:
    """(prompt tokens, completion tokens) of an answer's ``usage`` (an SDK object, a mapping,
    or a JSON body as bytes), or None when it has none."""
    if isinstance(answer, (bytes, bytearray)):
        try:
            answer = json.loads(answer)
        except ValueError:
            return None
    usage = answer.get("usage") if isinstance(answer, Mapping) else getattr(answer, "usage", None)
    if usage is None:
        return None
    get = usage.get if isinstance(usage, Mapping) else lambda k: getattr(usage, k, None)
    prompt, completion = get("prompt_tokens"), get("completion_tokens")
    if not isinstance(prompt, int) or isinstance(prompt, bool) or prompt < 0:
        return None
    if not isinstance(completion, int) or isinstance(completion, bool) or completion < 0:
        completion = 0  # embeddings report no completion
    return prompt, completion


def usage_in_stream_tail(tail: bytes) -> tuple[int, int] | None:
    """The usage of a server-sent-event stream, from its last events (the chunk a stream with
    ``stream_options.include_usage`` ends with), or None."""
    at = tail.rfind(b'"usage"')
    if at < 0:
        return None
    start = tail.rfind(b"data:", 0, at)
    end = tail.find(b"\n", at)
    if start < 0:
        return None
    line = tail[start + 5 : end if end >= 0 else len(tail)].strip()
    return usage_of(bytes(line))


def report(flight: Any, usage: tuple[int, int] | None) -> None:
    """Reconciles the flight's token account with what the provider counted."""
    if usage is not None:
        flight.set_usage(*usage)
