"""Overhead of the toolkit's decoders over calling the diffusers pipelines directly (tiny, CPU).

For each backend (Stable Diffusion, AudioLDM, zeroscope, PixArt-Sigma, Stable Audio, FLUX.1
[schnell], CogVideoX, Wan 2.1) on its tiny
random pipeline, times ``decoder.generate(condition, options)`` against a hand-written direct
pipeline call with the same embeddings (``prompt_embeds``, attention masks, the negative's under
``negative_*``), steps, guidance, size and seed. The two
are interleaved call by call (alternating which goes first) so that drift in machine load hits
both alike; the first pair is checked to give identical media. Reported per call: median ms of
each, and ``direct / toolkit`` (1.0 = no overhead; below 0.95 would mean >5% overhead).

Usage: .venv/bin/python benchmarks/decode_overhead.py [--calls N] [--threads T] [--only NAME ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nextgpt.conditions import Condition
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder
from nextgpt.progress import set_progress

CAPTIONS = ["a red circle on a white background", "a short high beep"]


def backends() -> list[tuple[str, DiffusersDecoder, DecodeOptions, dict[str, Any]]]:
    """(name, tiny decoder, decode options, matching other arguments of a direct pipeline call)."""
    from nextgpt_audio.decoder import AudioLDMDecoder
    from nextgpt_audio.stable_audio import StableAudioDecoder
    from nextgpt_image.decoder import StableDiffusionDecoder
    from nextgpt_image.flux import FluxSchnellDecoder
    from nextgpt_image.pixart import PixArtSigmaDecoder
    from nextgpt_video.cogvideox import CogVideoXDecoder
    from nextgpt_video.decoder import TextToVideoDecoder
    from nextgpt_video.wan import WanDecoder

    return [
        (
            "stable-diffusion",
            StableDiffusionDecoder("tiny"),
            DecodeOptions(steps=2, guidance=7.5, height=32, width=32),
            {"height": 32, "width": 32, "output_type": "pil"},
        ),
        (
            "audioldm",
            AudioLDMDecoder("tiny"),
            DecodeOptions(steps=2, guidance=2.5, seconds=0.064),
            {"audio_length_in_s": 0.064, "output_type": "np"},
        ),
        (
            "zeroscope",
            TextToVideoDecoder("tiny"),
            DecodeOptions(steps=2, guidance=9.0, num_frames=4, height=32, width=32),
            {"num_frames": 4, "height": 32, "width": 32, "output_type": "np"},
        ),
        (
            "pixart-sigma",
            PixArtSigmaDecoder("tiny"),
            DecodeOptions(steps=2, guidance=4.5, height=32, width=32),
            {"height": 32, "width": 32, "output_type": "pil", "use_resolution_binning": False, "negative_prompt": None},
        ),
        (
            "stable-audio",
            StableAudioDecoder("tiny"),
            DecodeOptions(steps=2, guidance=7.0, seconds=0.25),
            {"audio_end_in_s": 0.25, "output_type": "np"},
        ),
        (
            "flux-schnell",
            FluxSchnellDecoder("tiny"),
            DecodeOptions(steps=2, guidance=0.0, height=32, width=32),
            {"height": 32, "width": 32, "output_type": "pil", "max_sequence_length": 16},
        ),
        (
            "cogvideox",
            CogVideoXDecoder("tiny"),
            DecodeOptions(steps=2, guidance=6.0, num_frames=5, height=16, width=16),
            {"num_frames": 5, "height": 16, "width": 16, "output_type": "np", "max_sequence_length": 16},
        ),
        (
            "wan",
            WanDecoder("tiny"),
            DecodeOptions(steps=2, guidance=5.0, num_frames=5, height=16, width=16),
            {"num_frames": 5, "height": 16, "width": 16, "output_type": "np", "max_sequence_length": 16},
        ),
    ]


def direct_embeddings(decoder: DiffusersDecoder, condition: Condition) -> dict[str, torch.Tensor]:
    """Each condition part and mask under its pipeline keyword, the negative's as ``negative_*``."""
    out: dict[str, torch.Tensor] = {}
    negative = decoder.negative_condition()
    pairs = ((condition, ""), (None if negative is None else negative.expand(condition.batch_size), "negative_"))
    for source, prefix in pairs:
        if source is None:
            continue
        for part in source.spec.parts:
            out[prefix + part.name] = source[part.name]
            if part.mask:
                out[prefix + part.mask] = source.mask(part.name)
    return out


