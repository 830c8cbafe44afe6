"""Writing the toy world to disk: media files (PNG, 16 kHz WAV, MP4 via the plugins' ``save_*``)
and the data files in NExT-GPT's released JSON formats, for a train and a held-out split.

Layout under ``root`` (media names in a JSON file are relative to its folder, the readers'
default root)::

    world.json                       seed, counts, the train / held-out captions per modality
    train/  heldout/                 one folder per split, each self-contained:
        cc3m.json                    [{caption, id, image_name}]          stage 1/2 pairs
        webvid.json                  [{caption, id, video_name}]
        audiocap.json                [{audio_id, audio_name, caption}]
        t2m.json                     instructions: text in, one modality (or text only) out
        mosit.json                   multi-turn dialogues, media inline (<Image>f</Image>)
        images/ audios/ videos/      the media

Held-out captions are attribute combinations that never occur in the train split (every
attribute value does), so held-out figures measure generalisation, not memory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toy_world import world as W

SPLITS = ("train", "heldout")
PAIR_FILES = {"image": "cc3m.json", "video": "webvid.json", "audio": "audiocap.json"}
MEDIA_FOLDERS = {"image": "images", "audio": "audios", "video": "videos"}
EXTENSIONS = {"image": ".png", "audio": ".wav", "video": ".mp4"}
PLACEHOLDERS = {"image": "<image>", "audio": "<audio>", "video": "<video>"}
TAGS = {"image": "Image", "audio": "Audio", "video": "Video"}

REQUESTS: dict[str, tuple[str, ...]] = {
    "image": (
        "Show me a picture of {c}.",
        "Draw {c}.",
        "Can you make an image of {c}?",
        "I would like to see an image of {c}.",
    ),
    "audio": (
        "Play me the sound of {c}.",
        "Make a sound of {c}.",
        "Can you generate audio of {c}?",
        "I want to hear {c}.",
    ),
    "video": (
        "Show me a video of {c}.",
        "Make a clip of {c}.",
        "Can you animate {c}?",
        "I would like to watch a video of {c}.",
    ),
}
ANSWERS: tuple[str, ...] = ("Here is {c}.", "Sure, this is {c}.", "This is {c}.")
"""Answers to a request; the modality's placeholder follows the sentence."""
CAPTION_QUESTIONS: dict[str, tuple[str, ...]] = {
    "image": ("What is in this picture?", "Describe this image."),
    "audio": ("What do you hear?", "Describe this sound."),
    "video": ("What happens in this video?", "Describe this clip."),
}


def text_questions(concept: W.Concept) -> list[tuple[str, str]]:
    """Text-only questions about a caption and their answers (no media wanted)."""
    f, c = concept.fields, concept.caption
    if concept.modality == "audio":
        return [
            (f"What comes first in {c}?", f"A {f['pitch1']} {f['sound1']}."),
            (f"What comes last in {c}?", f"A {f['pitch2']} {f['sound2']}."),
            (f"Describe {c} in words.", f"It is {c}, two tones one after the other."),
        ]
    out = [
        (f"What colour is {c}?", f"It is {f['colour']}."),
        (f"What shape is {c}?", f"It is a {f['shape']}."),
    ]
    if concept.modality == "image":
        where = "in the center" if f["position"] == "center" else f"at the {f['position']}"
        out.append((f"Where is {c}?", f"It is {where}."))
    else:
        out.append((f"Which way does {c} go?", f"It moves {f['direction']}."))
    return out


def _writer(root: Path) -> dict[str, Callable[[Any, Path], Path]]:
    from nextgpt_audio.media import AudioClip, save_audio
    from nextgpt_image.media import save_image
    from nextgpt_video.media import VideoClip, save_video

    return {
        "image": lambda pixels, path: save_image(pixels, path),
        "audio": lambda wave, path: save_audio(AudioClip(wave, W.SAMPLE_RATE), path),
        "video": lambda frames, path: save_video(VideoClip(frames, W.VIDEO_FPS), path),
    }


def render(concept: W.Concept, rng: random.Random) -> Any:
    if concept.modality == "image":
        return W.render_image(concept, rng)
    if concept.modality == "audio":
        return W.render_audio(concept, rng)
    return W.render_video(concept, rng)


