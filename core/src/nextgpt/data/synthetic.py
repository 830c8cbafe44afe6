"""A tiny synthetic data set in the released formats, for tests and the tiny example configs.

Media come from each plugin's ``spec.example()`` saved with ``spec.save``; captions are short
sentences from a small vocabulary. Nothing here knows a modality by name.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path

from nextgpt.interfaces import ModalitySpec

_SUBJECTS = ["a red ball", "a small dog", "the old tree", "a blue car"]
_ACTIONS = ["on the grass", "in the rain", "near the sea", "at night"]


def synthetic_captions(n: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS)}" for _ in range(n)]


def write_synthetic_dataset(
    root: str | Path, specs: Mapping[str, ModalitySpec], per_modality: int = 4, seed: int = 13
) -> dict[str, Path]:
    """Write media, ``pairs.json`` (all modalities mixed, released keys ``<m>_name``),
    ``instruction.json`` (``conversations`` + ``<m>_captions``, input placeholders) and
    ``mosit.json`` (inline ``<Tag>file</Tag>``) under ``root``. Returns the JSON paths by format."""
    root = Path(root)
    (root / "media").mkdir(parents=True, exist_ok=True)
    pairs: list[dict] = []
    instruction: list[dict] = []
    mosit: list[dict] = []
    names = sorted(specs)
    for m_index, name in enumerate(names):
        spec = specs[name]
        if spec.example is None:
            continue
        captions = synthetic_captions(per_modality, seed + m_index)
        item = spec.example()
        for i, caption in enumerate(captions):
            stem = f"media/{name}_{i}{spec.output_extension}"
            spec.save(item, root / stem)
            pairs.append({"caption": caption, "id": f"{name}-{i}", f"{name}_name": stem})
            placeholder = spec.signal_tokens.placeholder
            instruction.append(
                {
                    "id": f"{name}-{i}",
                    "conversations": [
                        {"from": "human", "value": f"{placeholder} What is this? Show me one like it."},
                        {"from": "gpt", "value": f"It is {caption}. Here it is: {placeholder}"},
                    ],
                    name: stem,
                    f"{name}_captions": [caption],
                }
            )
            tag = name.capitalize()
            mosit.append(
                {
                    "conversations": [
                        {"from": "human", "value": f"Look at <{tag}>{stem}</{tag}> please."},
                        {"from": "gpt", "value": f"I see {caption}."},
                        {"from": "human", "value": "Make another."},
                        {"from": "gpt", "value": f"Sure: <{tag}>out_{i}{spec.output_extension}</{tag}>"},
                    ],
                    f"{name}_captions": [caption],
                }
            )
    # interleave modalities so every batch mixes them
    order = sorted(range(len(pairs)), key=lambda k: (k % per_modality, k))
    out = {}
    for fmt, records in (
        ("pairs", [pairs[k] for k in order]),
        ("instruction", [instruction[k] for k in order]),
        ("mosit", [mosit[k] for k in order]),
    ):
        out[fmt] = root / f"{fmt}.json"
        out[fmt].write_text(json.dumps(records, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m nextgpt.data.synthetic OUT_DIR [PER_MODALITY]``: the tiny configs' data."""
    import sys

    from nextgpt.plugins import default_registry

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m nextgpt.data.synthetic OUT_DIR [PER_MODALITY]", file=sys.stderr)
        return 2
    registry = default_registry()
    specs = {name: registry.modality(name) for name in sorted(registry.modalities)}
    paths = write_synthetic_dataset(args[0], specs, int(args[1]) if len(args) > 1 else 4)
    for fmt, path in paths.items():
        print(f"{fmt}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