def first_array(output: Any) -> np.ndarray:
    """The first item of a pipeline output or a toolkit media list, as an array."""
    if isinstance(output, list):
        item = output[0]
        for attribute in ("waveform", "frames"):
            if hasattr(item, attribute):
                return np.asarray(getattr(item, attribute))
        return np.asarray(item)
    if hasattr(output, "images"):
        return np.asarray(output.images[0])
    if hasattr(output, "audios"):
        audio = np.asarray(output.audios[0])
        return audio if audio.ndim == 2 else audio[None, :]
    return (np.asarray(output.frames[0]) * 255).round().clip(0, 255).astype(np.uint8)


def measure(
    decoder: DiffusersDecoder, options: DecodeOptions, direct_size: dict[str, Any], calls: int
) -> dict[str, Any]:
    """Time ``calls`` toolkit and direct calls, interleaved, after one untimed pair."""
    condition = decoder.condition_from_text(CAPTIONS)
    embeddings = direct_embeddings(decoder, condition)
    pipeline = decoder.pipeline

    def toolkit(seed: int) -> Any:
        return decoder.generate(condition, options.model_copy(update={"seed": seed}))

    def direct(seed: int) -> Any:
        return pipeline(
            **embeddings,
            num_inference_steps=options.steps,
            guidance_scale=options.guidance,
            generator=torch.Generator().manual_seed(seed),
            **direct_size,
        )

    same = bool(np.array_equal(first_array(toolkit(0)), first_array(direct(0))))
    times: dict[str, list[float]] = {"toolkit": [], "direct": []}
    runners: dict[str, Callable[[int], Any]] = {"toolkit": toolkit, "direct": direct}
    for i in range(calls):
        order = ("toolkit", "direct") if i % 2 == 0 else ("direct", "toolkit")
        for name in order:
            start = time.perf_counter()
            runners[name](i + 1)
            times[name].append(time.perf_counter() - start)
    toolkit_ms = statistics.median(times["toolkit"]) * 1000
    direct_ms = statistics.median(times["direct"]) * 1000
    return {
        "calls": calls,
        "toolkit_ms": round(toolkit_ms, 2),
        "direct_ms": round(direct_ms, 2),
        "ratio_direct_over_toolkit": round(direct_ms / toolkit_ms, 3),
        "toolkit_total_s": round(sum(times["toolkit"]), 3),
        "direct_total_s": round(sum(times["direct"]), 3),
        "identical_media": same,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per path and backend")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models)")
    parser.add_argument("--only", nargs="+", metavar="NAME", default=None, help="time only these backends")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_progress(False)  # a denoising bar would be timed with the toolkit's path only

    results: dict[str, Any] = {}
    print(
        f"decode overhead, tiny pipelines, CPU, {args.threads} thread(s), batch {len(CAPTIONS)}, "
        f"{args.calls} interleaved calls each (median per call)"
    )
    row = "{:<18}{:>12}{:>12}{:>16}{:>12}"
    print(row.format("backend", "toolkit ms", "direct ms", "direct/toolkit", "same media"))
    for name, decoder, options, direct_size in backends():
        if args.only and name not in args.only:
            continue
        figures = measure(decoder, options, direct_size, args.calls)
        results[name] = figures
        print(
            row.format(
                name,
                f"{figures['toolkit_ms']:.1f}",
                f"{figures['direct_ms']:.1f}",
                f"{figures['ratio_direct_over_toolkit']:.3f}",
                "yes" if figures["identical_media"] else "NO",
            )
        )
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "backends": results}, indent=2))
    return 0 if all(r["identical_media"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
