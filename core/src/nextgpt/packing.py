"""The prompt: a conversation packed into LLM inputs, and shortened to fit the context.

`NextGPTModel.pack` renders text turns with the model's template (`nextgpt.templates`), tokenises
each text piece, and splices the media embeddings in at the placeholders (between the media-wrap
tokens, when the config has them). Generation and training pack with this one function, so a
model is trained on exactly the inputs it later generates from. `fit_context` shortens a
conversation that does not fit the LLM's context, by the rule of `nextgpt.context`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from nextgpt.errors import ConfigError, PromptTruncatedWarning
from nextgpt.llm import base_model
from nextgpt.templates import Turn

if TYPE_CHECKING:
    from torch import nn

    from nextgpt.chat_templates import ChatTemplate
    from nextgpt.config import NextGPTConfig
    from nextgpt.interfaces import ModalitySpec
    from nextgpt.templates import PromptTemplate


@dataclass
class PackedInput:
    """A rendered conversation as LLM inputs (one sequence, no batch dimension)."""

    embeds: torch.Tensor
    """``[L, d_llm]`` token embeddings with media embeddings spliced in."""
    input_ids: torch.Tensor
    """``[L]`` token ids; media positions hold the pad id."""
    labels: torch.Tensor
    """``[L]`` ids where the loss applies (assistant words), -100 elsewhere."""


class PromptPackingMixin:
    """Packing and context fitting of `NextGPTModel` (mixed into it)."""

    if TYPE_CHECKING:
        config: NextGPTConfig
        llm: nn.Module
        tokenizer: Any
        template: PromptTemplate | ChatTemplate
        specs: dict[str, ModalitySpec]
        wrap_ids: list[int]
        device: torch.device
        embed_tokens: Callable[[torch.Tensor], torch.Tensor]

    def pack(self, turns: list[Turn], media_embeds: Sequence[torch.Tensor], add_generation_prompt: bool) -> PackedInput:
        """Render ``turns`` with the template and splice ``media_embeds`` (``[k, d]`` each, in
        order of appearance) at the placeholders."""
        from nextgpt.messages import placeholder_pattern

        pattern = placeholder_pattern(self.specs)
        tok = self.tokenizer
        embeds: list[torch.Tensor] = []
        ids: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        pad = tok.pad_token_id
        remaining = list(media_embeds)

        bos_each_chunk = self.config.llm.bos_per_text_chunk and tok.bos_token_id is not None

        def add_ids(piece_ids: list[int], supervised: bool = False) -> None:
            piece = torch.tensor(piece_ids, dtype=torch.long)
            ids.append(piece)
            labels.append(piece.clone() if supervised else torch.full_like(piece, -100))
            embeds.append(self.embed_tokens(piece))

        def add_text(text: str, supervised: bool) -> None:
            if text:
                add_ids(tok(text, add_special_tokens=False).input_ids, supervised)

        def add_media(placeholder: str) -> None:
            if not remaining:
                raise ConfigError(f"placeholder {placeholder!r} has no media item")
            media = remaining.pop(0).to(self.device)
            if self.wrap_ids:
                add_ids(self.wrap_ids[:1])
            embeds.append(media.to(embeds[-1].dtype) if embeds else media)
            ids.append(torch.full((media.shape[0],), pad, dtype=torch.long))
            labels.append(torch.full((media.shape[0],), -100, dtype=torch.long))
            if self.wrap_ids:
                add_ids(self.wrap_ids[1:])

        segments = self.template.segments(turns, add_generation_prompt)
        if bos_each_chunk:
            # The released code's way: the text is cut at media only, each chunk tokenised whole
            # after its BOS; a token is supervised when its characters overlap an assistant span.
            text, spans = "", []
            for segment in segments:
                if segment.supervised:
                    spans.append((len(text), len(text) + len(segment.text)))
                text += segment.text
            cursor = 0
            for match in [*pattern.finditer(text), None]:
                end = match.start() if match else len(text)
                if end > cursor:
                    add_ids([tok.bos_token_id])
                    chunk_ids, supervised = _tokenise_with_spans(tok, text, cursor, end, spans)
                    piece = torch.tensor(chunk_ids, dtype=torch.long)
                    ids.append(piece)
                    labels.append(torch.where(torch.tensor(supervised), piece, torch.full_like(piece, -100)))
                    embeds.append(self.embed_tokens(piece))
                if match:
                    add_media(match.group(0))
                    cursor = match.end()
        else:
            if tok.bos_token_id is not None and not self.template.renders_bos:
                add_ids([tok.bos_token_id])
            for segment in segments:
                cursor = 0
                for match in pattern.finditer(segment.text):
                    add_text(segment.text[cursor : match.start()], segment.supervised)
                    add_media(match.group(0))
                    cursor = match.end()
                add_text(segment.text[cursor:], segment.supervised)
        if remaining:
            raise ConfigError(f"{len(remaining)} media item(s) have no placeholder in the conversation")
        return PackedInput(torch.cat(embeds), torch.cat(ids), torch.cat(labels))

    def context_length(self) -> int | None:
        """Positions the LLM reads (its ``max_position_embeddings``; None if it does not say)."""
        value = getattr(base_model(self.llm).config, "max_position_embeddings", None)
        return int(value) if value else None

    def fit_context(
        self, turns: list[Turn], media_embeds: list[torch.Tensor], max_new_tokens: int
    ) -> tuple[list[Turn], list[torch.Tensor], str | None]:
        """Shorten the conversation to leave ``max_new_tokens`` of the context free, by the rule
        of `nextgpt.context` (oldest exchanges first, then the end of the last message's text);
        warns with a `PromptTruncatedWarning` and returns the note, or None if it fitted."""
        from nextgpt.context import fit_to_context
        from nextgpt.messages import placeholder_pattern

        context = self.context_length()
        if context is None:
            return turns, media_embeds, None
        budget = context - max_new_tokens
        if budget <= 0:
            raise ConfigError(
                f"max_new_tokens: {max_new_tokens} leaves no room for the prompt in the LLM's context of {context}"
            )

        def length_of(candidate: list[Turn], embeds: list[torch.Tensor]) -> int:
            return int(self.pack(candidate, embeds, add_generation_prompt=True).input_ids.shape[0])

        turns, media_embeds, note = fit_to_context(
            turns, media_embeds, placeholder_pattern(self.specs), length_of, budget
        )
        if note:
            note += f" (the LLM reads {context} positions, {max_new_tokens} of them kept for the answer)"
            warnings.warn(note, PromptTruncatedWarning, stacklevel=3)
        return turns, media_embeds, note


def _tokenise_with_spans(
    tokenizer: Any, text: str, start: int, end: int, spans: list[tuple[int, int]]
) -> tuple[list[int], list[bool]]:
    """Ids of ``text[start:end]`` and, for each, whether its characters overlap one of ``spans``
    (positions in ``text``); needs a fast tokenizer (offset mapping)."""
    encoded = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
    supervised = [
        any(start + a < hi and start + max(b, a + 1) > lo for lo, hi in spans) for a, b in encoded.offset_mapping
    ]
    return list(encoded.input_ids), supervised
