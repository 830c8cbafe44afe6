"""Licences of the audio plugin's own backends (kept import-light: no transformers here)."""

from nextgpt.licences import Licence

CLAP_LICENCE = Licence(name="Apache-2.0", commercial="yes", source="https://huggingface.co/laion/clap-htsat-unfused")
"""CLAP (LAION): code and weights under Apache-2.0."""
