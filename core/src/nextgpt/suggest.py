""" "Did you mean" for names a user types: presets, modalities, sub-commands, chat commands."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (case-insensitive, difflib's ratio >= 0.6), or None."""
    options = list(choices)
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def hint(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean 'image'?"`` when a choice is close to ``word``, else ``""``.

    ``prefix`` is put before the suggested name (e.g. ``"/"`` for chat commands)."""
    match = closest(word, choices)
    return f"; did you mean '{prefix}{match}'?" if match else ""


def listing(choices: Iterable[str]) -> str:
    """``"a, b, c"``, or ``"none"``."""
    names = list(choices)
    return ", ".join(names) if names else "none"
