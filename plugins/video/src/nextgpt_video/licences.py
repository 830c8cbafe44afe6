"""Licences of the video plugin's own encoder backends (kept import-light: no transformers here)."""

from nextgpt.licences import Licence

SIGLIP_LICENCE = Licence(
    name="Apache-2.0", commercial="yes", source="https://huggingface.co/google/siglip-so400m-patch14-384"
)
"""SigLIP (Google): code and weights under Apache-2.0."""
