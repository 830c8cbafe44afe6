"""`NextGPTLightningModule`: the three NExT-GPT alignment stages as one LightningModule.

``stage`` picks what trains (`nextgpt.training.stages`: 1 input projectors, 2 output projectors
and signal rows, 3 LoRA and both projectors; each group overridable).

A training step encodes the media through the model's one encoding path
(`NextGPTModel.encode_media`; with ``cache_dir`` the feature cache is its feature source,
`nextgpt.training.features`), packs every conversation exactly as generation does
(`NextGPTModel.pack`, after the answers' output placeholders become signal tokens,
`nextgpt.training.targets`), runs the LLM once, and adds to the LM cross-entropy, for each
modality whose signal tokens the answer contains, the alignment loss between the output
projector's condition (read by `NextGPTModel.signal_conditions`, the same positions generation
reads) and the decoder's embedding of the gold caption (`nextgpt.training.losses`). The
optimiser and the learning-rate schedule are in `nextgpt.training.optim`, the checks that stop
a bad run early in `nextgpt.training.checks`.

Checkpoints hold only the trainable parameters (`NextGPTModel.trainable_state_dict`) and the
optimizer state; the frozen LLM, encoders and decoders are rebuilt from the model's source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.nn.modules.module import _IncompatibleKeys

from nextgpt.conditions import Condition
from nextgpt.data.collate import PaddedBatch, pad_packed
from nextgpt.data.dataset import SampleBatch
from nextgpt.errors import ConfigError
from nextgpt.llm import base_model
from nextgpt.suggest import hint, listing
from nextgpt.templates import Turn
from nextgpt.training.checks import NonFiniteTrainingError, check_settings, non_finite_parameters, warn_truncated
from nextgpt.training.losses import LossTerms, alignment_loss, lm_loss
from nextgpt.training.optim import build_optimizer, parameter_groups, schedule_length, warmup_length
from nextgpt.training.recipes import RECIPES, RecipeName
from nextgpt.training.stages import STAGE_DEFAULTS, alignment_enabled, check_stage, trainable_groups
from nextgpt.training.targets import CaptionTargets, OutputTurns

__all__ = ["CHECKPOINT_KEY", "STAGE_DEFAULTS", "NextGPTLightningModule", "NonFiniteTrainingError"]

CHECKPOINT_KEY = "nextgpt"

LIGER_FAMILIES = frozenset({"llama"})
"""LLM ``model_type``s `NextGPTLightningModule.apply_liger_kernels` patches (Vicuna is one)."""


class NextGPTLightningModule(LightningModule):
    """Trains a `NextGPTModel` built from a preset name or a `save_pretrained` folder.

    Args:
        model: a preset (``tiny``, ``nextgpt-7b-v0``), a named model (e.g. ``toy``), a folder
            written by ``save_pretrained`` (e.g. the export of an earlier stage), or a hub id of
            such a folder (``nextgpt fit --model NAME`` sets it).
        recipe: ``default``, or ``legacy`` to train as the 2023 release did
            (`nextgpt.training.recipes`: whole embedding and lm_head in every stage, weight
            decay on everything, lr 5e-4, stage-2 alignment weights all 1).
        stage: 1 (encoding alignment), 2 (decoding alignment) or 3 (instruction tuning).
        train_input_projectors, train_output_projectors, train_signal_rows, train_lora:
            override the stage's choice (``None`` keeps it).
        plugins: plugin names to load (default: ``NEXTGPT_PLUGINS`` or every installed one).
        modalities: the modalities to enable: with a preset, installed ones (default: all); with
            a folder, some of its own (default: all; the others' trained tensors are kept).
        lr, betas, weight_decay: AdamW settings; no decay on the embedding matrices, biases
            and norms. ``lr`` None: the recipe's (4e-4; ``legacy``: 5e-4).
        warmup_steps: linear warmup steps; ``None`` gives ``max(min_warmup_steps, warmup_ratio
            * total steps)`` as released.
        schedule: decay after the warmup: ``linear`` or ``cosine`` to 0, or ``constant``.
        max_length: sequences are truncated to this many positions.
        align_loss: add the alignment loss; ``None``: when anything it reaches trains.
        gradient_checkpointing: recompute the LLM's activations in the backward pass.
        liger_kernels: run the LLM's RMSNorm, SwiGLU MLP and rotary embedding as Liger's fused
            Triton kernels (``pip install 'nextgpt-core[liger]'``): LLaMA-family LLMs on a CUDA
            GPU only; anything else is a `ConfigError` when fitting starts. The loss is computed
            as without them.
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
        lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 1e-3,
        warmup_steps: int | None = None,
        warmup_ratio: float = 0.1,
        min_warmup_steps: int = 10,
        schedule: Literal["linear", "cosine", "constant"] = "linear",
        max_length: int = 512,
        align_loss: bool | None = None,
        gradient_checkpointing: bool = False,
        liger_kernels: bool = False,
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
        recipe: RecipeName = "default",
    ) -> None:
        super().__init__()
        check_stage(stage)
        if recipe not in RECIPES:
            raise ConfigError(
                f"model.recipe: unknown recipe {recipe!r}{hint(recipe, RECIPES)} (recipes: {listing(RECIPES)})"
            )
        self.recipe = RECIPES[recipe]
        lr = self.recipe.lr if lr is None else lr
        check_settings(
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
        self.hparams.lr = lr
        overrides = {
            "input_projectors": train_input_projectors,
            "output_projectors": train_output_projectors,
            "signal_rows": True
            if self.recipe.embeddings_every_stage and train_signal_rows is None
            else train_signal_rows,
            "lora": train_lora,
        }
        self.trainable_groups = trainable_groups(stage, overrides)
        self.model: Any = None
        self.caches: Any = None
        self._output_turns: OutputTurns | None = None
        self._caption_targets: CaptionTargets | None = None
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
        overrides = Overrides.from_assignments(
            self._recipe_overrides() + list(hp.get("overrides") or []), "model.overrides"
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.seed)
            self.model = NextGPTModel.from_pretrained(
                hp.model,
                registry=registry,
                modalities=hp.modalities,
                decoders=hp.decoders,
                overrides=overrides,
                device=self._quantized_llm_device(overrides, registry),
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
        if self.recipe.captions_cut_at_start:
            for name, decoder in self.model.decoders.items():
                if not decoder.cut_long_captions_at_start():
                    rank_zero_warn(f"recipe {self.recipe.name}: decoder {name} keeps its caption truncation")
        if hp.cache_dir:
            from nextgpt.training.cache import ModelCaches
            from nextgpt.training.features import CachedFeatures

            self.caches = ModelCaches(self.model, hp.cache_dir)
            self.model.feature_source = CachedFeatures(self.caches.features, write=hp.cache_write)

    def _recipe_overrides(self) -> list[str]:
        """Model settings the recipe implies (the user's ``overrides`` come after and win)."""
        return ["llm.train_embeddings=full"] if self.recipe.embeddings_every_stage else []

    def _quantized_llm_device(self, overrides: Any, registry: Any) -> torch.device | None:
        """Where a quantised LLM must load (bitsandbytes quantises on the GPU, and the weights
        cannot move afterwards): the trainer's device. None (the CPU, moved by Lightning) for an
        LLM in a plain dtype, or without a trainer."""
        from nextgpt.overrides import planned_config

        config = planned_config(self.hparams.model, overrides, registry, self.hparams.modalities)
        if config.llm.quantization is None or self._trainer is None:
            return None
        return self.trainer.strategy.root_device

    def enabled_modalities(self) -> list[str] | None:
        """The model's modalities without building it (None: unknown, e.g. a hub id)."""
        if self.model is not None:
            return list(self.model.specs)
        from nextgpt.presets import PRESETS

        hp = self.hparams
        if hp.modalities:
            return list(hp.modalities)
        if hp.model in PRESETS:
            return None
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
        """Whether the alignment loss applies (`nextgpt.training.stages.alignment_enabled`)."""
        return alignment_enabled(self.trainable_groups, self.hparams.align_loss)

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

    def apply_liger_kernels(self) -> None:
        """With ``liger_kernels``: patch the LLM with Liger's kernels, after checking that it is
        of the LLaMA family, that the run is on a CUDA GPU and that ``liger-kernel`` is installed."""
        if not self.hparams.get("liger_kernels"):
            return
        llm = base_model(self.model.llm)
        family = getattr(llm.config, "model_type", None)
        if family not in LIGER_FAMILIES:
            raise ConfigError(
                f"model.liger_kernels: Liger kernels are applied to LLaMA-family LLMs "
                f"({', '.join(sorted(LIGER_FAMILIES))}); this LLM is {family!r} (set model.liger_kernels: false)"
            )
        if self.device.type != "cuda":
            raise ConfigError(
                f"model.liger_kernels: Liger's Triton kernels need a CUDA GPU; this run is on {self.device.type} "
                "(set trainer.accelerator: gpu, or model.liger_kernels: false)"
            )
        try:
            from liger_kernel.transformers import apply_liger_kernel_to_llama
        except ImportError as exc:
            raise ConfigError(
                "model.liger_kernels: the liger-kernel package is not installed (pip install 'nextgpt-core[liger]')"
            ) from exc
        apply_liger_kernel_to_llama(
            model=llm, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
        )

    def on_fit_start(self) -> None:
        self.apply_liger_kernels()
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
        """Assistant turns with each modality's placeholder replaced by its signal tokens
        (`nextgpt.training.targets.OutputTurns`)."""
        if self._output_turns is None:
            self._output_turns = OutputTurns(self.model.specs, self.model.decoders)
        return self._output_turns(turns)

    def caption_targets(self, modality: str, captions: list[str]) -> Condition:
        """The decoder's conditions of ``captions`` (no grad), kept in a bounded memory cache
        and, with ``cache_dir``, on disk (`nextgpt.training.targets.CaptionTargets`)."""
        if self._caption_targets is None:
            hp = self.hparams
            disk = self.caches.targets if self.caches is not None else None
            self._caption_targets = CaptionTargets(self.model.decoders, disk, hp.target_cache_size, hp.cache_write)
        return self._caption_targets(modality, captions)

    def load_cache_misses(self, batch: SampleBatch) -> None:
        """With a feature cache, read the media files the cache does not hold. A file that cannot
        be read raises a `MediaError` naming it and its record, or with
        ``batch.on_bad_record == "skip"`` leaves its sample out of the batch with a warning
        (`nextgpt.training.features.read_missing_media`)."""
        from nextgpt.training.features import CachedFeatures, read_missing_media

        if isinstance(self.model.feature_source, CachedFeatures):
            read_missing_media(self.model, batch, self.model.feature_source, self.skipped)

    def prepare(self, batch: SampleBatch) -> PaddedBatch:
        """Encode the batch's media (one call per modality, any mix) and pack and pad it."""
        from nextgpt.training.features import batch_media

        model = self.model
        per_sample: list[list[torch.Tensor | None]] = [[None] * len(s.media) for s in batch.samples]
        for modality, entries in batch.media_by_modality().items():
            if modality not in model.specs:
                raise ConfigError(
                    f"{batch.samples[entries[0][0]].source}: modality {modality!r} is not enabled in the model"
                )
            items, keys = batch_media(model, batch, modality, entries)
            embeds = model.encode_media(modality, items, keys)
            for (i, j, _), embed in zip(entries, embeds, strict=True):
                per_sample[i][j] = embed
        packed = [
            model.pack(self.output_turns(s.turns), per_sample[i], add_generation_prompt=False)  # type: ignore[arg-type]
            for i, s in enumerate(batch.samples)
        ]
        warn_truncated(batch, packed, int(self.hparams.max_length), self._truncated)
        return pad_packed(packed, model.tokenizer.pad_token_id, self.hparams.max_length)

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
        uniform = self.hparams.stage in self.recipe.uniform_weights_in_stage
        weights = {m: 1.0 if uniform else float(model.modality_configs[m].loss_weight) for m in modalities}
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
        biases and norms (`nextgpt.training.optim.parameter_groups`)."""
        return parameter_groups(self.model, self.hparams.weight_decay, decay_everything=self.recipe.decay_everything)

    def warmup(self, total: int) -> int:
        hp = self.hparams
        return warmup_length(total, hp.warmup_steps, hp.warmup_ratio, hp.min_warmup_steps)

    def schedule_length(self) -> tuple[int, int]:
        """``(total, warmup)`` optimizer steps of the learning-rate schedule: ``schedule_steps``
        if set; else, resuming, the checkpoint's; else the trainer's planned steps."""
        planned = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        hp = self.hparams
        return schedule_length(planned, hp.schedule_steps, self._saved_schedule, self.warmup, hp.schedule)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        total, warmup = self.schedule_length()
        self._schedule = {"total_steps": total, "warmup_steps": warmup}
        return build_optimizer(self.parameter_groups(), hp.lr, hp.betas, hp.weight_decay, hp.schedule, total, warmup)

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
        return non_finite_parameters(self.model)

    # -- checkpoints: trainable parameters only -----------------------------------------------------
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:  # type: ignore[override]
        """Only what trains (`NextGPTModel.trainable_state_dict`): a checkpoint is a few MB,
        not the whole LLM. Fills ``destination`` under ``prefix`` when a wrapping module's
        ``state_dict`` recurses into this one."""
        from nextgpt.training.strategies import gathered_trainable

        self.configure_model()
        with gathered_trainable(self.model):  # DeepSpeed ZeRO-3: whole tensors, not partitions
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
        from nextgpt.training.strategies import gathered_trainable

        self.configure_model()
        with gathered_trainable(self.model, modifier_rank=0):
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
