"""Generation: one assistant turn of text and, where the LLM signals them, media.

`NextGPTModel.generate` reads a Hugging Face chat conversation, encodes its media
(`nextgpt.encoding`), packs the prompt (`nextgpt.packing`, shortened to fit the context), lets the
LLM write the answer, completes the signal-token runs it started (or was asked for with
``request``), projects their states into decoder conditions (`nextgpt.signals`) and has each
modality's decoder generate the media, written to files that never replace an existing one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import torch

from nextgpt.config import DecodeOptions, validate_model
from nextgpt.decoding import decode as decode_batch
from nextgpt.decoding import states_of
from nextgpt.errors import ConfigError, MediaError
from nextgpt.files import check_writable_folder
from nextgpt.llm import base_model
from nextgpt.progress import Streamers, TokenProgress, progress_scope
from nextgpt.signals import complete_signal_runs, find_signal_runs
from nextgpt.streaming import MediaCallback, StreamEvent, TextCallback, stream_turn
from nextgpt.suggest import hint, listing

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from nextgpt.chat_templates import ChatTemplate
    from nextgpt.conditions import Condition
    from nextgpt.config import ModalityConfig, NextGPTConfig
    from nextgpt.interfaces import Decoder, ModalitySpec
    from nextgpt.packing import PackedInput
    from nextgpt.plugins import PluginRegistry
    from nextgpt.templates import PromptTemplate, Turn


@dataclass
class GeneratedMedia:
    modality: str
    media: Any
    path: Path | None = None


@dataclass
class GenerationOutput:
    """What one assistant turn produced."""

    text: str
    media: list[GeneratedMedia] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the model changed to answer, e.g. a conversation shortened to fit the context
    (`nextgpt.context`); each note was also given as a warning."""

    def as_message(self) -> dict[str, Any]:
        """The assistant message in the Hugging Face chat format (media as path parts)."""
        content: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text else []
        for item in self.media:
            part: dict[str, Any] = {"type": item.modality}
            part.update({"path": str(item.path)} if item.path else {"media": item.media})
            content.append(part)
        return {"role": "assistant", "content": content}


def is_conversation_list(messages: list[Any]) -> bool:
    """Whether ``messages`` is a list of conversations (each a list of messages) rather than one."""
    return bool(messages) and all(isinstance(item, list) for item in messages)