class _SplitWriter:
    def __init__(self, root: Path, split: str, seed: int) -> None:
        self.folder = root / split
        self.split = split
        self.rng = random.Random(f"{seed}-{split}-media")
        self.save = _writer(root)
        self.counts: dict[str, int] = {m: 0 for m in W.MODALITIES}

    def media(self, concept: W.Concept, stem: str = "") -> str:
        """Render and write one item; returns its name relative to the split folder."""
        m = concept.modality
        index = self.counts[m]
        self.counts[m] += 1
        name = f"{MEDIA_FOLDERS[m]}/{stem}{index:04d}{EXTENSIONS[m]}"
        self.save[m](render(concept, self.rng), self.folder / name)
        return name


def _pairs(writer: _SplitWriter, modality: str, pool: list[W.Concept], n: int, rng: random.Random) -> list[dict]:
    records = []
    for i, concept in enumerate(W.cycle_concepts(pool, n, rng)):
        name = writer.media(concept)
        ident = f"{writer.split}-{modality}-{i:04d}"
        if modality == "audio":
            records.append({"audio_id": ident, "audio_name": name, "caption": concept.caption})
        else:
            records.append({"caption": concept.caption, "id": ident, f"{modality}_name": name})
    return records


def _request(concept: W.Concept, rng: random.Random) -> tuple[str, str]:
    """(human text, gpt text with the placeholder) asking for ``concept``'s modality."""
    m, c = concept.modality, concept.caption
    return rng.choice(REQUESTS[m]).format(c=c), f"{rng.choice(ANSWERS).format(c=c)} {PLACEHOLDERS[m]}"


def _t2m(pools: dict[str, list[W.Concept]], n: int, text_fraction: float, rng: random.Random, split: str) -> list[dict]:
    records = []
    for m in W.MODALITIES:
        for i, concept in enumerate(W.cycle_concepts(pools[m], n, rng)):
            human, gpt = _request(concept, rng)
            records.append(
                {
                    "id": f"{split}-t2m-{m}-{i:04d}",
                    "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
                    f"{m}_captions": [concept.caption],
                }
            )
    n_text = round(text_fraction * len(records))
    everything = [c for m in W.MODALITIES for c in pools[m]]
    for i, concept in enumerate(W.cycle_concepts(everything, n_text, rng)):
        human, gpt = rng.choice(text_questions(concept))
        records.append(
            {
                "id": f"{split}-t2m-text-{i:04d}",
                "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
            }
        )
    rng.shuffle(records)
    return records


def _find(pool: list[W.Concept], rng: random.Random, **fields: str) -> W.Concept | None:
    matches = [c for c in pool if all(c.fields.get(k) == v for k, v in fields.items())]
    return rng.choice(matches) if matches else None


Exchange = tuple[str, str]
"""One human turn and the gpt answer to it."""


def _answer(output: W.Concept, rng: random.Random) -> str:
    """The gpt turn that delivers ``output``: a sentence naming it, then its inline output tag."""
    tag = TAGS[output.modality]
    name = f"out_{rng.randrange(10**6):06d}{EXTENSIONS[output.modality]}"
    return f"{rng.choice(ANSWERS).format(c=output.caption)} <{tag}>{name}</{tag}>"


