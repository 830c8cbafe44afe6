"""Fitting a conversation into the LLM's context window, by a stated rule.

`NextGPTModel.generate` applies `fit_to_context`, so every front end (chat, eval, the Python
API, servers) gets the same behaviour. The prompt may take at most ``context - max_new_tokens``
positions, where ``context`` is the LLM's ``max_position_embeddings`` and each media input counts
as the positions its embedding takes. A longer prompt is shortened:

1. the oldest exchanges (a user turn and the answer after it, with their media) are dropped, one
   at a time, until the prompt fits; the last user message is always kept;
2. if the last user message alone is still too long, its text is cut at the end so that it
   fits; its media are kept.

A `nextgpt.errors.PromptTruncatedWarning` says what was dropped, and the answer's ``notes``
repeat it. When the media of the last message alone do not fit, that is a `ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from nextgpt.errors import ConfigError
from nextgpt.templates import Turn

T = TypeVar("T")


def fit_to_context(
    turns: list[Turn],
    media: Sequence[T],
    placeholder: re.Pattern[str],
    length_of: Callable[[list[Turn], list[T]], int],
    budget: int,
) -> tuple[list[Turn], list[T], str | None]:
    """Shorten ``turns`` (and drop the ``media`` of dropped turns) until ``length_of`` them is at
    most ``budget`` positions, by the rule of this module.

    Args:
        turns: the conversation, ending with the user's message.
        media: one item per placeholder in ``turns``, in order of appearance.
        placeholder: matches any modality's placeholder in a turn's text.
        length_of: positions the packed prompt of ``(turns, media)`` takes.
        budget: the most positions the prompt may take.

    Returns:
        ``(turns, media, note)``; ``note`` is None when nothing was dropped, else it says what.
    """
    media = list(media)
    length = original = length_of(turns, media)
    if length <= budget:
        return turns, media, None
    actions: list[str] = []
    dropped = 0
    while length > budget and len(turns) > 1:
        count = 2 if len(turns) > 2 and turns[1].role == "assistant" else 1
        media = media[sum(len(placeholder.findall(t.text)) for t in turns[:count]) :]
        turns = turns[count:]
        dropped += count
        length = length_of(turns, media)
    if dropped:
        actions.append(f"dropped the {dropped} oldest turn(s)")
    if length > budget:
        turns, cut, total = _cut_last_text(turns, media, placeholder, length_of, budget)
        actions.append(f"cut the last message's text to its first {cut} of {total} characters")
    note = f"the prompt takes {original} positions, more than the {budget} the context allows: {'; '.join(actions)}"
    return turns, media, note


def _cut_last_text(
    turns: list[Turn],
    media: list[T],
    placeholder: re.Pattern[str],
    length_of: Callable[[list[Turn], list[T]], int],
    budget: int,
) -> tuple[list[Turn], int, int]:
    """The last turn's text cut at the end (its placeholders kept) to the longest prefix that
    fits; returns ``(turns, kept characters, all characters)``."""
    last = turns[-1]
    text = last.text
    spans = [m.span() for m in placeholder.finditer(text)]

    def cut(at: int) -> list[Turn]:
        for start, end in spans:  # never split a placeholder
            if start < at < end:
                at = start
        kept = [text[:at].rstrip()] + [text[s:e] for s, e in spans if s >= at]
        return [*turns[:-1], Turn(role=last.role, text=" ".join(p for p in kept if p))]

    def fits(at: int) -> bool:
        return length_of(cut(at), media) <= budget

    if not fits(0):
        raise ConfigError(
            f"the last message's media alone take more than the {budget} positions the LLM's context allows "
            "(lower max_new_tokens or send fewer media)"
        )
    # gallop up from a few characters per position, then halve: only about as much text as
    # fits is ever tokenised, however long the message
    low, high, probe = 0, len(text), min(len(text), 4 * budget)
    while probe < high:
        if not fits(probe):
            high = probe
            break
        low, probe = probe, min(high, 2 * probe)
    while high - low > 1:  # fits(low) holds, fits(high) does not
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    text_chars = len(text) - sum(e - s for s, e in spans)
    kept_chars = low - sum(e - s for s, e in spans if e <= low)
    return cut(low), kept_chars, text_chars