class VisibleTextStream:
    """A `transformers` generation streamer that hands ``on_text`` each new piece of the
    answer's visible text: signal and other added tokens hidden, nothing from a stop string on,
    and text that may still change held back (a possible start of a stop string, trailing
    whitespace, an unfinished character). `finish` hands over the rest of the final text, so
    the pieces joined are the output's ``text``."""

    def __init__(self, model: GenerationMixin, on_text: Callable[[str], None]) -> None:
        self.model = model
        self.on_text = on_text
        self.stop_ids = set(model.stop_token_ids())
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the prompt: with ``inputs_embeds`` it holds no ids
            self._prompt_seen = True
            return
        if self.stopped:
            return
        self.ids.extend(int(i) for i in torch.as_tensor(value).flatten().tolist())
        if any(i in self.stop_ids for i in self.ids):
            self.stopped = True
            return
        self._send(self._settled_text())

    def end(self) -> None:
        """Nothing to do: `finish` sends the rest once the answer is final."""

    def finish(self, text: str) -> None:
        """Send what of the final ``text`` was not sent yet."""
        if text.startswith(self.sent):
            self._send(text)

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            delta, self.sent = text[len(self.sent) :], text
            self.on_text(delta)

    def _settled_text(self) -> str:
        stops = list(self.model.template.stop)
        text = self.model._visible_text(self.ids)
        for stop in stops:
            if stop in text:
                text, self.stopped = text[: text.index(stop)], True
        hold = max((k for stop in stops for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)
        return text[: len(text) - hold].rstrip().rstrip("\ufffd")


class GenerationMixin:
    """`generate` and its helpers, for `NextGPTModel` (mixed into it)."""

    if TYPE_CHECKING:
        config: NextGPTConfig
        registry: PluginRegistry
        llm: nn.Module
        tokenizer: Any
        template: PromptTemplate | ChatTemplate
        specs: dict[str, ModalitySpec]
        modality_configs: dict[str, ModalityConfig]
        decoders: dict[str, Decoder]
        signal_ids: dict[str, list[int]]
        new_token_ids: list[int]
        device: torch.device
        embed_tokens: Callable[[torch.Tensor], torch.Tensor]
        encode_media: Callable[..., torch.Tensor]
        pack: Callable[..., PackedInput]
        fit_context: Callable[..., tuple[list[Turn], list[torch.Tensor], str | None]]
        project_signal: Callable[[torch.Tensor, str], Condition]

    @overload
    def generate(
        self,
        messages: list[dict[str, Any]],
        output_dir: str | Path | None = None,
        request: Sequence[str] = (),
        decode: dict[str, DecodeOptions | dict[str, Any]] | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        file_prefix: str = "",
        progress: bool | None = None,
        stream: Literal[False] = False,
    ) -> GenerationOutput: ...

    @overload
    def generate(
        self,
        messages: list[list[dict[str, Any]]],
        output_dir: str | Path | None = None,
        request: Sequence[str] = (),
        decode: dict[str, DecodeOptions | dict[str, Any]] | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        file_prefix: str = "",
        progress: bool | None = None,
        stream: Literal[False] = False,
    ) -> list[GenerationOutput]: ...

    @overload
    def generate(
        self,
        messages: list[dict[str, Any]],
        output_dir: str | Path | None = None,
        request: Sequence[str] = (),
        decode: dict[str, DecodeOptions | dict[str, Any]] | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        file_prefix: str = "",
        progress: bool | None = None,
        *,
        stream: Literal[True],
    ) -> Iterator[StreamEvent]: ...

    @torch.no_grad()
    def generate(
        self,
        messages: list[dict[str, Any]] | list[list[dict[str, Any]]],
        output_dir: str | Path | None = None,
        request: Sequence[str] = (),
        decode: dict[str, DecodeOptions | dict[str, Any]] | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        file_prefix: str = "",
        progress: bool | None = None,
        stream: bool = False,
    ) -> GenerationOutput | list[GenerationOutput] | Iterator[StreamEvent]:
        """Answer the conversation's last user turn with text and, where signalled, media.

        Args:
            messages: the conversation (Hugging Face chat format; media as path parts), or a
                list of conversations: they are decoded together as one left-padded batch and
                a list of outputs comes back, in order (with greedy decoding each equals what
                the conversation alone gives).
            output_dir: where generated media files are written (not written if None).
            request: modalities the answer must contain; their signal tokens are appended
                when the LLM did not emit them (useful with untrained or small LLMs).
            decode: per-modality decoding options (steps, guidance, size, frames, seconds, seed).
            max_new_tokens, temperature, top_p: LLM sampling (default: the LLM config's).
            seed: seeds sampling and, unless ``decode`` says otherwise, the decoders.
            file_prefix: prefix of the generated files' names (``<prefix><modality>_<i><ext>``;
                a name already taken gets ``-1``, ``-2``...: no file is replaced).
            progress: show bars for the LLM's tokens and each decoder's denoising steps
                (default: `nextgpt.progress.progress_enabled`, i.e. on a terminal).
            stream: return an iterator of `nextgpt.streaming` events instead: `TextDelta` as the
                LLM writes (signal tokens hidden), `MediaReady` as each item is written, then
                `Finished` with this output. Errors are raised by the iterator.

        A conversation longer than the LLM's context is shortened by the rule of
        `nextgpt.context` (oldest exchanges first), with a warning and a note in the output.
        The signal tokens' states are those the decoding steps computed (`nextgpt.decoding`);
        ``llm.cache: static`` decodes with a static KV cache.
        """
        if stream:
            if is_conversation_list(messages):
                raise ConfigError("stream=True answers one conversation at a time, not a list of them")
            args = (messages, output_dir, request, decode, max_new_tokens, temperature, top_p, seed, file_prefix)

            def run(on_text: TextCallback, on_media: MediaCallback) -> GenerationOutput:
                with torch.no_grad(), progress_scope(progress):
                    return self._generate(*args, on_text=on_text, on_media=on_media)

            return stream_turn(run)
        batch = is_conversation_list(messages)
        conversations = cast("list[list[dict[str, Any]]]", messages if batch else [messages])
        with torch.no_grad(), progress_scope(progress):
            outputs = self._generate_batch(
                conversations, output_dir, request, decode, max_new_tokens, temperature, top_p, seed, file_prefix
            )
        return outputs if batch else outputs[0]

    def _generate(
        self,
        messages: list[dict[str, Any]],
        output_dir: str | Path | None,
        request: Sequence[str],
        decode: dict[str, DecodeOptions | dict[str, Any]] | None,
        max_new_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        file_prefix: str,
        on_text: Callable[[str], None] | None = None,
        on_media: Callable[[GeneratedMedia], None] | None = None,
    ) -> GenerationOutput:
        """One conversation's turn (see `generate`).

        Args:
            on_text: called with each new piece of the answer's visible text as the LLM writes
                it (signal tokens hidden); the pieces joined are the output's ``text``.
            on_media: called with each generated item once it is written.
        """
        return self._generate_batch(
            [messages],
            output_dir,
            request,
            decode,
            max_new_tokens,
            temperature,
            top_p,
            seed,
            file_prefix,
            on_text=on_text,
            on_media=on_media,
        )[0]

    def _generate_batch(
        self,
        conversations: list[list[dict[str, Any]]],
        output_dir: str | Path | None,
        request: Sequence[str],
        decode: dict[str, DecodeOptions | dict[str, Any]] | None,
        max_new_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        file_prefix: str,
        on_text: Callable[[str], None] | None = None,
        on_media: Callable[[GeneratedMedia], None] | None = None,
    ) -> list[GenerationOutput]:
        self.eval()
        llm_cfg = self.config.llm
        max_new_tokens = llm_cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        if max_new_tokens <= 0:
            raise ConfigError(f"max_new_tokens: expected a positive number, got {max_new_tokens}")
        if not conversations:
            raise ConfigError("messages: the list of conversations is empty")
        if on_text is not None and len(conversations) > 1:
            raise ConfigError("on_text: text is streamed for one conversation at a time, not for a batch")
        self.check_request(request)
        if output_dir is not None:
            check_writable_folder(Path(output_dir))
        prompts, notes = [], []
        for messages in conversations:
            packed, note = self._prompt(messages, max_new_tokens)
            prompts.append(packed.embeds)
            notes.append([note] if note else [])
        temperature = llm_cfg.temperature if temperature is None else temperature
        runs_by_modality = {name: ids for name, ids in self.signal_ids.items() if name in self.decoders}
        streamers: list[Any] = [TokenProgress(max_new_tokens, desc="LLM tokens")]
        text_stream = VisibleTextStream(self, on_text) if on_text is not None else None
        if text_stream is not None:
            streamers.append(text_stream)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.stop_token_ids(),
            "stop_strings": list(self.template.stop),
            "tokenizer": self.tokenizer,
            "streamer": Streamers(streamers),
        }
        if temperature > 0:
            gen_kwargs.update(temperature=temperature, top_p=top_p or llm_cfg.top_p)
        pad_id = int(self.tokenizer.pad_token_id)
        pad_embedding = self.embed_tokens(torch.tensor([pad_id], device=self.device))[0]
        spare = sum(len(ids) for ids in runs_by_modality.values())
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed if seed is None else seed)
            decoded = decode_batch(self.llm, prompts, pad_embedding, llm_cfg.cache, spare, **gen_kwargs)
        results, wanted = [], []
        for row, row_notes in zip(decoded.new_ids, notes, strict=True):
            final_ids = complete_signal_runs(self._strip_stop(row), runs_by_modality, request)
            results.append(GenerationOutput(text=self._visible_text(final_ids), token_ids=final_ids, notes=row_notes))
            runs = find_signal_runs(final_ids, runs_by_modality)
            last_end = max((start + len(runs_by_modality[name]) for name, start in runs), default=0)
            wanted.append(final_ids[:last_end] if runs else None)
        if text_stream is not None:
            text_stream.finish(results[0].text)
        if all(w is None for w in wanted):
            return results
        states = states_of(self.llm, decoded, wanted, pad_id)
        decode = decode or {}
        for result, row_states in zip(results, states, strict=True):
            if row_states is None:
                continue
            for name, start in find_signal_runs(result.token_ids, runs_by_modality):
                run_states = row_states[start : start + len(runs_by_modality[name])].unsqueeze(0)
                cond = self.project_signal(run_states, name)
                options = self._decode_options(name, decode.get(name), seed)
                item = self.decoders[name].generate(cond, options)[0]
                path = None
                if output_dir is not None:
                    index = sum(1 for m in result.media if m.modality == name)
                    path = self.save_output(name, item, Path(output_dir), f"{file_prefix}{name}_{index}")
                media = GeneratedMedia(name, item, path)
                result.media.append(media)
                if on_media is not None:
                    on_media(media)
        return results

    def _prompt(self, messages: list[dict[str, Any]], max_new_tokens: int) -> tuple[PackedInput, str | None]:
        """One conversation as the LLM's prompt (media encoded, shortened to fit the context),
        with the note saying what was shortened, if anything."""
        from nextgpt.messages import parse_messages

        turns, media = parse_messages(messages, self.specs, self.registry.modality)
        media_embeds = []
        for index, item in enumerate(media):
            embeds = self.encode_media(item.modality, [item.media])[0]
            if not torch.isfinite(embeds).all():
                raise MediaError(
                    item.path or f"media input {index} ({item.modality})",
                    "its features are NaN or infinite (does the media hold NaN or infinite values?)",
                )
            media_embeds.append(embeds)
        turns, media_embeds, note = self.fit_context(turns, media_embeds, max_new_tokens)
        return self.pack(turns, media_embeds, add_generation_prompt=True), note

    def save_output(self, modality: str, item: Any, directory: Path, stem: str) -> Path:
        """Write a generated item as ``directory/stem<ext>``, or ``stem-N<ext>`` with the first
        free N: an existing file is never replaced. A file-system error is a `MediaError`
        naming the path."""
        from nextgpt.files import reserve_file

        spec = self.specs[modality]
        path = reserve_file(directory, stem, spec.output_extension)
        try:
            written = Path(spec.save(item, path))
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise MediaError(path, f"cannot write: {exc.strerror or exc}") from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if written != path and path.stat().st_size == 0:  # the plugin chose another name
            path.unlink()
        return written

    def check_request(self, request: Sequence[str]) -> None:
        """Every requested modality must have a decoder in this model; the error lists those
        that do (with a "did you mean")."""
        for name in request:
            if name not in self.decoders:
                raise ConfigError(
                    f"request: modality {name!r} has no decoder in this model{hint(name, self.decoders)} "
                    f"(it can generate: {listing(sorted(self.decoders))})"
                )

    def _decode_options(
        self, name: str, given: DecodeOptions | dict[str, Any] | None, seed: int | None
    ) -> DecodeOptions:
        defaults = self.modality_configs[name].decode
        if seed is not None:
            defaults = defaults.model_copy(update={"seed": seed})
        if given is None:
            return defaults
        options = given if isinstance(given, DecodeOptions) else validate_model(DecodeOptions, given, f"decode.{name}")
        return options.merged_over(defaults)

    def stop_token_ids(self) -> list[int]:
        """Ids that end the answer: the template's end-of-turn token(s) and the LLM's
        ``generation_config`` EOS ids (`PromptTemplate.stop_token_ids`)."""
        generation_config = getattr(base_model(self.llm), "generation_config", None)
        return self.template.stop_token_ids(self.tokenizer, generation_config)

    def _strip_stop(self, ids: list[int]) -> list[int]:
        """Cut the generated ids at a stop id or the first stop string, which are not part of the answer."""
        stops = set(self.stop_token_ids())
        first = next((k for k, i in enumerate(ids) if i in stops), None)
        if first is not None:
            ids = ids[:first]
        for cut in range(len(ids)):
            text = self.tokenizer.decode(ids[: cut + 1])
            hits = [text.find(stop) for stop in self.template.stop if stop in text]
            if hits:  # keep the tokens before the stop string and the whitespace leading to it
                keep = len(text[: min(hits)].rstrip())
                while cut > 0 and len(self.tokenizer.decode(ids[:cut])) > keep:
                    cut -= 1
                return ids[:cut]
        return ids

    def _visible_text(self, ids: list[int]) -> str:
        hidden = set(self.new_token_ids)
        return self.tokenizer.decode([i for i in ids if i not in hidden], skip_special_tokens=True).strip()