def _mosit_turns(
    kind: str, output: W.Concept, inputs: dict[str, list[W.Concept]], writer: _SplitWriter, rng: random.Random
) -> tuple[list[Exchange], list[W.Concept]] | None:
    """The exchanges of one dialogue of ``kind`` ending in ``output`` (a concept of the output
    modality), and every concept it outputs in order; the input it starts from is drawn from
    ``inputs`` to match. Returns None if nothing matches."""
    f = output.fields

    def see(source: W.Concept) -> Exchange:
        tag = TAGS[source.modality]
        name = writer.media(source, stem="mosit_")
        question = rng.choice(CAPTION_QUESTIONS[source.modality])
        return f"<{tag}>{name}</{tag}> {question}", f"It is {source.caption}."

    if kind == "image_to_video":  # picture in, talk about it, a video of the same shape out
        source = _find(inputs["image"], rng, colour=f["colour"], shape=f["shape"])
        if source is None:
            return None
        sf = source.fields
        middle = rng.choice(
            [[("What colour is it?", f"It is {sf['colour']}.")], [("What shape is it?", f"It is a {sf['shape']}.")], []]
        )
        request = f"Now show me a video of it moving {f['direction']}."
        return [see(source), *middle, (request, _answer(output, rng))], [output]
    if kind == "video_to_image":  # clip in, a picture of the same shape at a place out
        source = _find(inputs["video"], rng, colour=f["colour"], shape=f["shape"])
        if source is None:
            return None
        where = "in the center" if f["position"] == "center" else f"at the {f['position']}"
        return [see(source), (f"Draw it {where}.", _answer(output, rng))], [output]
    if kind == "audio_to_audio":  # sound in, the two tones swapped out
        source = _find(
            inputs["audio"], rng, pitch1=f["pitch2"], sound1=f["sound2"], pitch2=f["pitch1"], sound2=f["sound1"]
        )
        if source is None:
            return None
        return [see(source), ("Play it the other way round.", _answer(output, rng))], [output]
    if kind == "text_then_ask":  # a request, then a text-only question about what was made
        human, _ = _request(output, rng)
        question, reply = rng.choice(text_questions(output))
        follow = "What did you make? Answer in words." if rng.random() < 0.5 else question
        reply = f"I made {output.caption}." if follow.startswith("What did you make") else reply
        return [(human, _answer(output, rng)), (follow, reply)], [output]
    if kind == "requests_in_a_row":  # one request after another, each for another modality
        others = [m for m in W.MODALITIES if m != output.modality]
        earlier = [rng.choice(inputs[m]) for m in rng.sample(others, rng.randint(1, len(others)))]
        concepts = [*earlier, output]
        return [(_request(c, rng)[0], _answer(c, rng)) for c in concepts], concepts
    raise ValueError(kind)


MOSIT_KINDS = {
    "image_to_video": "video",
    "video_to_image": "image",
    "audio_to_audio": "audio",
    "text_then_ask": None,
    "requests_in_a_row": None,
}
"""The MosIT dialogue kinds and the modality each outputs last (None: any)."""
EARLIER_TOPICS = (0.4, 0.3, 0.3)
"""The chances that a dialogue opens with 0, 1 or 2 exchanges on other topics (requests for
modalities the dialogue does not output, or questions in words), so that a model learns to
answer the latest message of a conversation, whatever came before."""


def _earlier_topics(
    outputs: set[str], pools: dict[str, list[W.Concept]], rng: random.Random
) -> tuple[list[Exchange], list[W.Concept]]:
    """Exchanges unrelated to the dialogue that follows (how many: `EARLIER_TOPICS`), and the
    concepts they output: each a request for a modality not yet output (each modality is output
    at most once per dialogue: its caption list gives one alignment target per output) or, half
    the time or when none is left, a question in words about any caption of the split."""
    count = rng.choices(range(len(EARLIER_TOPICS)), weights=EARLIER_TOPICS)[0]
    exchanges: list[Exchange] = []
    made: list[W.Concept] = []
    taken = set(outputs)
    for _ in range(count):
        free = [m for m in W.MODALITIES if m not in taken]
        if free and rng.random() < 0.5:
            concept = rng.choice(pools[rng.choice(free)])
            taken.add(concept.modality)
            exchanges.append((_request(concept, rng)[0], _answer(concept, rng)))
            made.append(concept)
        else:
            concept = rng.choice(pools[rng.choice(W.MODALITIES)])
            exchanges.append(rng.choice(text_questions(concept)))
    return exchanges, made


def _mosit_dialogue(
    kind: str,
    output: W.Concept,
    inputs: dict[str, list[W.Concept]],
    own: dict[str, list[W.Concept]],
    writer: _SplitWriter,
    rng: random.Random,
) -> dict | None:
    """One MosIT record of ``kind`` ending in ``output``, its inputs drawn from ``inputs`` and
    any earlier topic from the split's ``own`` captions. Returns None if no input matches."""
    made = _mosit_turns(kind, output, inputs, writer, rng)
    if made is None:
        return None
    turns, outputs = made
    earlier, made_earlier = _earlier_topics({c.modality for c in outputs}, own, rng)
    turns, outputs = [*earlier, *turns], [*made_earlier, *outputs]
    conversations = []
    for human, gpt in turns:
        conversations += [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]
    record: dict[str, Any] = {"conversations": conversations}
    for concept in outputs:
        record.setdefault(f"{concept.modality}_captions", []).append(concept.caption)
    return record


