"""`nextgpt eval`'s engine: caption media or generate media from captions, then score.

* ``caption`` — for each media file of a pair data set (released formats: cc3m / webvid /
  audiocap, read by `nextgpt.data.read_records`), ask the model for a caption and score it
  against every gold caption of that file (records sharing a media file, as in COCO's five
  captions per image, are grouped) with BLEU-4, ROUGE-L and CIDEr (`nextgpt.evaluation.captioning`).
* ``generate`` — for each caption, ask the model for the modality (``request=[modality]``),
  save the result under ``out``, and compute every metric the modality's plugin registered
  (``registry.metrics_for(modality)``), with the data set's media as references for the metrics
  that need them (FID). A metric whose options are missing (e.g. a local weights path) is
  skipped with a printed note and listed under ``skipped``; it is never dropped silently.

Core never looks at which modality it evaluates: captioning metrics are text metrics, and media
metrics come from the plugins.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nextgpt.config import DecodeOptions
from nextgpt.errors import ConfigError, MediaError, NextGPTError
from nextgpt.extras import require_extra
from nextgpt.tables import format_table

DEFAULT_CAPTION_PROMPT = "Generate a caption for this {modality}."


@dataclass
class MetricResult:
    name: str
    value: float | None
    higher_is_better: bool | None = True
    n: int = 0
    note: str = ""


@dataclass
class EvalReport:
    task: str
    modality: str
    model: str
    data: str
    n_items: int
    metrics: list[MetricResult] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped(self) -> dict[str, str]:
        return {m.name: m.note for m in self.metrics if m.value is None}

    def values(self) -> dict[str, float | None]:
        return {m.name: m.value for m in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "modality": self.modality,
            "model": self.model,
            "data": self.data,
            "n_items": self.n_items,
            "metrics": self.values(),
            "skipped": self.skipped,
            "details": [asdict(m) for m in self.metrics],
            "seconds": round(self.seconds, 3),
            "items": self.items,
        }

    def table(self) -> str:
        header = ("metric", "value", "better", "n", "note")
        rows, footnotes = [], []
        for m in self.metrics:
            note = m.note
            if len(note) > 40:  # long reasons (which option is missing) go below the table
                footnotes.append(f"[{len(footnotes) + 1}] {m.name}: {note}")
                note = f"{note.split(':')[0]} [{len(footnotes)}]"
            rows.append(
                (
                    m.name,
                    "-" if m.value is None else f"{m.value:.4f}",
                    "-" if m.higher_is_better is None else ("higher" if m.higher_is_better else "lower"),
                    str(m.n),
                    note,
                )
            )
        title = (
            f"nextgpt eval: task {self.task}, modality {self.modality}, model {self.model}, "
            f"data {self.data}, {self.n_items} item(s), {self.seconds:.1f} s"
        )
        return "\n".join([title, format_table(header, rows), *footnotes])


@dataclass
class PairItem:
    """One media file of a pair data set and every caption given for it."""

    media: Path
    captions: list[str]


def read_pairs(
    data: str | Path, modality: str, specs: Mapping[str, Any], root: str | Path | None = None
) -> list[tuple[Path, str]]:
    """(media path, caption) of every valid pair record of ``modality`` in ``data``, in order.

    Uses `nextgpt.data.read_records` (bad records are skipped with a warning naming them).
    """
    from nextgpt.data import DatasetSource, read_records

    if modality not in specs:
        raise ConfigError(f"modality {modality!r} is not one of the model's modalities ({', '.join(specs)})")
    source = DatasetSource(path=str(data), format="pairs", root=None if root is None else str(root), task="caption")
    samples, _ = read_records(source, specs, on_bad_record="skip")
    pairs = [(s.inputs[0].path, s.turns[-1].text) for s in samples if s.inputs and s.inputs[0].modality == modality]
    if not pairs:
        raise ConfigError(
            f"{data}: no valid {modality} pair records (expected a JSON list of {{caption, id, {modality}_name}})"
        )
    return pairs


def group_pairs(pairs: Sequence[tuple[Path, str]]) -> list[PairItem]:
    """Pairs grouped by media file (first-appearance order), each with all its captions."""
    grouped: dict[Path, PairItem] = {}
    for path, caption in pairs:
        grouped.setdefault(path, PairItem(path, [])).captions.append(caption)
    return list(grouped.values())


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr)


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def _root_of(data: str | Path, root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None else Path(data).expanduser().parent


def evaluate_captioning(
    model: Any,
    data: str | Path,
    modality: str,
    root: str | Path | None = None,
    limit: int | None = None,
    prompt: str = DEFAULT_CAPTION_PROMPT,
    max_new_tokens: int | None = None,
    seed: int | None = None,
    temperature: float = 0.0,
    model_name: str = "",
    progress: bool = True,
    note: Callable[[str], None] | None = None,
) -> EvalReport:
    """Caption each media file of ``data`` with ``model``; BLEU-4, ROUGE-L, CIDEr against its
    gold captions. ``prompt`` may contain ``{modality}``; decoding is greedy by default. A media
    file that cannot be decoded is left out with a note naming it (and an ``error`` in its item)."""
    from nextgpt.evaluation.captioning import CAPTION_METRICS

    require_extra("eval", "evaluation (nextgpt eval)")
    note = note or (lambda text: print(text, file=sys.stderr))
    start = time.perf_counter()
    items = group_pairs(read_pairs(data, modality, model.specs, root))
    if limit is not None:
        items = items[:limit]
    base = _root_of(data, root)
    text = prompt.format(modality=modality)
    predictions: list[str] = []
    records: list[dict[str, Any]] = []
    scored: list[PairItem] = []
    for item in _progress(items, len(items), f"caption {modality}", progress):
        message = {
            "role": "user",
            "content": [
                {"type": modality, "path": str(item.media)},
                {"type": "text", "text": text},
            ],
        }
        try:
            output = model.generate(
                [message],
                output_dir=None,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                progress=False,  # the bar over the items is enough
            )
        except MediaError as exc:
            note(f"note: left out of the scores: {exc}")
            records.append({"media": _relative(item.media, base), "error": str(exc), "references": item.captions})
            continue
        scored.append(item)
        predictions.append(output.text)
        records.append(
            {
                "media": _relative(item.media, base),
                "prediction": output.text,
                "references": item.captions,
            }
        )
    if not scored:
        raise ConfigError(f"{data}: none of the {len(items)} {modality} file(s) could be read")
    references = [item.captions for item in scored]
    results = [
        MetricResult(name, fn(predictions, references), True, len(scored)) for name, fn in CAPTION_METRICS.items()
    ]
    if len(scored) < 2:
        for r in results:
            if r.name == "cider":
                r.note = "CIDEr needs several items (document frequencies); 0 on one item"
    return EvalReport(
        "caption",
        modality,
        model_name,
        str(data),
        len(items),
        results,
        records,
        time.perf_counter() - start,
    )


def _build_metrics(
    registry: Any, modality: str, options: Mapping[str, Any], note: Callable[[str], None]
) -> tuple[list[tuple[Any, Any]], list[MetricResult]]:
    built: list[tuple[Any, Any]] = []
    skipped: list[MetricResult] = []
    backends = registry.metrics_for(modality)
    if not backends:
        note(
            f"note: no installed plugin registers quality metrics for {modality!r}; "
            "only the generated files are written"
        )
    for backend in backends:
        try:
            built.append((backend, backend.build(**options)))
        except NextGPTError as exc:
            note(f"note: skipping metric {backend.name!r}: {exc}")
            skipped.append(MetricResult(backend.name, None, backend.higher_is_better, 0, f"skipped: {exc}"))
    return built, skipped


def evaluate_generation(
    model: Any,
    data: str | Path,
    modality: str,
    out: str | Path,
    root: str | Path | None = None,
    limit: int | None = None,
    metric_options: Mapping[str, Any] | None = None,
    decode: DecodeOptions | Mapping[str, Any] | None = None,
    seed: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    batch_size: int = 8,
    model_name: str = "",
    progress: bool = True,
    note: Callable[[str], None] | None = None,
) -> EvalReport:
    """Generate ``modality`` from each caption of ``data`` into ``out``; score it with every
    metric ``model.registry.metrics_for(modality)`` provides.

    ``metric_options`` go to every metric's ``build`` (each takes the ones it knows, e.g.
    ``clip_model``, ``inception_weights``); ``device`` defaults to the model's device.
    ``decode`` holds decoding options of the modality (steps, guidance, size, ...; other names go
    to `DecodeOptions.extra`).
    """
    require_extra("eval", "evaluation (nextgpt eval)")
    note = note or (lambda text: print(text, file=sys.stderr))
    start = time.perf_counter()
    if modality not in getattr(model, "decoders", {}):
        raise ConfigError(f"modality {modality!r} has no decoder in this model, so it cannot be generated")
    spec = model.specs[modality]
    pairs = read_pairs(data, modality, model.specs, root)
    if limit is not None:
        pairs = pairs[:limit]
    base = _root_of(data, root)
    options = {"device": str(model.device), **dict(metric_options or {})}
    built, results = _build_metrics(model.registry, modality, options, note)
    needs_refs = any(backend.needs_references for backend, _ in built)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    counts = {backend.name: 0 for backend, _ in built}
    seen_refs: set[Path] = set()
    records: list[dict[str, Any]] = []
    batch: list[tuple[Any, Path, str]] = []

    def flush() -> None:
        if not batch:
            return
        generated = [g for g, _, _ in batch]
        captions = [c for _, _, c in batch]
        references: list[Any] = []
        if needs_refs:
            for _, path, _ in batch:
                if path not in seen_refs:
                    seen_refs.add(path)
                    try:
                        references.append(spec.load(path))
                    except MediaError as exc:
                        note(f"note: reference left out of the metrics: {exc}")
        for backend, metric in built:
            if backend.name in failed:
                continue
            try:
                metric.update(generated, references if backend.needs_references else [], captions)
                counts[backend.name] += len(generated)
            except (NextGPTError, ValueError, RuntimeError) as exc:
                failed[backend.name] = f"failed: {type(exc).__name__}: {exc}"
                note(f"note: metric {backend.name!r} {failed[backend.name]}")
        batch.clear()

    missing = 0
    if isinstance(decode, Mapping):
        decode = DecodeOptions.from_flat(dict(decode), "decode")
    decode_options = {modality: decode} if decode is not None else None
    for index, (path, caption) in enumerate(_progress(pairs, len(pairs), f"generate {modality}", progress)):
        message = {"role": "user", "content": [{"type": "text", "text": caption}]}
        output = model.generate(
            [message],
            output_dir=out_dir,
            request=[modality],
            decode=decode_options,
            seed=seed,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            file_prefix=f"{index:06d}_",
            progress=False,  # the bar over the items is enough
        )
        media = [m for m in output.media if m.modality == modality]
        record = {
            "caption": caption,
            "reference": _relative(path, base),
            "text": output.text,
            "generated": str(media[0].path) if media and media[0].path else None,
        }
        records.append(record)
        if not media:
            missing += 1
            continue
        batch.append((media[0].media, path, caption))
        if len(batch) >= batch_size:
            flush()
    flush()
    if missing:
        note(f"note: {missing} of {len(pairs)} answers contained no {modality}; they are left out of the metrics")
    for backend, metric in built:
        result = MetricResult(backend.name, None, backend.higher_is_better, counts[backend.name])
        if backend.name in failed:
            result.note = failed[backend.name]
        else:
            try:
                value = float(metric.compute())
                result.value = value
                if not math.isfinite(value):
                    result.note = "not finite"
            except (NextGPTError, ValueError, RuntimeError) as exc:
                result.note = f"failed: {exc}"
                note(f"note: metric {backend.name!r} {result.note}")
        results.append(result)
    order = {b.name: i for i, b in enumerate(model.registry.metrics_for(modality))}
    results.sort(key=lambda r: order.get(r.name, len(order)))
    return EvalReport(
        "generate",
        modality,
        model_name,
        str(data),
        len(pairs),
        results,
        records,
        time.perf_counter() - start,
    )


def parse_options(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """``["name=value", ...]`` as a dict; values that read as JSON numbers/booleans become them."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{what}: expected NAME=VALUE, got {pair!r}")
        try:
            parsed = json.loads(value)
            options[name.strip()] = parsed if isinstance(parsed, (int, float, bool)) else value
        except json.JSONDecodeError:
            options[name.strip()] = value
    return options
