"""`NextGPTLightningModule`: the three NExT-GPT alignment stages as one LightningModule.

``stage`` picks what trains (each group overridable):

=====  ==================  ===================  ============  =====
stage  input projectors    output projectors    signal rows   LoRA
=====  ==================  ===================  ============  =====
1      yes                 no                   no            no
2      no                  yes                  yes           no
3      yes                 yes                  no            yes
=====  ==================  ===================  ============  =====

A training step encodes the media with the frozen encoders, packs every conversation exactly
as generation does (`NextGPTModel.pack`), runs the LLM once, and adds to the LM cross-entropy,
for each modality whose signal tokens the answer contains, the alignment loss between the output
projector's condition (read by `NextGPTModel.signal_conditions`, the same positions generation
reads) and the decoder's embedding of the gold caption.

Checkpoints hold only the trainable parameters (`NextGPTModel.trainable_state_dict`) and the
optimizer state; the frozen LLM, encoders and decoders are rebuilt from the model's source.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch.nn.modules.module import _IncompatibleKeys

from nextgpt.conditions import Condition
from nextgpt.data.collate import PaddedBatch, pad_packed
from nextgpt.data.dataset import SampleBatch
from nextgpt.errors import ConfigError, MediaError, NextGPTError, NextGPTWarning, SkippedRecordWarning
from nextgpt.llm import base_model, signal_row_parameters
from nextgpt.templates import Turn
from nextgpt.training.losses import LossTerms, alignment_loss, lm_loss

STAGE_DEFAULTS: dict[int, dict[str, bool]] = {
    1: {"input_projectors": True, "output_projectors": False, "signal_rows": False, "lora": False},
    2: {"input_projectors": False, "output_projectors": True, "signal_rows": True, "lora": False},
    3: {"input_projectors": True, "output_projectors": True, "signal_rows": False, "lora": True},
}
CHECKPOINT_KEY = "nextgpt"


class NonFiniteTrainingError(NextGPTError, FloatingPointError):
    """The loss, or a trained weight after an optimizer step, is NaN or infinite; the message
    names the batch's records (``file:index``)."""


def _check_settings(**settings: tuple[Any, bool, str]) -> None:
    """Raise `ConfigError` for the first ``name=(value, ok, expected)`` that is not ok, before
    anything is built."""
    for name, (value, ok, expected) in settings.items():
        if not ok:
            raise ConfigError(f"model.{name}: expected {expected}, got {value!r}")


