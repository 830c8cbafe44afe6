"""Licences as data: the `Licence` record every component (LLM, encoder, decoder) carries, and
the licences of the components nextgpt knows about. Plugins declare their own with `Licence`.

A licence record says three things a company needs before shipping a model: the licence's name,
whether it permits commercial use (``commercial``: ``yes``, ``restricted`` or ``no``) and where
that fact comes from (``source``: the licence text or model card). ``restricted`` carries its
restriction in ``note`` (e.g. a revenue limit). `nextgpt.licence_policy` reads these records to
refuse a model that a ``licence_policy: commercial`` configuration excludes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

Commercial = Literal["yes", "restricted", "no"]
"""Whether a licence permits commercial use: ``yes``; ``restricted`` (under a condition, stated in
the licence's ``note``); ``no`` (research or non-commercial only)."""


class Licence(BaseModel):
    """The licence a component (weights or code) is released under.

    ``Licence(name="Apache-2.0", commercial="yes", source="https://.../LICENSE")``. The older
    spellings ``commercial_use=True|False`` (``yes``/``no``) and ``url=`` (``source``) are read too.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """SPDX-like short name, e.g. ``CC-BY-NC-4.0``."""
    commercial: Commercial
    """Whether commercial use is permitted: ``yes``, ``restricted`` (see ``note``) or ``no``."""
    source: str | None = None
    """Where the licence fact comes from: the licence text or the model card (a URL)."""
    note: str | None = None
    """The restriction, in one line: required for ``restricted`` (e.g. a revenue limit); for the
    others, a condition worth stating with the name (e.g. use-based restrictions)."""

    @model_validator(mode="before")
    @classmethod
    def _older_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "commercial_use" in data:
            allowed = data.pop("commercial_use")
            data.setdefault("commercial", "yes" if allowed else "no")
        if "url" in data:
            url = data.pop("url")
            data.setdefault("source", url)
        return data

    @model_validator(mode="after")
    def _restriction_stated(self) -> Licence:
        if self.commercial == "restricted" and not self.note:
            raise ValueError(f"licence {self.name!r}: commercial='restricted' needs its restriction in note")
        return self

    @property
    def commercial_use(self) -> bool:
        """Whether commercial use is permitted without restriction (``commercial == "yes"``)."""
        return self.commercial == "yes"

    @property
    def url(self) -> str | None:
        """The older name of ``source``."""
        return self.source

    def __str__(self) -> str:
        if self.note:
            return f"{self.name} ({self.note})"
        return f"{self.name}{'' if self.commercial != 'no' else ' (non-commercial)'}"


APACHE_2 = Licence(name="Apache-2.0", commercial="yes", source="https://www.apache.org/licenses/LICENSE-2.0")
CC_BY_NC_4 = Licence(name="CC-BY-NC-4.0", commercial="no", source="https://creativecommons.org/licenses/by-nc/4.0/")
CC_BY_NC_SA_4 = Licence(
    name="CC-BY-NC-SA-4.0", commercial="no", source="https://creativecommons.org/licenses/by-nc-sa/4.0/"
)
OPENRAIL_M = Licence(
    name="CreativeML-OpenRAIL-M",
    commercial="yes",
    note="use-based restrictions",
    source="https://huggingface.co/spaces/CompVis/stable-diffusion-license",
)
OPENRAIL_PLUS_PLUS = Licence(
    name="CreativeML-OpenRAIL++-M",
    commercial="yes",
    note="use-based restrictions",
    source="https://huggingface.co/PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
)
"""PixArt-Sigma weights (and SDXL's VAE it uses): use-based restrictions, commercial use allowed."""
STABILITY_COMMUNITY = Licence(
    name="Stability-AI-Community",
    commercial="restricted",
    note="commercial use only under USD 1M annual revenue",
    source="https://huggingface.co/stabilityai/stable-audio-open-1.0/blob/main/LICENSE.md",
)
"""Stable Audio Open 1.0: free for research and for organisations under USD 1M annual revenue;
commercial use above that needs an enterprise licence from Stability AI."""
LLAMA_1 = Licence(
    name="LLaMA-1 research licence",
    commercial="no",
    source="Meta's LLaMA-1 release (February 2023): weights under a non-commercial research licence",
)
"""LLaMA-1 weights (and Vicuna v0, a delta on them): non-commercial research use only."""
RANDOM_WEIGHTS = Licence(
    name="random weights (no licence needed)", commercial="yes", source="built by nextgpt from a config"
)
IMAGEBIND = Licence(
    name="CC-BY-NC-4.0", commercial="no", source="https://github.com/facebookresearch/ImageBind/blob/main/LICENSE"
)
"""ImageBind code and weights (Meta): CC BY-NC 4.0."""
FLUX_SCHNELL = Licence(
    name="Apache-2.0", commercial="yes", source="https://huggingface.co/black-forest-labs/FLUX.1-schnell"
)
"""FLUX.1 [schnell] weights: Apache-2.0 (FLUX.1 [dev] is non-commercial; only schnell is this)."""
COGVIDEOX_2B = Licence(name="Apache-2.0", commercial="yes", source="https://huggingface.co/THUDM/CogVideoX-2b")
"""CogVideoX-2B weights: Apache-2.0 (CogVideoX-5B has its own, more restrictive licence)."""
WAN_2_1 = Licence(name="Apache-2.0", commercial="yes", source="https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
"""Wan 2.1 T2V-1.3B weights: Apache-2.0."""
QWEN_2_5 = Licence(name="Apache-2.0", commercial="yes", source="https://huggingface.co/Qwen/Qwen2.5-7B-Instruct")
"""Qwen2.5-7B-Instruct weights: Apache-2.0 (the 3B and 72B models have other licences)."""

KNOWN_LLMS: dict[str, Licence] = {
    "Qwen/Qwen2.5-7B-Instruct": QWEN_2_5,
    "lmsys/vicuna-7b-delta-v0": LLAMA_1,
    "huggyllama/llama-7b": LLAMA_1,
}
"""Licences of LLMs by hub id, used where ``llm.licence`` is not given (a folder's licence must
be declared in ``llm.licence``). Entries with ``commercial == "yes"`` are offered as replacements."""
