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
from typing import TYPE_CHECKING, Any, Literal, overload

import torch

from nextgpt.config import DecodeOptions, validate_model
from nextgpt.errors import ConfigError, MediaError
from nextgpt.files import check_writable_folder
from nextgpt.progress import TokenProgress, progress_scope
from nextgpt.signals import complete_signal_runs, find_signal_runs
from nextgpt.streaming import MediaCallback, StreamEvent, TextCallback, VisibleTextDeltas, stream_turn
from nextgpt.suggest import hint, listing

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

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


class GenerationMixin:
    """`generate` and its helpers, for `NextGPTModel` (mixed into it)."""

    if TYPE_CHECKING:
        config: NextGPTConfig
        registry: PluginRegistry
        llm: nn.Module
        tokenizer: Any
        template: PromptTemplate
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
        output_dir: str | Path | None = ...,
        request: Sequence[str] = ...,
        decode: dict[str, DecodeOptions | dict[str, Any]] | None = ...,
        max_new_tokens: int | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        seed: int | None = ...,
        file_prefix: str = ...,
        progress: bool | None = ...,
        stream: Literal[False] = ...,
    ) -> GenerationOutput: ...

    @overload
    def generate(
        self,
        messages: list[dict[str, Any]],
        output_dir: str | Path | None = ...,
        request: Sequence[str] = ...,
        decode: dict[str, DecodeOptions | dict[str, Any]] | None = ...,
        max_new_tokens: int | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        seed: int | None = ...,
        file_prefix: str = ...,
        progress: bool | None = ...,
        *,
        stream: Literal[True],
    ) -> Iterator[StreamEvent]: ...

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
        stream: bool = False,
    ) -> GenerationOutput | Iterator[StreamEvent]:
        """Answer the conversation's last user turn with text and, where signalled, media.

        Args:
            messages: the conversation (Hugging Face chat format; media as path parts).
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
        """
        args = (messages, output_dir, request, decode, max_new_tokens, temperature, top_p, seed, file_prefix)
        if stream:

            def run(on_text: TextCallback, on_media: MediaCallback) -> GenerationOutput:
                with torch.no_grad(), progress_scope(progress):
                    return self._generate(*args, on_text=on_text, on_media=on_media)

            return stream_turn(run)
        with torch.no_grad(), progress_scope(progress):
            return self._generate(*args)

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
        on_text: TextCallback | None = None,
        on_media: MediaCallback | None = None,
    ) -> GenerationOutput:
        """One turn (see `generate`). ``on_text`` is called with each new piece of the visible
        answer as the LLM writes it (signal tokens hidden), ``on_media`` with each media item
        once it is written."""
        from nextgpt.messages import parse_messages

        self.eval()
        llm_cfg = self.config.llm
        max_new_tokens = llm_cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        if max_new_tokens <= 0:
            raise ConfigError(f"max_new_tokens: expected a positive number, got {max_new_tokens}")
        self.check_request(request)
        if output_dir is not None:
            check_writable_folder(Path(output_dir))
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
        packed = self.pack(turns, media_embeds, add_generation_prompt=True)
        temperature = llm_cfg.temperature if temperature is None else temperature
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "stop_strings": list(self.template.stop),
            "tokenizer": self.tokenizer,
        }
        if temperature > 0:
            gen_kwargs.update(temperature=temperature, top_p=top_p or llm_cfg.top_p)
        prompt = packed.embeds.unsqueeze(0)
        deltas = VisibleTextDeltas(self._visible_text, self.template.stop, on_text) if on_text else None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed if seed is None else seed)
            out = self.llm.generate(
                inputs_embeds=prompt,
                attention_mask=torch.ones(prompt.shape[:2], dtype=torch.long, device=self.device),
                streamer=TokenProgress(
                    gen_kwargs["max_new_tokens"], desc="LLM tokens", on_token=deltas.add if deltas else None
                ),
                **gen_kwargs,
            )
        new_ids = self._strip_stop(out[0].tolist())
        runs_by_modality = {name: ids for name, ids in self.signal_ids.items() if name in self.decoders}
        final_ids = complete_signal_runs(new_ids, runs_by_modality, request)
        result = GenerationOutput(text=self._visible_text(final_ids), token_ids=final_ids, notes=[note] if note else [])
        if deltas:
            deltas.finish(result.text)
        if not find_signal_runs(final_ids, runs_by_modality):
            return result

        sequence = torch.tensor(final_ids, device=self.device)
        full = torch.cat([prompt, self.embed_tokens(sequence).unsqueeze(0).to(prompt.dtype)], dim=1)
        hidden = self.llm(inputs_embeds=full, output_hidden_states=True).hidden_states[-1]
        decode = decode or {}
        for name, start in find_signal_runs(final_ids, runs_by_modality):
            position = packed.input_ids.shape[0] + start
            states = hidden[:, position : position + len(self.signal_ids[name])]
            cond = self.project_signal(states, name)
            options = self._decode_options(name, decode.get(name), seed)
            item = self.decoders[name].generate(cond, options)[0]
            path = None
            if output_dir is not None:
                index = sum(1 for m in result.media if m.modality == name)
                path = self.save_output(name, item, Path(output_dir), f"{file_prefix}{name}_{index}")
            result.media.append(GeneratedMedia(name, item, path))
            if on_media:
                on_media(result.media[-1])
        return result

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

    def _strip_stop(self, ids: list[int]) -> list[int]:
        """Cut the generated ids at EOS or the first stop string, which are not part of the answer."""
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[: ids.index(eos)]
        for cut in range(len(ids)):
            text = self.tokenizer.decode(ids[: cut + 1])
            if any(stop in text for stop in self.template.stop):
                return ids[:cut]
        return ids

    def _visible_text(self, ids: list[int]) -> str:
        hidden = set(self.new_token_ids)
        return self.tokenizer.decode([i for i in ids if i not in hidden], skip_special_tokens=True).strip()
