"""``llm.template: auto``: conversations rendered with the LLM's own chat template.

A modern chat LLM ships its conversation format as a Jinja ``chat_template`` in its tokenizer
(Llama-3's ``<|start_header_id|>``, Qwen's ``<|im_start|>``, Mistral's ``[INST]``...).
`ChatTemplate` renders turns with ``tokenizer.apply_chat_template`` and turns the result into
the same `Segment` list the named templates give, so packing, training and generation do not
care which kind of template a model uses.

The supervised spans (the assistant's words and its end-of-turn token) are found by rendering
incrementally: the conversation up to each message is rendered, and each message contributes
the text its render adds to the render before it. Inside an assistant message's addition the
content is located verbatim; the end-of-turn token is the first special token after it. No
role string is searched for, so any template that renders a conversation as a sequence of
growing prefixes works; one that does not (e.g. it rewrites earlier turns) is a clear error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nextgpt.errors import ConfigError
from nextgpt.templates import Segment, Turn

_PROBE_USER = "Hello there"
_PROBE_REPLY = "General Kenobi"


class ChatTemplate:
    """The tokenizer's chat template as a nextgpt template.

    Args:
        tokenizer: a transformers tokenizer whose ``chat_template`` is set.
        source: where the tokenizer comes from (named in errors).
        system: a system prompt put before the conversation (None: the template's own default).
        placeholders: the enabled modalities' media placeholders (``<image>``...), which must
            survive rendering so the media embeddings can be spliced in.
    """

    name = "auto"

    def __init__(
        self, tokenizer: Any, source: str, system: str | None = None, placeholders: Iterable[str] = ()
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"llm.template: 'auto' needs a tokenizer with a chat_template ({source} has none)")
        self.tokenizer = tokenizer
        self.source = source
        self.system = system
        self.placeholders = tuple(placeholders)
        self.special_tokens = sorted(
            {str(t) for t in tokenizer.all_special_tokens}
            | {str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)},
            key=len,
            reverse=True,
        )
        probe = [Turn(role="user", text=_PROBE_USER), Turn(role="assistant", text=_PROBE_REPLY)]
        segments = self.segments(probe, add_generation_prompt=False)
        self.turn_end: str = self._turn_end_of(segments)
        """The end-of-turn token the template closes an assistant message with."""
        self.stop: tuple[str, ...] = (self.turn_end,)
        bos = getattr(tokenizer, "bos_token", None)
        self.renders_bos: bool = bool(bos) and "".join(s.text for s in segments).startswith(str(bos))
        """The rendered text starts with BOS itself (packing must not add another)."""

    def __repr__(self) -> str:
        return f"ChatTemplate(source={self.source!r})"

    def _where(self) -> str:
        return f"llm.template 'auto' (the chat template of {self.source})"

    def _messages(self, turns: list[Turn]) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        for turn in turns:
            if turn.role not in ("user", "assistant"):
                raise ConfigError(f"conversation: unknown role {turn.role!r} (use 'user' or 'assistant')")
        return system + [{"role": t.role, "content": t.text} for t in turns]

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as exc:  # Jinja raises its own errors (e.g. "roles must alternate")
            raise ConfigError(f"{self._where()}: cannot render the conversation: {exc}") from exc
        return str(text)

    def segments(self, turns: list[Turn], add_generation_prompt: bool) -> list[Segment]:
        """Render ``turns``; with ``add_generation_prompt`` end ready for the assistant to speak.

        Each assistant message gives three segments: what the template puts before its
        content (unsupervised), the content and end-of-turn token (supervised), and what
        follows the end-of-turn token (unsupervised, e.g. a newline)."""
        if add_generation_prompt and (not turns or turns[-1].role != "user"):
            raise ConfigError("conversation: the last turn must be the user's to generate a reply")
        messages = self._messages(turns)
        offset = len(messages) - len(turns)
        out: list[Segment] = []
        done = self._render(messages[:offset], False) if offset else ""
        if done:
            out.append(Segment(text=done))
        for index, turn in enumerate(turns):
            upto = messages[: offset + index + 1]
            if turn.role == "assistant":
                if index == 0 or turns[index - 1].role != "user":
                    raise ConfigError("conversation: an assistant turn must follow a user turn")
                rendered = self._render(upto, False)
                added = self._added(done, rendered, index)
                out.extend(self._assistant_segments(added, turn.text))
            else:
                follows = index + 1 < len(turns) or add_generation_prompt
                rendered = self._render(upto, follows)
                added = self._added(done, rendered, index)
                self._check_placeholders(turn.text, added)
                out.append(Segment(text=added))
            done = rendered
        return [s for s in out if s.text]

    def _added(self, before: str, after: str, index: int) -> str:
        if not after.startswith(before):
            raise ConfigError(
                f"{self._where()}: rendering turn {index + 1} changes the text of the turns before it, "
                "so the assistant's spans cannot be found; use a named template (llm.template)"
            )
        return after[len(before) :]

    def _check_placeholders(self, text: str, rendered: str) -> None:
        for placeholder in self.placeholders:
            if text.count(placeholder) != rendered.count(placeholder):
                raise ConfigError(
                    f"{self._where()}: the media placeholder {placeholder!r} does not survive rendering, "
                    "so media cannot be spliced in; use a named template (llm.template)"
                )

    def _assistant_segments(self, added: str, content: str) -> list[Segment]:
        start = added.find(content) if content else -1
        if start < 0:
            # Templates may strip the content's outer whitespace; look for the stripped form.
            content = content.strip()
            start = added.find(content) if content else -1
        if start < 0:
            raise ConfigError(
                f"{self._where()}: the assistant's reply does not appear verbatim in the rendered text, "
                "so its supervised span cannot be found; use a named template (llm.template)"
            )
        end = start + len(content)
        tail = added[end:]
        cut = self._end_of_turn(tail)
        self._check_placeholders(content, added[start:end])
        return [
            Segment(text=added[:start]),
            Segment(text=added[start : end + cut], supervised=True),
            Segment(text=tail[cut:]),
        ]

    def _end_of_turn(self, tail: str) -> int:
        """Length of ``tail`` up to and including its first special token."""
        best: int | None = None
        for token in self.special_tokens:
            at = tail.find(token)
            if at >= 0 and (best is None or at + len(token) < best):
                best = at + len(token)
        if best is None:
            raise ConfigError(
                f"{self._where()}: no end-of-turn token follows the assistant's reply "
                f"(rendered after it: {tail!r}); use a named template (llm.template)"
            )
        return best

    def _turn_end_of(self, segments: list[Segment]) -> str:
        supervised = [s.text for s in segments if s.supervised]
        reply = supervised[-1]
        start = reply.find(_PROBE_REPLY)
        return reply[start + len(_PROBE_REPLY) :].strip()

    def stop_token_ids(self, tokenizer: Any, generation_config: Any) -> list[int]:
        """The end-of-turn token's id, then the LLM's ``generation_config`` EOS id(s), then the
        tokenizer's EOS id (no repeats)."""
        ids = [_token_id(tokenizer, self.turn_end)]
        return _unique([*ids, *_eos_ids(generation_config), tokenizer.eos_token_id])


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` when it is one vocabulary entry, else None."""
    vocab = tokenizer.get_vocab()
    return int(vocab[token]) if token in vocab else None


def _eos_ids(generation_config: Any) -> list[int]:
    value = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _unique(ids: Iterable[int | None]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def _single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id ``text`` tokenises to when it is one token (SentencePiece LLaMA writes ``###`` as
    ``▁###``, id 835), else its vocabulary entry, else None."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return int(ids[0]) if len(ids) == 1 else _token_id(tokenizer, text)


def named_stop_token_ids(stop: Iterable[str], tokenizer: Any, generation_config: Any) -> list[int]:
    """Stop ids of a named template: each stop string that is one token (``###`` is id 835 in
    LLaMA's vocabulary), the ``generation_config`` EOS id(s) and the tokenizer's EOS."""
    singles = [_single_token_id(tokenizer, s) for s in stop]
    return _unique([*singles, *_eos_ids(generation_config), tokenizer.eos_token_id])
