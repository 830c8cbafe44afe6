"""What trains: freezing the model down to the chosen groups, and the trainable state.

A `NextGPTModel` trains about 1% of its parameters: the input and output projectors, the
signal-token rows of the embedding and lm_head (their own small parameters,
`nextgpt.llm.SignalRows`, or the whole matrices with ``train_embeddings="full"``) and LoRA.
`set_trainable` picks the groups (the training stages use it); `trainable_state_dict` is exactly
those tensors, which model folders (`nextgpt.model_folder`) and training checkpoints hold;
`load_trainable_state_dict` loads them strictly, naming what is missing, unused or mis-shaped.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from nextgpt.errors import ConfigError, NextGPTWarning
from nextgpt.llm import attach_signal_rows, base_model, detach_signal_rows, write_embedding_rows

if TYPE_CHECKING:
    from nextgpt.config import ModalityConfig, NextGPTConfig
    from nextgpt.interfaces import Decoder

NEW_DECODER_HINT = (
    " (trained for another decoder? start the folder with a new decoder: "
    "NextGPTModel.from_pretrained(folder, decoders={...}))"
)


class TrainableStateMixin:
    """Trainable groups and the trainable state of `NextGPTModel` (mixed into it)."""

    if TYPE_CHECKING:
        config: NextGPTConfig
        llm: nn.Module
        input_projectors: nn.ModuleDict
        output_projectors: nn.ModuleDict
        modality_configs: dict[str, ModalityConfig]
        decoders: dict[str, Decoder]
        inactive_ids: dict[str, list[int]]
        inactive_state: dict[str, torch.Tensor]
        new_token_ids: list[int]

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
            reshaped = any(k.startswith("output_projectors.") for k in (*missing, *unused))
            hint = NEW_DECODER_HINT if reshaped else ""
            raise ConfigError(f"{source}: missing keys {missing[:10]}, unused keys {unused[:10]}{hint}")
        for key, value in state.items():
            if value.shape != expected[key].shape:
                hint = NEW_DECODER_HINT if key.startswith("output_projectors.") else ""
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
