"""End-to-end scores of the toy world: ask a model for a held-out caption's image, sound or video
and let the world reader (`toy_world.reader`) say whether what came out has every attribute
the request named.

Three chains are scored on the same held-out captions, per modality and per attribute:

* ``trained``: the request in words ("Show me a picture of a red circle at the top left.")
  through a model's whole `generate` (LLM, signal tokens, output projector, decoder);
* ``untrained``: the same request through the toy model before any stage trained;
* ``ceiling``: the decoder fed the caption's own text embedding (`condition_from_text`), what a
  perfect output projector would hand it;

plus X -> Y (`cross_modal_scores`) by the world's own cross-modal rule (its MosIT dialogues): a
video of the world in ("Describe this clip." answered with its caption), then "Draw it at the
top left.": an image of the video's colour and shape at the named place, scored the same way;
and the demo's conversation (`conversation_scores`, `toy_world.demo_script`) played on many
held-out captions, each turn answered with the model's own earlier answers in the context.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toy_world import world as W
from toy_world.demo_script import ConversationTurn, heldout_conversations
from toy_world.reader import accuracy, read, score

REQUEST_TEMPLATES: dict[str, str] = {
    "image": "Show me a picture of {c}.",
    "audio": "Play me the sound of {c}.",
    "video": "Show me a video of {c}.",
}
"""The text -> X request per modality (one of the world's own T2M phrasings)."""
SEED = 0
"""Decoding seed of the video -> image generations, and the first of `SEEDS`."""
SEEDS: tuple[int, ...] = (0, 1, 2)
"""Decoding seeds of text -> X: each request is generated once per seed. A toy decoder's sample
depends on its seed (a few in ten of its videos from the caption itself miss an attribute, a
different few for each seed), so one seed per caption measures the decoder's luck on that
seed about as much as the chain; three per caption divide that variance by three."""


CONVERSATIONS = 16
"""Held-out conversations played by `run_end_to_end` (each pool of held-out captions cycled)."""


def chance(modality: str) -> float:
    """The probability that a reading of random attributes gets every one right."""
    out = 1.0
    for values in W.ATTRIBUTE_VALUES[modality]:
        out /= len(values)
    return out


@dataclass
class Scored:
    """One scored generation: what was asked, what the reader saw, and the verdict."""

    modality: str
    caption: str
    prompt: str
    media: Any
    reading: dict[str, str]
    verdict: dict[str, bool]
    seed: int = SEED


@dataclass
class ChainScores:
    """The scored generations of one chain, per modality."""

    items: dict[str, list[Scored]] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per modality: the share of generations with each attribute right, ``all`` right, and ``n``."""
        return {
            m: {**accuracy([s.verdict for s in scored]), "n": len(scored)} for m, scored in self.items.items() if scored
        }


def _verdict(modality: str, media: Any, concept: W.Concept) -> tuple[dict[str, str], dict[str, bool]]:
    if media is None:  # nothing of the wanted modality came out: every attribute missed
        return {}, {**{name: False for name in concept.fields}, "all": False}
    payload = getattr(media, "frames", media) if modality == "video" else media
    reading = read(modality, payload)
    return reading, score(reading, concept)


def text_to_x_scores(
    model: Any,
    concepts: dict[str, Sequence[W.Concept]],
    decode: dict[str, Any] | None = None,
    seeds: Sequence[int] = (SEED,),
) -> ChainScores:
    """Each concept requested in words through ``model.generate`` (the wanted modality
    requested, so a model that forgets its signal tokens still decodes) once per decoding seed
    in ``seeds``, then read."""
    out = ChainScores()
    for modality, pool in concepts.items():
        out.items[modality] = []
        for concept in pool:
            prompt = REQUEST_TEMPLATES[modality].format(c=concept.caption)
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            for seed in seeds:
                result = model.generate(messages, request=[modality], decode=decode, seed=seed, progress=False)
                media = next((m.media for m in result.media if m.modality == modality), None)
                reading, verdict = _verdict(modality, media, concept)
                out.items[modality].append(Scored(modality, concept.caption, prompt, media, reading, verdict, seed))
    return out


def ceiling_scores(
    model: Any,
    concepts: dict[str, Sequence[W.Concept]],
    decode: dict[str, Any] | None = None,
    seeds: Sequence[int] = (SEED,),
) -> ChainScores:
    """Each concept's caption embedding fed straight to ``model``'s decoder once per decoding
    seed in ``seeds``, then read."""
    from nextgpt.config import DecodeOptions

    out = ChainScores()
    for modality, pool in concepts.items():
        decoder = model.decoders[modality]
        given = (decode or {}).get(modality)
        options = model.modality_configs[modality].decode
        if given is not None:
            given = given if isinstance(given, DecodeOptions) else DecodeOptions(**given)
            options = given.merged_over(options)
        out.items[modality] = []
        for concept in pool:
            condition = decoder.condition_from_text([concept.caption])
            for seed in seeds:
                media = decoder.generate(condition, options.model_copy(update={"seed": seed}))[0]
                reading, verdict = _verdict(modality, media, concept)
                out.items[modality].append(
                    Scored(modality, concept.caption, concept.caption, media, reading, verdict, seed)
                )
    return out


def cross_modal_scores(
    model: Any, videos: Sequence[tuple[Any, W.Concept]], positions: Sequence[str], decode: dict[str, Any] | None = None
) -> ChainScores:
    """Video -> image by the world's rule: each ``(clip, its concept)`` shown to ``model``, then an
    image of the clip's colour and shape asked for at the matching entry of ``positions``."""
    out = ChainScores(items={"image": []})
    for (clip, source), position in zip(videos, positions, strict=True):
        colour, shape, _ = source.attributes
        target = W.Concept("image", (colour, shape, position))
        where = "in the center" if position == "center" else f"at the {position}"
        prompt = f"Draw it {where}."
        messages = [
            {
                "role": "user",
                "content": [{"type": "video", "media": clip}, {"type": "text", "text": "Describe this clip."}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": f"It is {source.caption}."}]},
            {"role": "user", "content": [{"type": "text", "text": prompt}]},
        ]
        result = model.generate(messages, request=["image"], decode=decode, seed=SEED, progress=False)
        media = next((m.media for m in result.media if m.modality == "image"), None)
        reading, verdict = _verdict("image", media, target)
        out.items["image"].append(
            Scored("image", target.caption, f"[{source.caption}] {prompt}", media, reading, verdict)
        )
    return out


def conversation_scores(
    model: Any, conversations: Sequence[Sequence[ConversationTurn]], decode: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Play each conversation through ``model.generate`` turn by turn, each turn with the earlier
    turns and the model's own answers to them in the context (as ``nextgpt chat`` and ``nextgpt
    demo`` do), and score every turn: a media turn by the reader (every attribute right), a turn
    in words by its exact answer. Returns, per turn of the script, its text (the first
    conversation's), what it asks for, and the share of right answers (per attribute for media)."""
    verdicts: list[list[dict[str, bool]]] = [[] for _ in conversations[0]] if conversations else []
    for turns in conversations:
        history: list[dict[str, Any]] = []
        for index, turn in enumerate(turns):
            content: list[dict[str, Any]] = []
            if turn.shown is not None:
                content.append({"type": turn.shown.modality, "media": render_shown(turn.shown, index)})
            content.append({"type": "text", "text": turn.text})
            message = {"role": "user", "content": content}
            request = [turn.wanted.modality] if turn.wanted is not None else []
            result = model.generate([*history, message], request=request, decode=decode, seed=SEED, progress=False)
            if turn.wanted is not None:
                media = next((m.media for m in result.media if m.modality == turn.wanted.modality), None)
                verdicts[index].append(_verdict(turn.wanted.modality, media, turn.wanted)[1])
            else:
                verdicts[index].append({"all": result.text.strip() == turn.answer and not result.media})
            history += [message, result.as_message()]
    first = conversations[0] if conversations else []
    return [
        {
            "turn": index + 1,
            "text": turn.text,
            "asks": turn.wanted.modality if turn.wanted is not None else "text",
            **accuracy(verdicts[index]),
            "n": len(verdicts[index]),
        }
        for index, turn in enumerate(first)
    ]


def render_shown(concept: W.Concept, salt: int) -> Any:
    """A fresh world item of ``concept`` to attach to a conversation turn, as its plugin's loader
    returns one (a PIL image, an `AudioClip`, a `VideoClip`)."""
    from nextgpt_audio.media import AudioClip
    from nextgpt_video.media import VideoClip
    from PIL import Image

    from toy_world.generate import render

    item = render(concept, random.Random(f"{concept.caption}-{salt}"))
    if concept.modality == "image":
        return Image.fromarray(item)
    if concept.modality == "audio":
        return AudioClip(item, W.SAMPLE_RATE)
    return VideoClip(item, W.VIDEO_FPS)


def heldout_concepts(world: dict[str, Any], limit: int | None = None) -> dict[str, list[W.Concept]]:
    """The held-out captions of a generated world's ``world.json``, per modality (at most ``limit``)."""
    return {m: [W.concept_from_caption(m, c) for c in world["captions"]["heldout"][m]][:limit] for m in W.MODALITIES}


def heldout_videos(world_root: Path, limit: int | None = None) -> list[tuple[Any, W.Concept]]:
    """The held-out split's video files and their concepts (at most ``limit``)."""
    from nextgpt_video.media import load_video

    records = json.loads((world_root / "heldout" / "webvid.json").read_text())[:limit]
    return [
        (load_video(world_root / "heldout" / r["video_name"]), W.concept_from_caption("video", r["caption"]))
        for r in records
    ]


def _cross_modal_inputs(world_root: Path, limit: int | None) -> tuple[list[tuple[Any, W.Concept]], list[str]]:
    """The held-out clips of video -> image and the position asked for with each."""
    videos = heldout_videos(world_root, limit)
    return videos, [tuple(W.POSITIONS)[i % len(W.POSITIONS)] for i in range(len(videos))]


def baseline_scores(
    untrained: str | Path, world_root: str | Path, limit: int | None = None, seeds: Sequence[int] = SEEDS
) -> dict[str, Any]:
    """The chains that need only the toy model before training (its projectors untrained, its
    decoders those of every stage): text -> X and video -> image through it (text -> X with the
    first of ``seeds`` only: near zero whatever the seed), and the ceiling (each caption's own
    embedding into its decoder, once per seed). Summaries only, so that a second process can
    run them while the trained model is scored (`run_end_to_end`'s ``baseline``)."""
    from nextgpt.model import NextGPTModel

    world_root = Path(world_root)
    world = json.loads((world_root / "world.json").read_text())
    concepts = heldout_concepts(world, limit)
    videos, positions = _cross_modal_inputs(world_root, limit)
    model = NextGPTModel.from_pretrained(untrained)
    return {
        "text_to_x": {
            "untrained": text_to_x_scores(model, concepts, seeds=seeds[:1]).summary(),
            "ceiling": ceiling_scores(model, concepts, seeds=seeds).summary(),
        },
        "video_to_image": {"untrained": cross_modal_scores(model, videos, positions).summary()},
    }


def _baseline_in_process(untrained: str, world_root: str, limit: int | None, seeds: tuple[int, ...]) -> dict[str, Any]:
    from toy_world.cli import _setup

    _setup()
    return baseline_scores(untrained, world_root, limit, seeds)


def start_baseline(
    untrained: str | Path, world_root: str | Path, limit: int | None = None, seeds: Sequence[int] = SEEDS
) -> Future[dict[str, Any]]:
    """`baseline_scores` in a second (spawned) process on one CPU thread, so that it runs on the
    second core while the first scores the trained model; ``.result()`` waits for it."""
    import multiprocessing

    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    future = executor.submit(_baseline_in_process, str(untrained), str(world_root), limit, tuple(seeds))
    executor.shutdown(wait=False)
    return future


def run_end_to_end(
    trained: str | Path,
    untrained: str | Path,
    world_root: str | Path,
    limit: int | None = None,
    sheet: str | Path | None = None,
    sheet_rows: int = 12,
    seeds: Sequence[int] = SEEDS,
    conversations: int = CONVERSATIONS,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score text -> X (trained, untrained, ceiling), video -> image (trained, untrained) and
    the demo's conversation (trained) on the held-out split of the world at ``world_root``;
    write the contact sheet of the trained chain (``sheet_rows`` prompts, spread over the
    modalities) to ``sheet`` if given.

    Args:
        trained: the trained model's folder (stage 3).
        untrained: the toy model's folder (projectors untrained).
        world_root: the generated world.
        limit: score at most this many held-out captions (and videos) per modality.
        seeds: the decoding seeds of text -> X (each request generated once per seed; the
            untrained chain, near zero whatever the seed, only with the first).
        conversations: how many held-out conversations (`toy_world.demo_script`) to play in the
            demo's order (half as many with the picture shown last: ``results["shown_last"]``).
        baseline: `baseline_scores` of ``untrained`` with the same world, limit and seeds,
            already computed (elsewhere, meanwhile); None computes it here.
    """
    from nextgpt.model import NextGPTModel

    from toy_world.contact_sheet import write_contact_sheet

    if sheet is not None and Path(sheet).exists():
        raise FileExistsError(f"{sheet}: exists; the contact sheet does not replace a file")
    world_root = Path(world_root)
    world = json.loads((world_root / "world.json").read_text())
    concepts = heldout_concepts(world, limit)
    videos, positions = _cross_modal_inputs(world_root, limit)
    if baseline is None:
        baseline = baseline_scores(untrained, world_root, limit, seeds)
    model = NextGPTModel.from_pretrained(trained)
    trained_chain = text_to_x_scores(model, concepts, seeds=seeds)
    results: dict[str, Any] = {
        "text_to_x": {"trained": trained_chain.summary(), **baseline["text_to_x"]},
        "video_to_image": {
            "trained": cross_modal_scores(model, videos, positions).summary(),
            **baseline["video_to_image"],
        },
    }
    for key, shown_last, n in (("conversation", False, conversations), ("shown_last", True, conversations // 2)):
        results[key] = conversation_scores(model, heldout_conversations(heldout_concepts(world), n, shown_last))
    results["chance"] = {m: chance(m) for m in W.MODALITIES}
    results["seeds"] = list(seeds)
    if sheet is not None:
        per = max(1, sheet_rows // len(W.MODALITIES))
        first = [[s for s in trained_chain.items.get(m, []) if s.seed == seeds[0]] for m in W.MODALITIES]
        rows = [s for scored in first for s in scored[:per]]
        write_contact_sheet(rows, sheet, title="held-out prompts through the trained toy model; reader's verdict")
        results["contact_sheet"] = str(sheet)
    return results