class NextGPTLightningModule(LightningModule):
    """Trains a `NextGPTModel` built from a preset name or a `save_pretrained` folder.

    Args:
        model: a preset (``tiny``, ``nextgpt-7b-v0``), a named model (e.g. ``toy``), a folder
            written by ``save_pretrained`` (e.g. the export of an earlier stage), or a hub id of
            such a folder (``nextgpt fit --model NAME`` sets it).
        stage: 1 (encoding alignment), 2 (decoding alignment) or 3 (instruction tuning).
        train_input_projectors, train_output_projectors, train_signal_rows, train_lora:
            override the stage's choice (``None`` keeps it).
        plugins: plugin names to load (default: ``NEXTGPT_PLUGINS`` or every installed one).
        modalities: with a preset, the modalities to enable (default: every installed one).
        lr, betas, weight_decay: AdamW settings; no decay on the embedding matrices, biases
            and norms.
        warmup_steps: linear warmup steps; ``None`` gives ``max(min_warmup_steps, warmup_ratio
            * total steps)`` as released.
        schedule: decay after the warmup: ``linear`` or ``cosine`` to 0, or ``constant``.
        max_length: sequences are truncated to this many positions.
        align_loss: add the alignment loss; ``None``: when anything it reaches trains.
        gradient_checkpointing: recompute the LLM's activations in the backward pass.
        target_cache_size: decoder caption embeddings kept in memory (per modality and caption).
        seed: seeds the random parts of building the model (LoRA's initialisation), so two
            builds are identical.
        cache_dir: keep the frozen encoders' features and the decoders' caption embeddings in
            safetensors shards there (`nextgpt.training.cache`), keyed by content and by the
            component's identity; reused across epochs, runs and stages. ``nextgpt cache``
            fills it ahead of training; otherwise it fills on first use.
        cache_write: add what is computed to the cache (off: read only).
        diffusion_loss_weight: add the noise-prediction loss through the frozen decoders with
            this weight (times the modality's ``loss_weight``); 0 turns it off. Each decoder
            must offer ``denoising_loss`` (``supports_denoising_loss``, see
            `nextgpt.training.diffusion`), and the data the output media (``generate`` pairs,
            inline output files).
        min_snr_gamma: min-SNR weighting of the noise-prediction loss (5 for images in the
            2024 rewrite); None: plain mean.
        schedule_steps: the length of the learning-rate schedule in optimizer steps. None: the
            trainer's planned steps on a fresh run (``max_steps``, or epochs x batches), and the
            length saved in the checkpoint on a resumed one, so a resumed run follows the
            schedule the interrupted one was on even if ``max_steps`` changed. Set it to change
            the schedule's length on resume (an explicit choice: the run then differs from an
            uninterrupted one).
        decoders: start ``model`` with other decoders, per modality (``{"image": {"backend":
            "pixart-sigma", "source": "..."}}``), as `NextGPTModel.from_pretrained` does: an output
            projector that no longer fits is re-initialised, with a warning naming it.
        overrides: ``KEY=VALUE`` settings laid over ``model``'s configuration, in order, as
            ``--set`` takes them (``nextgpt fit --set KEY=VALUE`` appends one; see
            `nextgpt.overrides`), e.g. ``["modalities.image.decoder.backend=pixart-sigma"]``.
        num_threads: torch's CPU threads; None: ``NEXTGPT_NUM_THREADS``, ``OMP_NUM_THREADS``,
            else the CPUs this process may use that other processes do not keep busy
            (`nextgpt.threads`), as for the ``nextgpt`` commands.

    Training stops with a `NonFiniteTrainingError` naming the batch's records (``file:index``)
    when the loss is NaN or infinite, or when an optimizer step made a trained weight so;
    nothing is trained on that batch, and no checkpoint of non-finite weights is written.
    """

    def __init__(
        self,
        model: str = "tiny",
        stage: Literal[1, 2, 3] = 1,
        train_input_projectors: bool | None = None,
        train_output_projectors: bool | None = None,
        train_signal_rows: bool | None = None,
        train_lora: bool | None = None,
        plugins: list[str] | None = None,
        modalities: list[str] | None = None,
        lr: float = 4e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 1e-3,
        warmup_steps: int | None = None,
        warmup_ratio: float = 0.1,
        min_warmup_steps: int = 10,
        schedule: Literal["linear", "cosine", "constant"] = "linear",
        max_length: int = 512,
        align_loss: bool | None = None,
        gradient_checkpointing: bool = False,
        target_cache_size: int = 4096,
        seed: int = 13,
        cache_dir: str | None = None,
        cache_write: bool = True,
        diffusion_loss_weight: float = 0.0,
        min_snr_gamma: float | None = None,
        schedule_steps: int | None = None,
        decoders: dict[str, dict[str, Any]] | None = None,
        overrides: list[str] | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        if stage not in STAGE_DEFAULTS:
            raise ConfigError(f"model.stage: expected 1, 2 or 3, got {stage!r}")
        _check_settings(
            lr=(lr, lr > 0, "a positive number"),
            betas=(betas, len(betas) == 2 and all(0 <= b < 1 for b in betas), "two numbers in [0, 1)"),
            weight_decay=(weight_decay, weight_decay >= 0, "0 or more"),
            warmup_steps=(warmup_steps, warmup_steps is None or warmup_steps >= 0, "0 or more"),
            warmup_ratio=(warmup_ratio, 0 <= warmup_ratio <= 1, "a number in [0, 1]"),
            min_warmup_steps=(min_warmup_steps, min_warmup_steps >= 0, "0 or more"),
            max_length=(max_length, max_length > 0, "a positive number of positions"),
            target_cache_size=(target_cache_size, target_cache_size >= 0, "0 or more"),
            diffusion_loss_weight=(diffusion_loss_weight, diffusion_loss_weight >= 0, "0 or more"),
            min_snr_gamma=(min_snr_gamma, min_snr_gamma is None or min_snr_gamma > 0, "a positive number"),
            schedule_steps=(schedule_steps, schedule_steps is None or schedule_steps > 0, "a positive number"),
        )
        self.save_hyperparameters()
        overrides = {
            "input_projectors": train_input_projectors,
            "output_projectors": train_output_projectors,
            "signal_rows": train_signal_rows,
            "lora": train_lora,
        }
        self.trainable_groups = {k: (STAGE_DEFAULTS[stage][k] if v is None else bool(v)) for k, v in overrides.items()}
        self.model: Any = None
        self.caches: Any = None
        self._targets: OrderedDict[tuple[str, str], Condition] = OrderedDict()
        self._saved_schedule: dict[str, int] | None = None
        self._schedule: dict[str, int] | None = None
        self._step_sources: list[str] = []
        self.in_optimizer_step = False
        """True while an optimizer step is changing the weights (a checkpoint then would be torn)."""
        self._truncated: set[str] = set()
        self.skipped: list[str] = []
        """Samples left out by the training step itself (a feature-cache miss it could not read)."""

    # -- building ---------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Build the model (once) and choose what trains. Lightning calls this before fitting,
        inside the strategy's context; it is cheap to call again."""
        from nextgpt.threads import configure_threads

        configure_threads(self.hparams.get("num_threads"))
        if self.model is not None:
            return
        from nextgpt.model import NextGPTModel
        from nextgpt.overrides import Overrides
        from nextgpt.plugins import default_registry, load_plugins

        hp = self.hparams
        registry = load_plugins(allow=hp.plugins) if hp.plugins else default_registry()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.seed)
            self.model = NextGPTModel.from_pretrained(
                hp.model,
                registry=registry,
                modalities=hp.modalities,
                decoders=hp.decoders,
                overrides=Overrides.from_assignments(hp.get("overrides") or [], "model.overrides"),
            )
        if self.trainable_groups["lora"] and not self.model.config.llm.lora:
            raise ConfigError(f"model.train_lora: the model {hp.model!r} has no LoRA adapters (llm.lora is null)")
        self._apply_trainable()
        if hp.gradient_checkpointing:
            base_model(self.model.llm).gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        if self.align_enabled and not self.model.decoders:
            self.hparams.align_loss = False
        if hp.cache_dir:
            from nextgpt.training.cache import ModelCaches

            self.caches = ModelCaches(self.model, hp.cache_dir)

    def enabled_modalities(self) -> list[str] | None:
        """The model's modalities without building it (None: unknown, e.g. a hub id)."""
        if self.model is not None:
            return list(self.model.specs)
        from nextgpt.presets import PRESETS

        hp = self.hparams
        if hp.model in PRESETS:
            return list(hp.modalities) if hp.modalities else None
        config = Path(hp.model).expanduser() / "config.json"
        try:
            return list(json.loads(config.read_text())["config"]["modalities"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _apply_trainable(self) -> None:
        self.model.set_trainable(**self.trainable_groups)
        self.model.encoders.eval()

    @property
    def align_enabled(self) -> bool:
        if self.hparams.align_loss is not None:
            return bool(self.hparams.align_loss)
        groups = self.trainable_groups
        return groups["output_projectors"] or groups["signal_rows"] or groups["lora"]

    def train(self, mode: bool = True) -> NextGPTLightningModule:
        super().train(mode)
        if self.model is not None:
            self.model.encoders.eval()  # frozen encoders never leave eval mode
        return self

    def check_diffusion_support(self) -> None:
        """With ``diffusion_loss_weight > 0`` every decoder must declare ``supports_denoising_loss``."""
        if self.hparams.diffusion_loss_weight <= 0:
            return
        model = self.model
        lacking = [
            f"{name} ({cfg.decoder.backend})"
            for name, cfg in model.modality_configs.items()
            if name in model.decoders and not model.decoders[name].supports_denoising_loss
        ]
        if lacking:
            raise ConfigError(
                "model.diffusion_loss_weight: these decoders offer no denoising_loss (supports_denoising_loss "
                f"is False): {', '.join(lacking)}"
            )

    def on_fit_start(self) -> None:
        self.check_diffusion_support()
        for decoder in self.model.decoders.values():
            decoder.to(self.device)

    def on_train_epoch_start(self) -> None:
        set_epoch = getattr(self.trainer.train_dataloader, "set_epoch", None)
        if callable(set_epoch):  # a ResumableDataLoader: reaches our sampler inside a DDP wrapper
            set_epoch(self.current_epoch)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, SampleBatch):
            return batch  # raw media; the encoders' preprocessing moves tensors to the device
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- the step ---------------------------------------------------------------------------------
    def output_turns(self, turns: Sequence[Turn]) -> list[Turn]:
        """Assistant turns with each modality's placeholder replaced by its signal tokens."""
        if getattr(self, "_output_pattern", None) is None:
            specs = self.model.specs
            self._owners = {spec.signal_tokens.placeholder: name for name, spec in specs.items()}
            self._runs = {spec.signal_tokens.placeholder: "".join(spec.signal_tokens.tokens) for spec in specs.values()}
            alternatives = sorted(self._runs, key=len, reverse=True)
            self._output_pattern = re.compile("|".join(re.escape(p) for p in alternatives) or r"(?!x)x")
        out = []
        for turn in turns:
            if turn.role == "assistant":
                for match in self._output_pattern.finditer(turn.text):
                    owner = self._owners[match.group(0)]
                    if owner not in self.model.decoders:
                        raise ConfigError(f"modality {owner!r} has no decoder in this model: it cannot be an output")
                turn = Turn(role=turn.role, text=self._output_pattern.sub(lambda m: self._runs[m.group(0)], turn.text))
            out.append(turn)
        return out

    def load_cache_misses(self, batch: SampleBatch) -> None:
        """With a feature cache, read the media files the cache does not hold. A file that cannot
        be read raises a `MediaError` naming it and its record, or with
        ``batch.on_bad_record == "skip"`` leaves its sample out of the batch with a warning."""
        if self.caches is None:
            return
        kept = []
        for sample in batch.samples:
            try:
                for j, (modality, item) in enumerate(sample.media):
                    cache = self.caches.features.get(modality)
                    key = sample.media_keys[j] if sample.media_keys else None
                    if item is None and cache is not None and (key is None or key not in cache):
                        sample.media[j] = (modality, self._read_media(modality, sample.media_paths[j], sample.source))
            except MediaError as exc:
                if batch.on_bad_record != "skip":
                    raise
                self.skipped.append(sample.source)
                warnings.warn(
                    f"skipped {sample.source}: {exc} (on_bad_record: skip; {len(self.skipped)} skipped by the "
                    "training step so far)",
                    SkippedRecordWarning,
                    stacklevel=2,
                )
                continue
            kept.append(sample)
        batch.samples = kept

    def _read_media(self, modality: str, path: Path, source: str) -> Any:
        try:
            return self.model.specs[modality].load(path)
        except MediaError as exc:
            raise MediaError(path, f"{exc.reason} (record {source})") from exc
        except OSError as exc:
            raise MediaError(path, f"cannot read: {exc.strerror or exc} (record {source})") from exc

    def prepare(self, batch: SampleBatch) -> PaddedBatch:
        """Encode the batch's media (one call per modality, any mix) and pack and pad it."""
        model = self.model
        per_sample: list[list[torch.Tensor | None]] = [[None] * len(s.media) for s in batch.samples]
        for modality, entries in batch.media_by_modality().items():
            if modality not in model.specs:
                raise ConfigError(
                    f"{batch.samples[entries[0][0]].source}: modality {modality!r} is not enabled in the model"
                )
            if self.caches is None:
                embeds = model.encode_media(modality, [item for _, _, item in entries])
            else:
                embeds = self.encode_cached(modality, batch, entries)
            for (i, j, _), embed in zip(entries, embeds, strict=True):
                per_sample[i][j] = embed
        packed = [
            model.pack(self.output_turns(s.turns), per_sample[i], add_generation_prompt=False)  # type: ignore[arg-type]
            for i, s in enumerate(batch.samples)
        ]
        self._warn_truncated(batch, packed)
        return pad_packed(packed, model.tokenizer.pad_token_id, self.hparams.max_length)

    def _warn_truncated(self, batch: SampleBatch, packed: Sequence[Any]) -> None:
        """Say (once per record) which samples are longer than ``max_length`` and lose their end."""
        limit = int(self.hparams.max_length)
        long = {
            s.source: int(p.input_ids.shape[0])
            for s, p in zip(batch.samples, packed, strict=True)
            if p.input_ids.shape[0] > limit and s.source not in self._truncated
        }
        if long:
            self._truncated.update(long)
            shown = [f"{source} ({length})" for source, length in long.items()]
            warnings.warn(
                f"{len(long)} record(s) longer than model.max_length={limit} positions are cut at the end, where "
                f"the answer is: {', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''}",
                NextGPTWarning,
                stacklevel=2,
            )

    def media_features(self, modality: str, items: Sequence[Any], keys: Sequence[str | None]) -> torch.Tensor:
        """Frozen-encoder features ``[B, n, d_enc]`` of ``items``, through the feature cache: a hit
        skips reading, preprocessing and encoding; a miss is computed and stored. Every value
        goes through the cache's storage dtype, so a hit and a miss give the same numbers."""
        model = self.model
        cache = self.caches.features[modality]
        features: list[torch.Tensor | None] = [cache.get(k) if k is not None else None for k in keys]
        missing = [n for n, f in enumerate(features) if f is None]
        if missing:
            encoder = model.encoders[modality]
            loaded = [items[n] for n in missing]
            batch = torch.stack([encoder.preprocess(item) for item in loaded]).to(model.device)
            with torch.no_grad():
                computed = encoder(batch)
            for n, value in zip(missing, computed, strict=True):
                stored = value.detach().to("cpu", cache.dtype or value.dtype)
                if keys[n] is not None and self.hparams.cache_write:
                    cache.put(keys[n], stored)
                features[n] = stored
        return torch.stack(features).to(model.device)  # type: ignore[arg-type]

    def encode_cached(self, modality: str, batch: SampleBatch, entries: list[tuple[int, int, Any]]) -> torch.Tensor:
        model = self.model
        cache = self.caches.features[modality]
        keys = [batch.samples[i].media_keys[j] if batch.samples[i].media_keys else None for i, j, _ in entries]
        items = []
        for (i, j, item), key in zip(entries, keys, strict=True):
            if item is None and (key is None or key not in cache):
                item = model.specs[modality].load(batch.samples[i].media_paths[j])
            items.append(item)
        features = self.media_features(modality, items, keys)
        projector = model.input_projectors[modality]
        return projector(features.to(next(projector.parameters()).dtype))

    def caption_targets(self, modality: str, captions: list[str]) -> Condition:
        """The decoder's conditions of ``captions`` (no grad), kept in a bounded memory cache
        and, with ``cache_dir``, on disk."""
        disk = self.caches.targets.get(modality) if self.caches is not None else None
        missing = []
        for caption in dict.fromkeys(captions):
            if (modality, caption) in self._targets:
                continue
            if disk is not None:
                stored = disk.get(caption)
                if stored is not None:
                    self._remember_target(modality, caption, stored)
                    continue
            missing.append(caption)
        if missing:
            with torch.no_grad():
                values = self.model.decoders[modality].condition_from_text(missing).detach()
            for caption, value in zip(missing, values.rows(), strict=True):
                if disk is not None:
                    value = value.to("cpu", disk.dtype)
                    if self.hparams.cache_write:
                        disk.put(caption, value)
                self._remember_target(modality, caption, value)
        return Condition.cat(self._targets[(modality, c)] for c in captions)

    def _remember_target(self, modality: str, caption: str, value: Condition) -> None:
        self._targets[(modality, caption)] = value
        if len(self._targets) > self.hparams.target_cache_size:
            self._targets.popitem(last=False)

    def on_train_epoch_end(self) -> None:
        if self.caches is not None:
            self.caches.flush()

    def on_fit_end(self) -> None:
        if self.caches is not None:
            self.caches.flush()

    def compute_losses(self, batch: SampleBatch) -> LossTerms:
        model = self.model
        padded = self.prepare(batch)
        out = model.llm(
            inputs_embeds=padded.embeds,
            attention_mask=padded.attention_mask,
            output_hidden_states=True,
            use_cache=False,
        )
        lm = lm_loss(out.logits, padded.labels)
        align: dict[str, torch.Tensor] = {}
        diffusion: dict[str, torch.Tensor] = {}
        weight = float(self.hparams.diffusion_loss_weight)
        if self.align_enabled or weight > 0:
            last = out.hidden_states[-1]
            for modality in model.decoders:
                conditions, rows = model.signal_conditions(last, padded.input_ids, modality)
                samples = [batch.samples[int(r)] for r in rows.tolist()]
                keep = [k for k, sample in enumerate(samples) if modality in sample.targets]
                if keep and self.align_enabled:
                    captions = [samples[k].targets[modality] for k in keep]
                    predicted = conditions.select(keep)
                    target = self.caption_targets(modality, captions).to(predicted.device, predicted.dtype)
                    align[modality] = alignment_loss(predicted, target)
                with_media = [k for k, sample in enumerate(samples) if modality in sample.outputs]
                if with_media and weight > 0:
                    diffusion[modality] = model.decoders[modality].denoising_loss(
                        conditions.select(with_media),
                        [samples[k].outputs[modality] for k in with_media],
                        min_snr_gamma=self.hparams.min_snr_gamma,
                    )
        modalities = set(align) | set(diffusion)
        weights = {m: float(model.modality_configs[m].loss_weight) for m in modalities}
        return LossTerms(lm=lm, align=align, weights=weights, diffusion=diffusion, diffusion_weight=weight)

    def training_step(self, batch: SampleBatch, batch_idx: int) -> torch.Tensor | None:
        self.load_cache_misses(batch)
        if len(batch) == 0:
            return None  # every sample of the batch was unreadable and skipped: no step
        sources = [s.source for s in batch.samples]
        self._step_sources.extend(sources)
        terms = self.compute_losses(batch)
        if not bool(torch.isfinite(terms.total.detach())):
            parts = ", ".join(f"{k.removeprefix('train/')}={float(v):.4g}" for k, v in terms.as_logs("train/").items())
            raise NonFiniteTrainingError(
                f"the loss is not finite in training step {self.global_step + 1} ({parts}); the batch's records: "
                f"{', '.join(sources)}. Nothing was trained on this batch and no checkpoint of it is written; "
                "check these records' media, or lower the learning rate"
            )
        logs = terms.as_logs("train/")
        # Lightning re-logs a step metric's last value in steps that do not log it: a modality
        # absent from this batch is logged as NaN rather than as a stale number.
        for modality in self.model.decoders:
            if self.align_enabled:
                logs.setdefault(f"train/align_{modality}", torch.tensor(float("nan")))
            if self.hparams.diffusion_loss_weight > 0:
                logs.setdefault(f"train/diffusion_{modality}", torch.tensor(float("nan")))
        self.log_dict({k: v for k, v in logs.items() if k != "train/loss"}, on_step=True, batch_size=len(batch))
        self.log("train/loss", logs["train/loss"], on_step=True, prog_bar=True, batch_size=len(batch))
        return terms.total

    def validation_step(self, batch: SampleBatch, batch_idx: int) -> torch.Tensor | None:
        self.load_cache_misses(batch)
        if len(batch) == 0:
            return None
        terms = self.compute_losses(batch)
        self.log_dict(terms.as_logs("val/"), on_epoch=True, batch_size=len(batch), sync_dist=True)
        return terms.total

    # -- optimisation -----------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters, with weight decay off for the embedding rows and matrices,
        biases and norms."""
        inner = base_model(self.model.llm)
        no_decay_ids = {id(p) for p in signal_row_parameters(inner)}
        for module in (inner.get_input_embeddings(), inner.get_output_embeddings()):
            if module is not None and not hasattr(module, "parametrizations"):
                no_decay_ids.add(id(module.weight))
        decay, no_decay = [], []
        for _, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if id(param) in no_decay_ids or param.ndim < 2 else decay).append(param)
        if not decay and not no_decay:
            raise ConfigError("nothing to train: every trainable group is off")
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]

    def warmup(self, total: int) -> int:
        hp = self.hparams
        if hp.warmup_steps is not None:
            return int(hp.warmup_steps)
        return min(total, max(hp.min_warmup_steps, int(hp.warmup_ratio * total)))

    def schedule_length(self) -> tuple[int, int]:
        """``(total, warmup)`` optimizer steps of the learning-rate schedule: ``schedule_steps``
        if set; else, resuming, the checkpoint's; else the trainer's planned steps."""
        hp = self.hparams
        planned = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        saved = self._saved_schedule
        if hp.schedule_steps is not None:
            total = int(hp.schedule_steps)
            warmup = self.warmup(total)
            if saved is not None and saved["total_steps"] != total:
                warnings.warn(
                    f"resuming with model.schedule_steps={total}: the learning-rate schedule changes from the "
                    f"checkpoint's {saved['total_steps']} steps, so this run differs from an uninterrupted one",
                    NextGPTWarning,
                    stacklevel=2,
                )
            return total, warmup
        if saved is not None:
            total, warmup = saved["total_steps"], saved["warmup_steps"]
            if planned != total:
                warnings.warn(
                    f"resuming: the learning-rate schedule keeps the checkpoint's length of {total} steps while the "
                    f"trainer now plans {planned}; after step {total} the rate stays at the schedule's end value "
                    f"({'0' if hp.schedule in ('linear', 'cosine') else 'the base rate'}). To stretch the schedule "
                    f"instead, pass --model.schedule_steps {planned}",
                    NextGPTWarning,
                    stacklevel=2,
                )
            return total, warmup
        return planned, self.warmup(planned)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.parameter_groups(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )
        total, warmup = self.schedule_length()
        self._schedule = {"total_steps": total, "warmup_steps": warmup}
        schedule = hp.schedule

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return max(0.0, 1.0 - progress) if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's step, then a check that every trained weight is still finite."""
        self.in_optimizer_step = True
        super().optimizer_step(*args, **kwargs)
        self.in_optimizer_step = False
        sources, self._step_sources = self._step_sources, []
        bad = self.non_finite_parameters()
        if bad:
            raise NonFiniteTrainingError(
                f"optimizer step {self.global_step + 1} made trained weights NaN or infinite ({', '.join(bad[:5])}); "
                f"the batch's records: {', '.join(sources)}. No checkpoint of these weights is written; lower the "
                "learning rate or check these records"
            )

    def non_finite_parameters(self) -> list[str]:
        """Names of the trained parameters holding NaN or infinite values."""
        if self.model is None:
            return []
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not named:
            return []
        finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).tolist()
        return [name for (name, _), ok in zip(named, finite, strict=True) if not ok]

    # -- checkpoints: trainable parameters only -----------------------------------------------------
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:  # type: ignore[override]
        """Only what trains (`NextGPTModel.trainable_state_dict`): a checkpoint is a few MB,
        not the whole LLM. Fills ``destination`` under ``prefix`` when a wrapping module's
        ``state_dict`` recurses into this one."""
        self.configure_model()
        state = self.model.trainable_state_dict()
        if args and isinstance(args[0], dict):  # the legacy positional form (destination, prefix)
            destination, prefix = args[0], (args[1] if len(args) > 1 else prefix)
        if destination is None:
            return state
        for key, value in state.items():
            destination[prefix + key] = value
        return destination

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Strict: a missing or unused key is a `ConfigError` listing them."""
        self.configure_model()
        self.model.load_trainable_state_dict(dict(state_dict), source="checkpoint state_dict")
        return _IncompatibleKeys([], [])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format_version": 2,  # 2: signal rows are their own parameters in the optimizer state
            "model_config": self.model.config.model_dump(mode="json"),
            "signal_token_ids": self.model.signal_ids,
            "trainable_groups": dict(self.trainable_groups),
            "schedule": self._schedule,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY)
        if meta is None:
            raise ConfigError("checkpoint: not written by NextGPTLightningModule (no 'nextgpt' entry)")
        self.configure_model()
        if meta.get("signal_token_ids") != self.model.signal_ids:
            raise ConfigError(
                f"checkpoint: signal token ids {meta.get('signal_token_ids')} differ from the model's "
                f"{self.model.signal_ids}"
            )
        schedule = meta.get("schedule")
        if isinstance(schedule, dict) and {"total_steps", "warmup_steps"} <= set(schedule):
            self._saved_schedule = {k: int(schedule[k]) for k in ("total_steps", "warmup_steps")}