def _mosit(
    pools: dict[str, list[W.Concept]],
    all_pools: dict[str, list[W.Concept]],
    n: int,
    writer: _SplitWriter,
    rng: random.Random,
) -> list[dict]:
    records: list[dict] = []
    kinds = list(MOSIT_KINDS)
    attempts = 0
    while len(records) < n and attempts < 50 * n:
        attempts += 1
        kind = kinds[len(records) % len(kinds)]
        modality = MOSIT_KINDS[kind] or rng.choice(W.MODALITIES)
        output = rng.choice(pools[modality])
        # inputs: prefer the split's own captions, fall back to any caption (a new item anyway)
        record = _mosit_dialogue(kind, output, pools, pools, writer, rng) or _mosit_dialogue(
            kind, output, all_pools, pools, writer, rng
        )
        if record is not None:
            record["id"] = f"{writer.split}-mosit-{len(records):04d}"
            records.append(record)
    return records


def generate(
    root: str | Path,
    seed: int = 0,
    n_per_modality: int = 120,
    n_heldout_per_modality: int = 24,
    heldout_fraction: float = 0.2,
    n_mosit: int = 180,
    text_only_fraction: float = 0.5,
) -> dict[str, Any]:
    """Write the toy world under ``root``; the same arguments give the same bytes.

    Args:
        root: output folder (created).
        seed: fixes the held-out captions, the items' jitter and every choice of text.
        n_per_modality: train pair items per modality; also the number of T2M requests per
            modality in the train split.
        n_heldout_per_modality: held-out pair items (and T2M requests) per modality.
        heldout_fraction: share of each modality's captions kept out of the train split.
        n_mosit: train MosIT dialogues (the held-out split gets ``max(8, n_mosit // 4)``).
        text_only_fraction: text-only T2M questions per media request.

    Returns the contents of ``world.json`` (also written): the arguments, the captions of each
    split per modality and the data files per split.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits = {m: W.split_concepts(m, seed, heldout_fraction) for m in W.MODALITIES}
    pools = {"train": {m: splits[m][0] for m in W.MODALITIES}, "heldout": {m: splits[m][1] for m in W.MODALITIES}}
    all_pools = {m: W.concepts(m) for m in W.MODALITIES}
    sizes = {"train": (n_per_modality, n_mosit), "heldout": (n_heldout_per_modality, max(8, n_mosit // 4))}
    files: dict[str, dict[str, str]] = {}
    for split in SPLITS:
        n_items, n_dialogues = sizes[split]
        writer = _SplitWriter(root, split, seed)
        rng = random.Random(f"{seed}-{split}-records")
        data: dict[str, list[dict]] = {}
        for m in W.MODALITIES:
            data[PAIR_FILES[m]] = _pairs(writer, m, pools[split][m], n_items, rng)
        data["t2m.json"] = _t2m(pools[split], n_items, text_only_fraction, rng, split)
        data["mosit.json"] = _mosit(pools[split], all_pools, n_dialogues, writer, rng)
        files[split] = {}
        for name, records in data.items():
            path = root / split / name
            path.write_text(json.dumps(records, indent=1) + "\n")
            files[split][name.removesuffix(".json")] = f"{split}/{name}"
    meta = {
        "format": "toy-world-v1",
        "seed": seed,
        "n_per_modality": n_per_modality,
        "n_heldout_per_modality": n_heldout_per_modality,
        "heldout_fraction": heldout_fraction,
        "n_mosit": n_mosit,
        "text_only_fraction": text_only_fraction,
        "captions": {split: {m: [c.caption for c in pools[split][m]] for m in W.MODALITIES} for split in SPLITS},
        "files": files,
    }
    (root / "world.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load_world(root: str | Path) -> dict[str, Any]:
    """The ``world.json`` of a generated world."""
    return json.loads((Path(root) / "world.json").read_text())
