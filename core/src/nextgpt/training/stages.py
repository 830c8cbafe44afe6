"""The three NExT-GPT stages: what each one trains, and when the alignment loss applies.

``stage`` picks the trainable groups (each overridable):

=====  ==================  ===================  ============  =====
stage  input projectors    output projectors    signal rows   LoRA
=====  ==================  ===================  ============  =====
1      yes                 no                   no            no
2      no                  yes                  yes           no
3      yes                 yes                  no            yes
=====  ==================  ===================  ============  =====

1 is encoding-side alignment (X-caption pairs), 2 decoding-side alignment (captions only), 3
instruction tuning. `NextGPTModel.set_trainable` applies the groups.
"""

from __future__ import annotations

from collections.abc import Mapping

from nextgpt.errors import ConfigError

GROUPS = ("input_projectors", "output_projectors", "signal_rows", "lora")
"""The trainable groups, in `NextGPTModel.set_trainable`'s order."""

STAGE_DEFAULTS: dict[int, dict[str, bool]] = {
    1: {"input_projectors": True, "output_projectors": False, "signal_rows": False, "lora": False},
    2: {"input_projectors": False, "output_projectors": True, "signal_rows": True, "lora": False},
    3: {"input_projectors": True, "output_projectors": True, "signal_rows": False, "lora": True},
}


def check_stage(stage: object) -> None:
    """A `ConfigError` unless ``stage`` is 1, 2 or 3."""
    if stage not in STAGE_DEFAULTS:
        raise ConfigError(f"model.stage: expected 1, 2 or 3, got {stage!r}")


def trainable_groups(stage: int, overrides: Mapping[str, bool | None]) -> dict[str, bool]:
    """The stage's groups with ``overrides`` (group -> on/off; None keeps the stage's choice)."""
    check_stage(stage)
    return {k: (STAGE_DEFAULTS[stage][k] if overrides.get(k) is None else bool(overrides[k])) for k in GROUPS}


def alignment_enabled(groups: Mapping[str, bool], align_loss: bool | None) -> bool:
    """Whether the alignment loss applies: as set, or (None) when anything it reaches trains
    (the output projectors, the signal rows or LoRA)."""
    if align_loss is not None:
        return bool(align_loss)
    return groups["output_projectors"] or groups["signal_rows"] or groups["lora"]
