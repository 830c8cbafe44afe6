"""Prompt templates: how a conversation becomes the text the LLM reads.

A template renders a list of turns into *segments*: pieces of text each marked as supervised
(the assistant's replies, which training computes the loss on) or not (system prompt, user
turns, role markers). Media stay as placeholders (``<image>``) inside the text; the model
splices their embeddings in afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from nextgpt.errors import ConfigError
from nextgpt.suggest import hint

if TYPE_CHECKING:
    from nextgpt.chat_templates import ChatTemplate
    from nextgpt.config import LLMConfig


class Segment(BaseModel):
    """A piece of rendered text; ``supervised`` pieces are the assistant's own words."""

    model_config = ConfigDict(frozen=True)

    text: str
    supervised: bool = False


class Turn(BaseModel):
    """One message reduced to text with placeholders: ``role`` is ``user`` or ``assistant``."""

    role: str
    text: str


class PromptTemplate(BaseModel):
    """A chat format: ``system`` + repeated ``user_prefix{user}{assistant_prefix}{reply}{turn_end}``."""

    model_config = ConfigDict(frozen=True)

    name: str
    system: str
    user_prefix: str
    assistant_prefix: str
    turn_end: str
    """Closes an assistant reply; generation stops when the LLM writes it."""
    stop: tuple[str, ...]
    renders_bos: bool = False
    """Named templates leave BOS to packing (`NextGPTConfig.llm.bos_per_text_chunk`)."""
    reply_prefix: str = ""
    """Unsupervised text between ``assistant_prefix`` and each reply."""
    current_user_prefix: str | None = None
    """``user_prefix`` of the user turn a reply is being generated for (None: ``user_prefix``)."""
    media_user_prefix: str | None = None
    """``user_prefix`` of a user turn that starts with media (None: ``user_prefix``); the media
    at its start are then written back to back, with no text between them."""
    placeholders: tuple[str, ...] = ()
    """The enabled modalities' media placeholders (set by `build_template`)."""

    def stop_token_ids(self, tokenizer: Any, generation_config: Any) -> list[int]:
        """Ids generation stops on: each stop string that is one vocabulary entry (``###`` is
        id 835 in LLaMA's vocabulary), the LLM's ``generation_config`` EOS id(s) and the
        tokenizer's EOS id."""
        from nextgpt.chat_templates import named_stop_token_ids

        return named_stop_token_ids(self.stop, tokenizer, generation_config)

    def segments(self, turns: list[Turn], add_generation_prompt: bool) -> list[Segment]:
        """Render ``turns``; with ``add_generation_prompt`` end ready for the assistant to speak."""
        out = [Segment(text=self.system)] if self.system else []
        for index, turn in enumerate(turns):
            if turn.role == "user":
                current = add_generation_prompt and index == len(turns) - 1
                out.append(Segment(text=self._user_prefix(turn.text, current) + self._user_text(turn.text)))
                out[-1] = Segment(text=out[-1].text + self.assistant_prefix)
            elif turn.role == "assistant":
                if not out or not out[-1].text.endswith(self.assistant_prefix):
                    raise ConfigError("conversation: an assistant turn must follow a user turn")
                if self.reply_prefix:
                    out.append(Segment(text=self.reply_prefix))
                out.append(Segment(text=turn.text + self.turn_end, supervised=True))
            else:
                raise ConfigError(f"conversation: unknown role {turn.role!r} (use 'user' or 'assistant')")
        if add_generation_prompt and (not turns or turns[-1].role != "user"):
            raise ConfigError("conversation: the last turn must be the user's to generate a reply")
        if not add_generation_prompt and turns and turns[-1].role == "user":
            out[-1] = Segment(text=out[-1].text.removesuffix(self.assistant_prefix))
        return out

    def _split_leading_media(self, text: str) -> tuple[list[str], str]:
        """The placeholders ``text`` starts with, and the text after them (stripped at its start)."""
        media, rest = [], text
        while True:
            match = next((p for p in self.placeholders if rest.startswith(p)), None)
            if match is None:
                return media, rest
            media.append(match)
            rest = rest[len(match) :].lstrip()

    def _user_prefix(self, text: str, current: bool) -> str:
        if self.media_user_prefix is not None and self._split_leading_media(text)[0]:
            return self.media_user_prefix
        if current and self.current_user_prefix is not None:
            return self.current_user_prefix
        return self.user_prefix

    def _user_text(self, text: str) -> str:
        if self.media_user_prefix is None:
            return text
        media, rest = self._split_leading_media(text)
        if not media:
            return text
        return "".join(media) + (" " + rest if rest else "")

    def render(self, turns: list[Turn], add_generation_prompt: bool = True) -> str:
        return "".join(s.text for s in self.segments(turns, add_generation_prompt))


VICUNA_V0 = PromptTemplate(
    name="vicuna_v0",
    # As NExT-GPT's release: "### Human: q\n### Assistant: a\n### Human: q2\n### Assistant: ..."
    system="###",
    user_prefix=" Human: ",
    assistant_prefix="\n### Assistant: ",
    turn_end="\n###",
    stop=("###",),
)

VICUNA_V0_LEGACY = PromptTemplate(
    name="vicuna_v0_legacy",
    # The released NExT-GPT demo's prompts (reference/nextgpt-facts.md, "Reference prompts, exact"):
    #   "### Human: q1\n### Assistant: a1\n### Human:  q2\n### Assistant:"  (two spaces in the
    #   turn being answered), "### Human:<image> q\n### Assistant:" with media first; with
    #   `bos_per_text_chunk` a BOS starts each text chunk between media, not each turn.
    system="###",
    user_prefix=" Human: ",
    assistant_prefix="\n### Assistant:",
    turn_end="\n###",
    stop=("###",),
    reply_prefix=" ",
    current_user_prefix=" Human:  ",
    media_user_prefix=" Human:",
)

VICUNA_V1 = PromptTemplate(
    name="vicuna_v1",
    system=(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
    user_prefix=" USER: ",
    assistant_prefix=" ASSISTANT: ",
    turn_end="</s>",
    stop=("</s>",),
)

TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (VICUNA_V0, VICUNA_V0_LEGACY, VICUNA_V1)}


AUTO = "auto"
"""``llm.template: auto``: the tokenizer's own chat template (`nextgpt.chat_templates`); an LLM
whose tokenizer has none falls back to `FALLBACK`."""
FALLBACK = VICUNA_V0.name


def get_template(name: str) -> PromptTemplate:
    """A named template (``auto`` is resolved by `build_template`, which needs the tokenizer)."""
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join([AUTO, *TEMPLATES])
        raise ConfigError(
            f"llm.template: unknown template {name!r}{hint(name, [AUTO, *TEMPLATES])} (known: {known})"
        ) from None


def build_template(
    config: LLMConfig, tokenizer: Any, placeholders: Iterable[str] = ()
) -> PromptTemplate | ChatTemplate:
    """The template ``config.template`` names, for ``tokenizer``: ``auto`` is the tokenizer's
    chat template when it has one (with ``config.system_prompt``), else `FALLBACK`."""
    if config.template != AUTO:
        if config.system_prompt is not None:
            raise ConfigError(
                f"llm.system_prompt: named templates ({config.template!r}) keep their own system text; "
                "it applies to llm.template 'auto'"
            )
        return get_template(config.template).model_copy(update={"placeholders": tuple(placeholders)})
    if not getattr(tokenizer, "chat_template", None):
        return get_template(FALLBACK)
    from nextgpt.chat_templates import ChatTemplate

    return ChatTemplate(tokenizer, config.source, config.system_prompt, placeholders)
