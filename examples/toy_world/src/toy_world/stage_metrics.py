"""The learning benchmark's held-out measurements of each stage (see `toy_world.learning`).

* stage 1, per modality: caption token accuracy (teacher forced: the share of caption tokens the
  model's argmax predicts) and exact match (greedy generation equals the caption);
* stage 2, per modality, on every held-out caption: top-1 retrieval of the gold caption among
  all held-out captions of the modality from the projected signal-token states, mean per-token
  Euclidean distance and cosine to the decoder's caption embedding (`toy_world.metrics`);
* stage 3, on every assistant turn of the held-out T2M instructions and MosIT dialogues (gold
  history before it): decision accuracy (the generated answer holds exactly the wanted
  modalities' signal tokens, none when only text is wanted) and retrieval of the gold caption
  from what it generated (a wanted modality that was not generated counts as a miss).

Each ``stageN_metrics`` measures a model; each ``stageN_trivial`` a predictor that ignores its
input (the most common train caption or decision; the mean train caption embedding).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toy_world import world as W
from toy_world.generate import PAIR_FILES
from toy_world.metrics import condition_mask, condition_tokens, retrieval

# -- shared evaluation helpers ---------------------------------------------------------------------


def _specs(model: Any) -> dict[str, Any]:
    return dict(model.specs)


def _read(path: Path, fmt: str, model: Any, task: str = "caption") -> list[Any]:
    from nextgpt.data.records import DatasetSource, read_records

    records, _ = read_records(DatasetSource(path=str(path), format=fmt, task=task), _specs(model), "error")
    return records


def _load_inputs(model: Any, record: Any) -> list[tuple[str, Any]]:
    return [(ref.modality, model.specs[ref.modality].load(ref.path)) for ref in record.inputs]


def _embed_inputs(model: Any, media: Sequence[tuple[str, Any]]) -> list[torch.Tensor]:
    return [model.encode_media(m, [item])[0] for m, item in media]


def _signal_turn(model: Any, text: str) -> str:
    """An assistant turn's placeholders replaced by the modalities' signal tokens."""
    for spec in model.specs.values():
        text = text.replace(spec.signal_tokens.placeholder, "".join(spec.signal_tokens.tokens))
    return text


@torch.no_grad()
def greedy_answer(
    model: Any, turns: Sequence[Any], media_embeds: Sequence[torch.Tensor], max_new_tokens: int = 40
) -> tuple[list[int], Any]:
    """Greedy answer to ``turns`` (ending with the user's), as `NextGPTModel.generate` decodes it,
    without running the decoders. Returns the answer's ids (partial signal runs completed) and
    the packed prompt."""
    from nextgpt.signals import complete_signal_runs
    from nextgpt.templates import Turn

    turns = [Turn(role=t.role, text=_signal_turn(model, t.text) if t.role == "assistant" else t.text) for t in turns]
    packed = model.pack(turns, list(media_embeds), add_generation_prompt=True)
    prompt = packed.embeds.unsqueeze(0)
    out = model.llm.generate(
        inputs_embeds=prompt,
        attention_mask=torch.ones(prompt.shape[:2], dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=model.tokenizer.pad_token_id,
        eos_token_id=model.tokenizer.eos_token_id,
        stop_strings=list(model.template.stop),
        tokenizer=model.tokenizer,
    )
    ids = model._strip_stop(out[0].tolist())
    runs = {name: run for name, run in model.signal_ids.items() if name in model.decoders}
    return complete_signal_runs(ids, runs), packed


@torch.no_grad()
def answer_conditions(model: Any, packed: Any, ids: list[int]) -> dict[str, torch.Tensor]:
    """The decoder condition of every modality whose signal run ``ids`` holds (first run), read
    where generation reads it (the positions where the signal tokens are the inputs)."""
    from nextgpt.signals import find_signal_runs

    runs = {name: run for name, run in model.signal_ids.items() if name in model.decoders}
    found = find_signal_runs(ids, runs)
    if not found:
        return {}
    sequence = torch.tensor(ids)
    full = torch.cat([packed.embeds.unsqueeze(0), model.embed_tokens(sequence).unsqueeze(0)], dim=1)
    hidden = model.llm(inputs_embeds=full, output_hidden_states=True).hidden_states[-1]
    out: dict[str, torch.Tensor] = {}
    for name, start in found:
        if name in out:
            continue
        position = packed.input_ids.shape[0] + start
        out[name] = condition_tokens(model.project_signal(hidden[:, position : position + len(runs[name])], name))[0]
    return out


def _limit(items: list[Any], limit: int | None) -> list[Any]:
    return items if limit is None else items[:limit]


# -- stage 1 ---------------------------------------------------------------------------------------


def stage1_metrics(
    model: Any, world_root: Path, split: str = "heldout", limit: int | None = None
) -> dict[str, dict[str, float]]:
    """Caption token accuracy (teacher forced) and exact match (greedy) per modality."""
    from nextgpt.data.collate import pad_packed

    model.eval()
    tok = model.tokenizer
    out: dict[str, dict[str, float]] = {}
    for m, name in PAIR_FILES.items():
        records = _limit(_read(world_root / split / name, "pairs", model), limit)
        correct = total = exact = 0
        for record in records:
            media = _load_inputs(model, record)
            embeds = _embed_inputs(model, media)
            caption = record.turns[1].text
            with torch.no_grad():
                packed = model.pack(list(record.turns), embeds, add_generation_prompt=False)
                padded = pad_packed([packed], tok.pad_token_id)
                logits = model.llm(inputs_embeds=padded.embeds, attention_mask=padded.attention_mask).logits[0]
            labels = packed.labels
            supervised = (labels != -100).nonzero().flatten()
            n_caption = len(tok(caption, add_special_tokens=False).input_ids)
            positions = supervised[:n_caption]
            predicted = logits[positions - 1].argmax(-1)
            correct += int((predicted == labels[positions]).sum())
            total += len(positions)
            ids, _ = greedy_answer(model, list(record.turns[:1]), embeds)
            exact += int(model._visible_text(ids).strip() == caption)
        out[m] = {
            "token_accuracy": correct / max(total, 1),
            "exact_match": exact / max(len(records), 1),
            "n": len(records),
        }
    return out


def stage1_trivial(
    model: Any, world_root: Path, split: str = "heldout", limit: int | None = None
) -> dict[str, dict[str, float]]:
    """Always answer the most common train caption of the modality."""
    tok = model.tokenizer
    out = {}
    for m, name in PAIR_FILES.items():
        train = [r.turns[1].text for r in _read(world_root / "train" / name, "pairs", model)]
        common = Counter(train).most_common(1)[0][0]
        common_ids = tok(common, add_special_tokens=False).input_ids
        records = _limit(_read(world_root / split / name, "pairs", model), limit)
        correct = total = exact = 0
        for record in records:
            gold = tok(record.turns[1].text, add_special_tokens=False).input_ids
            correct += sum(1 for k, t in enumerate(gold) if k < len(common_ids) and common_ids[k] == t)
            total += len(gold)
            exact += int(record.turns[1].text == common)
        out[m] = {
            "token_accuracy": correct / max(total, 1),
            "exact_match": exact / max(len(records), 1),
            "n": len(records),
        }
    return out


# -- stage 2 ---------------------------------------------------------------------------------------


def _candidates(model: Any, modality: str, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    decoder = model.decoders[modality]
    return condition_tokens(decoder.condition_from_text(captions)), condition_mask(decoder, captions)


def stage2_metrics(model: Any, world: dict[str, Any], limit: int | None = None) -> dict[str, dict[str, float]]:
    """Teacher-forced stage-2 prompts ("{caption}" -> "{caption}[X0]..[Xn]") for every held-out
    caption: retrieval, distance and cosine of the projected signal states."""
    from nextgpt.data.collate import pad_packed
    from nextgpt.templates import Turn

    model.eval()
    out = {}
    for m in W.MODALITIES:
        captions = world["captions"]["heldout"][m]
        candidates, masks = _candidates(model, m, captions)
        predictions, gold = [], []
        for index, caption in enumerate(_limit(captions, limit)):
            placeholder = model.specs[m].signal_tokens.placeholder
            turns = [
                Turn(role="user", text=caption),
                Turn(role="assistant", text=_signal_turn(model, f"{caption} {placeholder}")),
            ]
            with torch.no_grad():
                packed = model.pack(turns, [], add_generation_prompt=False)
                padded = pad_packed([packed], model.tokenizer.pad_token_id)
                hidden = model.llm(
                    inputs_embeds=padded.embeds, attention_mask=padded.attention_mask, output_hidden_states=True
                ).hidden_states[-1]
                conditions, _ = model.signal_conditions(hidden, padded.input_ids, m)
            predictions.append(condition_tokens(conditions)[0])
            gold.append(index)
        out[m] = retrieval(torch.stack(predictions), gold, candidates, masks)
    return out


def mean_train_embedding(model: Any, world: dict[str, Any], modality: str) -> torch.Tensor:
    return condition_tokens(model.decoders[modality].condition_from_text(world["captions"]["train"][modality])).mean(0)


def stage2_trivial(model: Any, world: dict[str, Any], limit: int | None = None) -> dict[str, dict[str, float]]:
    """Predict the mean embedding of the train captions, whatever the caption."""
    out = {}
    for m in W.MODALITIES:
        captions = world["captions"]["heldout"][m]
        candidates, masks = _candidates(model, m, captions)
        gold = list(range(len(_limit(captions, limit))))
        mean = mean_train_embedding(model, world, m)
        out[m] = retrieval(mean.expand(len(gold), *mean.shape), gold, candidates, masks)
    return out


# -- stage 3 ---------------------------------------------------------------------------------------


@dataclass
class TurnCase:
    """One assistant turn to answer: the turns before it (ending with the user's), the media of
    those turns, the modalities the gold answer outputs and their captions."""

    source: str
    turns: list[Any]
    media: list[tuple[str, Any]]
    wanted: tuple[str, ...]
    captions: dict[str, str]


def turn_cases(model: Any, world_root: Path, split: str = "heldout") -> list[TurnCase]:
    """Every assistant turn of the split's T2M instructions and MosIT dialogues."""
    placeholders = {spec.signal_tokens.placeholder: name for name, spec in model.specs.items()}
    cases = []
    for name, fmt in (("t2m.json", "instruction"), ("mosit.json", "mosit")):
        for record in _read(world_root / split / name, fmt, model):
            media = _load_inputs(model, record)
            used = 0
            for k, turn in enumerate(record.turns):
                if turn.role == "user":
                    used += sum(turn.text.count(p) for p in placeholders)
                    continue
                wanted = tuple(sorted({m for p, m in placeholders.items() if p in turn.text}))
                cases.append(
                    TurnCase(
                        source=f"{name}:{record.source.rsplit(':', 1)[-1]}:{k}",
                        turns=list(record.turns[:k]),
                        media=media[:used],
                        wanted=wanted,
                        captions={m: record.targets[m] for m in wanted if m in record.targets},
                    )
                )
    return cases


def _decision(wanted: Sequence[str]) -> str:
    return "+".join(wanted) if wanted else "text"


def stage3_metrics(
    model: Any, world: dict[str, Any], cases: list[TurnCase], limit: int | None = None
) -> dict[str, Any]:
    """Decision accuracy per wanted decision (text, image, audio, video) and overall, and
    retrieval (with distance and cosine over the generated ones) per output modality."""
    model.eval()
    by_decision: dict[str, list[int]] = {}
    predictions: dict[str, list[torch.Tensor]] = {m: [] for m in W.MODALITIES}
    gold: dict[str, list[int]] = {m: [] for m in W.MODALITIES}
    missed: dict[str, int] = dict.fromkeys(W.MODALITIES, 0)
    heldout = world["captions"]["heldout"]
    counts: Counter[str] = Counter()
    for case in cases:
        decision = _decision(case.wanted)
        if limit is not None and counts[decision] >= limit:
            continue
        counts[decision] += 1
        ids, packed = greedy_answer(model, case.turns, _embed_inputs(model, case.media))
        conditions = answer_conditions(model, packed, ids)
        by_decision.setdefault(decision, []).append(int(set(conditions) == set(case.wanted)))
        for m in case.wanted:
            caption = case.captions.get(m)
            if caption is None or caption not in heldout[m]:
                continue
            if m in conditions:
                predictions[m].append(conditions[m].float())
                gold[m].append(heldout[m].index(caption))
            else:
                missed[m] += 1
    out: dict[str, Any] = {"decision": {}, "retrieval": {}}
    every = [v for values in by_decision.values() for v in values]
    out["decision"]["all"] = {"accuracy": float(np.mean(every)) if every else math.nan, "n": len(every)}
    for decision, values in sorted(by_decision.items()):
        out["decision"][decision] = {"accuracy": float(np.mean(values)), "n": len(values)}
    for m in W.MODALITIES:
        n = len(gold[m]) + missed[m]
        if n == 0:
            continue
        candidates, masks = _candidates(model, m, heldout[m])
        if gold[m]:
            got = retrieval(torch.stack(predictions[m]), gold[m], candidates, masks)
        else:
            got = {"retrieval": 0.0, "distance": math.nan, "cosine": math.nan}
        hits = got["retrieval"] * len(gold[m])
        out["retrieval"][m] = {
            "retrieval": hits / n,
            "distance": got["distance"],
            "cosine": got["cosine"],
            "generated": len(gold[m]),
            "n": n,
        }
    return out


def stage3_trivial(
    model: Any, world: dict[str, Any], world_root: Path, cases: list[TurnCase], limit: int | None = None
) -> dict[str, Any]:
    """Always make the most common train decision; the mean train caption embedding."""
    train = Counter(_decision(c.wanted) for c in turn_cases(model, world_root, "train"))
    common = train.most_common(1)[0][0]
    heldout = world["captions"]["heldout"]
    counts: Counter[str] = Counter()
    by_decision: dict[str, list[int]] = {}
    gold: dict[str, list[int]] = {m: [] for m in W.MODALITIES}
    for case in cases:
        decision = _decision(case.wanted)
        if limit is not None and counts[decision] >= limit:
            continue
        counts[decision] += 1
        by_decision.setdefault(decision, []).append(int(decision == common))
        for m in case.wanted:
            caption = case.captions.get(m)
            if caption in heldout[m]:
                gold[m].append(heldout[m].index(caption))
    every = [v for values in by_decision.values() for v in values]
    out: dict[str, Any] = {
        "decision": {"all": {"accuracy": float(np.mean(every)), "n": len(every), "always": common}},
        "retrieval": {},
    }
    for decision, values in sorted(by_decision.items()):
        out["decision"][decision] = {"accuracy": float(np.mean(values)), "n": len(values)}
    for m in W.MODALITIES:
        if gold[m]:
            candidates, masks = _candidates(model, m, heldout[m])
            mean = mean_train_embedding(model, world, m)
            got = retrieval(mean.expand(len(gold[m]), *mean.shape), gold[m], candidates, masks)
            out["retrieval"][m] = {**got, "generated": len(gold[m])}
    return out


def overall(per_modality: dict[str, dict[str, float]], metric: str) -> float:
    """The mean of ``metric`` over every item of every modality (modalities weighted by their
    ``n``; NaN entries, e.g. a distance with nothing generated, left out)."""
    pairs = [
        (v[metric], v.get("n", 1))
        for v in per_modality.values()
        if isinstance(v, dict) and metric in v and not math.isnan(v[metric])
    ]
    total = sum(n for _, n in pairs)
    return sum(value * n for value, n in pairs) / total if total else math.nan
