"""The toy model's conversation: the scripted dialogue that ``nextgpt demo --model toy`` plays
(``demo.json`` in the model folder, its input files under ``demo/``) and that the learning
benchmark scores on many held-out captions (`toy_world.end_to_end.conversation_scores`).

One conversation shows a picture of the world and asks what is in it, asks for a video of that
shape moving (the world's own image -> video rule, as in its MosIT dialogues), then for a
picture and a sound of held-out captions: each output modality once, one media input, every
turn answered with the earlier ones in the context. ``shown_last`` moves the shown picture
after the two requests, the order in which the toy model does worst (its tiny LLM tends to
describe the sound it just made instead of the picture); the benchmark measures both.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from toy_world import world as W


@dataclass(frozen=True)
class ConversationTurn:
    """One user turn and what a right answer holds.

    Attributes:
        text: the user's words.
        shown: a world item attached to the turn (rendered from this concept), or None.
        wanted: the concept of the media output asked for, or None for an answer in words.
        answer: the right answer in words, for a turn that asks for no media.
    """

    text: str
    shown: W.Concept | None = None
    wanted: W.Concept | None = None
    answer: str | None = None


def conversation(
    image: W.Concept, sound: W.Concept, video: W.Concept, position: str, shown_last: bool = False
) -> list[ConversationTurn]:
    """The conversation about an ``image``, a ``sound`` and a ``video`` concept: the picture
    shown has the video's colour and shape, at ``position``; it opens the conversation, or with
    ``shown_last`` comes after the requests for the picture and the sound."""
    colour, shape, direction = video.attributes
    shown = W.Concept("image", (colour, shape, position))
    about_shown = [
        ConversationTurn("What is in this picture?", shown=shown, answer=f"It is {shown.caption}."),
        ConversationTurn(f"Now show me a video of it moving {direction}.", wanted=video),
    ]
    requests = [
        ConversationTurn(f"Show me a picture of {image.caption}.", wanted=image),
        ConversationTurn(f"Play me the sound of {sound.caption}.", wanted=sound),
    ]
    return [*requests, *about_shown] if shown_last else [*about_shown, *requests]


def heldout_conversations(
    heldout: dict[str, list[W.Concept]], n: int, shown_last: bool = False
) -> list[list[ConversationTurn]]:
    """``n`` conversations over the held-out concepts (each pool cycled in order); the shown
    picture's position cycles through the world's positions."""
    positions = list(W.POSITIONS)
    return [
        conversation(
            heldout["image"][i % len(heldout["image"])],
            heldout["audio"][i % len(heldout["audio"])],
            heldout["video"][i % len(heldout["video"])],
            positions[i % len(positions)],
            shown_last,
        )
        for i in range(n)
    ]


def write_demo(folder: str | Path, heldout: dict[str, list[W.Concept]], seed: int) -> Path:
    """Write ``demo.json`` (the first held-out conversation) and its input files into the model
    ``folder``; returns the script's path."""
    from nextgpt_image.media import save_image

    folder = Path(folder)
    turns = []
    for number, turn in enumerate(heldout_conversations(heldout, 1)[0], start=1):
        entry: dict = {"text": turn.text}
        if turn.shown is not None:
            name = f"demo/turn{number}_{turn.shown.modality}.png"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            save_image(W.render_image(turn.shown, random.Random(f"{seed}-demo")), folder / name)
            entry["inputs"] = [{"type": turn.shown.modality, "path": name}]
        if turn.wanted is not None:
            entry["request"] = [turn.wanted.modality]
        turns.append(entry)
    script = folder / "demo.json"
    script.write_text(json.dumps(turns, indent=1) + "\n")
    return script
