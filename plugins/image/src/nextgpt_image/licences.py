"""Licences of the image plugin's own backends (kept import-light: no transformers here)."""

from nextgpt.interfaces import Licence

SIGLIP_LICENCE = Licence(
    name="Apache-2.0",
    commercial_use=True,
    url="https://huggingface.co/google/siglip-so400m-patch14-384",
)
