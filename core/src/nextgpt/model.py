"""The any-to-any model: frozen encoders, input projectors, an LLM with signal tokens (and
LoRA), output projectors and frozen decoders, assembled from the installed plugins.

The model never branches on a modality's name: every modality reaches it through its
`ModalitySpec`, its encoder and its decoder.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nextgpt.conditions import Condition
from nextgpt.config import DecodeOptions, DecoderSettings, ModalityConfig, NextGPTConfig, validate_model
from nextgpt.errors import ConfigError, MediaError, NextGPTWarning, PromptTruncatedWarning, SkippedModalityWarning
from nextgpt.files import check_writable_folder
from nextgpt.interfaces import Decoder, Encoder, ModalitySpec
from nextgpt.llm import (
    add_signal_tokens,
    apply_lora,
    attach_signal_rows,
    base_model,
    detach_signal_rows,
    load_llm,
    write_embedding_rows,
)
from nextgpt.model_folder import ModelFolder, read_model_folder, write_pretrained
from nextgpt.overrides import Overrides, changed_decoders
from nextgpt.plugins import PluginRegistry, default_registry
from nextgpt.progress import TokenProgress, progress_scope
from nextgpt.projectors import build_input_projector, build_output_projector
from nextgpt.shared import SharedModels
from nextgpt.signals import complete_signal_runs, find_signal_runs, gather_signal_states
from nextgpt.suggest import hint, listing
from nextgpt.templates import Turn, get_template


@dataclass
class PackedInput:
    """A rendered conversation as LLM inputs (one sequence, no batch dimension)."""

    embeds: torch.Tensor
    """``[L, d_llm]`` token embeddings with media embeddings spliced in."""
    input_ids: torch.Tensor
    """``[L]`` token ids; media positions hold the pad id."""
    labels: torch.Tensor
    """``[L]`` ids where the loss applies (assistant words), -100 elsewhere."""


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


class NextGPTModel(nn.Module):
    """NExT-GPT's system, built from a `NextGPTConfig` and the installed plugins.

    Args:
        config: the system configuration (see `nextgpt.presets` for ready-made ones).
        registry: the plugins to draw modalities from (default: the installed ones).
        inactive: modalities of ``config`` to leave out, with their signal tokens (what
            `from_pretrained` does for a folder's modalities that no installed plugin
            provides): their tokens keep their place in the vocabulary and their trained
            tensors are kept and saved again, but they are neither read nor generated.
    """

    def __init__(
        self,
        config: NextGPTConfig,
        registry: PluginRegistry | None = None,
        *,
        inactive: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.registry = registry or default_registry()
        self.template = get_template(config.llm.template)
        self.specs: dict[str, ModalitySpec] = {}
        self.modality_configs: dict[str, ModalityConfig] = {}
        inactive = dict(inactive or {})
        self.inactive_state: dict[str, torch.Tensor] = {}
        """Trained tensors of the inactive modalities, kept as loaded."""
        for name, raw in config.modalities.items():
            if name in inactive:
                continue
            spec = self.registry.modality(name)
            cfg = spec.validate_config(raw)
            if cfg.signal_tokens is not None:
                spec = spec.model_copy(update={"signal_tokens": spec.signal_tokens.with_count(cfg.signal_tokens)})
            self.specs[name], self.modality_configs[name] = spec, cfg

        llm, self.tokenizer = load_llm(config.llm)
        self.base_vocab_size = int(llm.get_input_embeddings().weight.shape[0])
        self.wrap_ids: list[int] = (
            add_signal_tokens(llm, self.tokenizer, list(config.llm.media_wrap)) if config.llm.media_wrap else []
        )
        self.signal_ids: dict[str, list[int]] = {}
        self.inactive_ids: dict[str, list[int]] = {}
        for name in config.modalities:  # the vocabulary follows the config's order, inactive included
            if name in inactive:
                self.inactive_ids[name] = add_signal_tokens(llm, self.tokenizer, list(inactive[name]))
            else:
                self.signal_ids[name] = add_signal_tokens(llm, self.tokenizer, self.specs[name].signal_tokens.tokens)
        with torch.random.fork_rng(devices=[]):  # LoRA's initialisation follows config.seed
            torch.manual_seed(config.seed)
            self.llm = apply_lora(llm, config.llm) if config.llm.lora else llm
        self.d_llm = int(base_model(self.llm).config.hidden_size)

        shared = SharedModels()
        self.encoders = nn.ModuleDict()
        self.decoders: dict[str, Decoder] = {}
        self.input_projectors = nn.ModuleDict()
        self.output_projectors = nn.ModuleDict()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            for name, cfg in self.modality_configs.items():
                encoder = self._build_encoder(name, cfg, shared)
                self.encoders[name] = encoder
                self.input_projectors[name] = build_input_projector(cfg.input_projector, encoder.dim, self.d_llm)
                if cfg.decoder is not None:
                    backend = self.registry.decoder_backend(name, cfg.decoder.backend)
                    decoder = backend.build(cfg.decoder.source, **cfg.decoder.options)
                    self.decoders[name] = decoder
                    self.output_projectors[name] = build_output_projector(
                        cfg.output_projector, self.d_llm, self.specs[name].signal_tokens.count, decoder.condition_spec
                    )

    def _build_encoder(self, name: str, cfg: ModalityConfig, shared: SharedModels) -> Encoder:
        backend = self.registry.encoder_backend(name, cfg.encoder.backend)
        encoder = backend.build(cfg.encoder.source, shared, **cfg.encoder.options)
        for param in encoder.parameters():
            param.requires_grad_(False)
        return encoder.eval()

    # -- properties -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the LLM is (read from a stored parameter: with signal rows attached the
        embedding's ``weight`` is computed on every access)."""
        return next(self.llm.parameters()).device

    @property
    def new_token_ids(self) -> list[int]:
        """Ids added to the LLM's vocabulary: media-wrap tokens, then the signal tokens (those
        of inactive modalities included), in the config's order."""
        ids = self.all_signal_ids
        return [*self.wrap_ids, *(i for name in self.config.modalities for i in ids[name])]

    @property
    def all_signal_ids(self) -> dict[str, list[int]]:
        """Signal-token ids of every modality of the config, inactive ones included."""
        return {name: (self.signal_ids.get(name) or self.inactive_ids[name]) for name in self.config.modalities}

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids.to(self.device))

    # -- inputs ---------------------------------------------------------------------------------
    def encode_media(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Encode media items of one modality to LLM embeddings ``[B, k, d_llm]``."""
        encoder = self.encoders[modality]
        batch = torch.stack([encoder.preprocess(item) for item in items]).to(self.device)
        with torch.no_grad():
            features = encoder(batch)
        projector = self.input_projectors[modality]
        dtype = next(projector.parameters()).dtype
        return projector(features.to(dtype))

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
                if bos_each_chunk:
                    add_ids([tok.bos_token_id])
                add_ids(tok(text, add_special_tokens=False).input_ids, supervised)

        if tok.bos_token_id is not None and not bos_each_chunk:
            add_ids([tok.bos_token_id])
        for segment in self.template.segments(turns, add_generation_prompt):
            cursor = 0
            for match in pattern.finditer(segment.text):
                add_text(segment.text[cursor : match.start()], segment.supervised)
                if not remaining:
                    raise ConfigError(f"placeholder {match.group(0)!r} has no media item")
                media = remaining.pop(0).to(self.device)
                if self.wrap_ids:
                    add_ids(self.wrap_ids[:1])
                embeds.append(media.to(embeds[-1].dtype) if embeds else media)
                ids.append(torch.full((media.shape[0],), pad, dtype=torch.long))
                labels.append(torch.full((media.shape[0],), -100, dtype=torch.long))
                if self.wrap_ids:
                    add_ids(self.wrap_ids[1:])
                cursor = match.end()
            add_text(segment.text[cursor:], segment.supervised)
        if remaining:
            raise ConfigError(f"{len(remaining)} media item(s) have no placeholder in the conversation")
        return PackedInput(torch.cat(embeds), torch.cat(ids), torch.cat(labels))

    # -- outputs --------------------------------------------------------------------------------
    def signal_conditions(
        self, last_hidden: torch.Tensor, input_ids: torch.Tensor, modality: str
    ) -> tuple[Condition, torch.Tensor]:
        """Decoder conditions for every row of ``input_ids`` ``[B, T]`` that holds a complete run of
        ``modality``'s signal tokens, read from the last-layer states ``[B, T, d]`` at the
        positions where those tokens are the inputs. Returns ``(conditions of R rows, rows [R])``."""
        states, rows = gather_signal_states(last_hidden, input_ids, self.signal_ids[modality])
        return self.project_signal(states, modality), rows

    def project_signal(self, states: torch.Tensor, modality: str) -> Condition:
        """``[R, N, d_llm]`` signal-token states -> a decoder `Condition` of ``R`` rows.

        As released, the signal tokens' input embeddings are added to their states first
        (``output_projector.add_token_embeddings``)."""
        if self.modality_configs[modality].output_projector.add_token_embeddings:
            ids = torch.tensor(self.signal_ids[modality], device=states.device).expand(states.shape[0], -1)
            states = states + self.embed_tokens(ids).to(states.dtype)
        projector = self.output_projectors[modality]
        return projector(states.to(next(projector.parameters()).dtype))

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
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
    ) -> GenerationOutput:
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

        A conversation longer than the LLM's context is shortened by the rule of
        `nextgpt.context` (oldest exchanges first), with a warning and a note in the output.
        """
        with progress_scope(progress):
            return self._generate(
                messages, output_dir, request, decode, max_new_tokens, temperature, top_p, seed, file_prefix
            )

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
    ) -> GenerationOutput:
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
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed if seed is None else seed)
            out = self.llm.generate(
                inputs_embeds=prompt,
                attention_mask=torch.ones(prompt.shape[:2], dtype=torch.long, device=self.device),
                streamer=TokenProgress(gen_kwargs["max_new_tokens"], desc="LLM tokens"),
                **gen_kwargs,
            )
        new_ids = self._strip_stop(out[0].tolist())
        runs_by_modality = {name: ids for name, ids in self.signal_ids.items() if name in self.decoders}
        final_ids = complete_signal_runs(new_ids, runs_by_modality, request)
        result = GenerationOutput(text=self._visible_text(final_ids), token_ids=final_ids, notes=[note] if note else [])
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
        return result

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

    # -- training support -------------------------------------------------------------------------
    def set_trainable(self, input_projectors: bool, output_projectors: bool, signal_rows: bool, lora: bool) -> None:
        """Freeze everything, then unfreeze the chosen groups (the stage settings use this).

        Signal rows train as their own small parameters (`nextgpt.llm.SignalRows`) with
        ``train_embeddings="new_rows"``, as the whole embedding and lm_head with ``"full"``."""
        inner = base_model(self.llm)
        detach_signal_rows(inner)  # rows trained before go back into the matrices
        for param in self.parameters():
            param.requires_grad_(False)
        for flag, module in ((input_projectors, self.input_projectors), (output_projectors, self.output_projectors)):
            for param in module.parameters():
                param.requires_grad_(flag)
        if lora:
            for name, param in self.llm.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(True)
        if signal_rows:
            if self.config.llm.train_embeddings == "full":
                for weight in self._embedding_weights():
                    weight.requires_grad_(True)
            else:
                attach_signal_rows(inner, self.new_token_ids)

    def _embedding_modules(self) -> list[nn.Module]:
        inner = base_model(self.llm)
        return [inner.get_input_embeddings(), inner.get_output_embeddings()]

    def _embedding_weights(self) -> list[torch.Tensor]:
        return [module.weight for module in self._embedding_modules()]

    # -- save / load ----------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything that is not frozen: projectors, signal-token rows (or the whole embedding
        and lm_head with ``train_embeddings="full"``), and LoRA."""
        state: dict[str, torch.Tensor] = {}
        for prefix, module in (
            ("input_projectors", self.input_projectors),
            ("output_projectors", self.output_projectors),
        ):
            for key, value in module.state_dict().items():
                state[f"{prefix}.{key}"] = value
        rows = torch.tensor(self.new_token_ids, dtype=torch.long)
        for key, weight in zip(("llm.embed_tokens", "llm.lm_head"), self._embedding_weights(), strict=True):
            if self.config.llm.train_embeddings == "full":
                state[key] = weight.detach()
            else:
                state[key + ".signal_rows"] = weight.detach()[rows.to(weight.device)]
        if self.config.llm.lora:
            from peft import get_peft_model_state_dict

            for key, value in get_peft_model_state_dict(self.llm, save_embedding_layers=False).items():
                state[f"llm.lora.{key}"] = value
        state.update(self.inactive_state)
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def _inactive_key(self, key: str) -> bool:
        """Whether ``key`` is a projector tensor of an inactive modality."""
        group, _, rest = key.partition(".")
        return group in ("input_projectors", "output_projectors") and rest.partition(".")[0] in self.inactive_ids

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load what `trainable_state_dict` wrote; every key must be used and none missing
        (the projector tensors of inactive modalities are kept as they are)."""
        self.inactive_state = {k: v for k, v in state.items() if self._inactive_key(k)}
        state = {k: v for k, v in state.items() if not self._inactive_key(k)}
        expected = {k: v for k, v in self.trainable_state_dict().items() if not self._inactive_key(k)}
        missing = sorted(set(expected) - set(state))
        unused = sorted(set(state) - set(expected))
        if missing or unused:
            hint = ""
            if any(k.startswith("output_projectors.") for k in (*missing, *unused)):
                hint = (
                    " (trained for another decoder? start the folder with a new decoder: "
                    "NextGPTModel.from_pretrained(folder, decoders={...}))"
                )
            raise ConfigError(f"{source}: missing keys {missing[:10]}, unused keys {unused[:10]}{hint}")
        for key, value in state.items():
            if value.shape != expected[key].shape:
                hint = ""
                if key.startswith("output_projectors."):
                    hint = (
                        " (trained for another decoder? start the folder with a new decoder: "
                        "NextGPTModel.from_pretrained(folder, decoders={...}))"
                    )
                raise ConfigError(
                    f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}{hint}"
                )
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise ConfigError(f"{source}: {key} holds NaN or infinite values")
        with torch.no_grad():
            for prefix, module in (
                ("input_projectors", self.input_projectors),
                ("output_projectors", self.output_projectors),
            ):
                sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
                module.load_state_dict(sub, strict=True)
            for key, module in zip(("llm.embed_tokens", "llm.lm_head"), self._embedding_modules(), strict=True):
                if key in state:
                    module.weight.copy_(state[key].to(module.weight.dtype))
                else:
                    write_embedding_rows(module, self.new_token_ids, state[key + ".signal_rows"])
            if self.config.llm.lora:
                from peft import set_peft_model_state_dict

                lora = {k[len("llm.lora.") :]: v for k, v in state.items() if k.startswith("llm.lora.")}
                set_peft_model_state_dict(self.llm, lora)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` (naming the frozen components) and ``model.safetensors`` (only
        the trained parts) into ``directory``."""
        tokens = {name: spec.signal_tokens.tokens for name, spec in self.specs.items()}
        tokens.update({name: self.tokenizer.convert_ids_to_tokens(ids) for name, ids in self.inactive_ids.items()})
        return write_pretrained(
            directory,
            self.config,
            {name: tokens[name] for name in self.config.modalities},
            self.all_signal_ids,
            self.trainable_state_dict(),
            self.licences(),
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        registry: PluginRegistry | None = None,
        modalities: Sequence[str] | None = None,
        decoders: Mapping[str, DecoderSettings | Mapping[str, Any]] | None = None,
        overrides: Overrides | Mapping[str, Any] | Sequence[str] | None = None,
    ) -> NextGPTModel:
        """Build a model from a preset name (``tiny``, ``nextgpt-7b-v0``), a local folder written by
        `save_pretrained`, a named model (a folder in `nextgpt.paths.models_dir`, e.g. ``toy``
        once ``examples/toy_world/build_toy.py`` has built it), or a hub repository id holding
        such a folder.

        A folder's modality that no installed plugin provides does not stop the others: it is
        left out with a `SkippedModalityWarning` naming it (its trained tensors are kept, and
        saved again by `save_pretrained`).

        Args:
            name_or_path: the preset, folder, named model or hub id.
            registry: the plugins to draw modalities from (default: the installed ones).
            modalities: with a preset, the modalities to enable (default: every installed one).
            decoders: start with other decoders: per modality, the `DecoderSettings` (``backend``,
                ``source``, ``options``) to use instead of those the preset or folder names, e.g.
                ``{"image": {"backend": "pixart-sigma", "source": "tiny"}}``. A folder's output
                projector for such a modality keeps its trained weights where the new decoder's
                condition has the same shapes; otherwise it starts from a fresh initialisation
                (train it again with stage 2), and a warning names it.
            overrides: settings laid over the preset's or folder's configuration, as
                `nextgpt.overrides` says: a mapping (dotted keys allowed, e.g.
                ``{"llm.max_new_tokens": 64}``) or ``KEY=VALUE`` strings (what ``--set`` takes).
                Over a folder only `nextgpt.overrides.FOLDER_SETTINGS` may change; a decoder
                changed there is handled as with ``decoders``.
        """
        from nextgpt.presets import PRESETS, preset_config

        registry = registry or default_registry()
        overrides = Overrides.of(overrides)
        if str(name_or_path) in PRESETS:
            config = preset_config(str(name_or_path), registry, modalities)
            config = overrides.apply(config, registry, f"preset {name_or_path}")
            return cls(with_decoders(config, decoders, f"preset {name_or_path}"), registry)
        folder = read_model_folder(name_or_path)
        config = overrides.apply(folder.config, registry, str(folder.config_path), folder=True)
        weights = folder.load_weights()  # checked against its checksum before anything is built
        inactive = _uninstalled_modalities(folder, registry)
        model = cls(with_decoders(config, decoders, str(folder.config_path)), registry, inactive=inactive)
        if folder.signal_token_ids and folder.signal_token_ids != model.all_signal_ids:
            raise ConfigError(
                f"{folder.config_path}: signal token ids {folder.signal_token_ids} differ from the rebuilt "
                f"tokenizer's {model.all_signal_ids}"
            )
        for name in dict.fromkeys([*changed_decoders(folder.config, config, registry), *(decoders or {})]):
            weights = model._fresh_projector_if_reshaped(weights, name, folder.config, str(folder.directory))
        model.load_trainable_state_dict(weights, source=str(folder.weights_path))
        return model

    def _fresh_projector_if_reshaped(
        self, state: dict[str, torch.Tensor], modality: str, saved: NextGPTConfig, folder: str
    ) -> dict[str, torch.Tensor]:
        """``state`` with the output projector of ``modality`` replaced by this model's freshly
        initialised one if the saved tensors do not fit it (other names or shapes), with a warning."""
        prefix = f"output_projectors.{modality}."
        fresh = {
            prefix + key: value.detach().cpu() for key, value in self.output_projectors[modality].state_dict().items()
        }
        old = {key: value for key, value in state.items() if key.startswith(prefix)}
        if {k: tuple(v.shape) for k, v in old.items()} == {k: tuple(v.shape) for k, v in fresh.items()}:
            return state
        before = (saved.modalities[modality].get("decoder") or {}).get("backend", "none")
        after = self.modality_configs[modality].decoder
        warnings.warn(
            f"{folder}: output projector {modality!r} re-initialised: its decoder changed from {before!r} to "
            f"{after.backend if after else 'none'!r} (condition {self.decoders[modality].condition_spec}) "
            "and the trained weights do not fit it; train it again (stage 2)",
            NextGPTWarning,
            stacklevel=3,
        )
        return {**{k: v for k, v in state.items() if not k.startswith(prefix)}, **fresh}

    def licences(self) -> dict[str, str]:
        """The licence of every frozen component, by role."""
        out = {}
        for name, cfg in self.modality_configs.items():
            out[f"{name} encoder ({cfg.encoder.backend})"] = str(self.encoders[name].licence)
            if cfg.decoder is not None:
                out[f"{name} decoder ({cfg.decoder.backend})"] = str(self.decoders[name].licence)
        return out


def with_decoders(
    config: NextGPTConfig, decoders: Mapping[str, DecoderSettings | Mapping[str, Any]] | None, where: str
) -> NextGPTConfig:
    """``config`` with the decoder settings of some modalities replaced (validated, each must be a
    modality of the config); the rest of each modality's settings is kept."""
    if not decoders:
        return config
    modalities = {name: dict(raw) for name, raw in config.modalities.items()}
    for name, settings in decoders.items():
        if name not in modalities:
            raise ConfigError(f"decoders.{name}: {where} has no modality {name!r} (it has {sorted(modalities)})")
        if not isinstance(settings, DecoderSettings):
            settings = validate_model(DecoderSettings, dict(settings), f"decoders.{name}")
        modalities[name]["decoder"] = settings.model_dump(mode="json")
    return config.model_copy(update={"modalities": modalities})


def planned_modalities(name_or_path: str | Path, registry: PluginRegistry | None = None) -> tuple[list[str], list[str]]:
    """The modalities that ``NextGPTModel.from_pretrained(name_or_path)`` would read and those it
    would generate, from the configuration alone: nothing is loaded, so a command can check its
    arguments in a fraction of a second (presets check their own settings too)."""
    from nextgpt.presets import PRESETS, preset_config

    registry = registry or default_registry()
    if str(name_or_path) in PRESETS:
        config = preset_config(str(name_or_path), registry)
    else:
        config = read_model_folder(name_or_path).config
    reads, generates = [], []
    for name, raw in config.modalities.items():
        if name in registry.modalities:
            reads.append(name)
            if registry.modality(name).validate_config(raw).decoder is not None:
                generates.append(name)
    return reads, generates


def _uninstalled_modalities(folder: ModelFolder, registry: PluginRegistry) -> dict[str, list[str]]:
    """The folder's modalities that ``registry`` lacks, with their signal tokens; warns once
    naming them. A folder that does not record a missing modality's tokens cannot rebuild its
    vocabulary without the plugin: that is the registry's unknown-modality error."""
    missing = [name for name in folder.config.modalities if name not in registry.modalities]
    if not missing:
        return {}
    for name in missing:
        if not folder.signal_tokens.get(name):
            registry.modality(name)  # raises, naming the modality and what is installed
    warnings.warn(
        f"{folder.config_path}: modality {', '.join(repr(m) for m in missing)} skipped: no installed plugin "
        f"provides it (installed: {listing(sorted(registry.modalities))}); its trained parts are kept and saved "
        "again, but it is neither read nor generated. Install its plugin to use it.",
        SkippedModalityWarning,
        stacklevel=3,
    )
    return {name: list(folder.signal_tokens[name]) for name in missing}
