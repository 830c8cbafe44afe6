"""Decoding speed on CPU (tiny LLaMA): signal capture and batching against plain ``generate``.

Three ratios, each from calls interleaved one by one (so drift in machine load hits both sides
alike) and compared by their medians:

* ``capture``: `nextgpt.decoding` (``generate`` with the output layer's inputs recorded, then the
  signal states of the whole answer, the last token fed in one continuation step) against the
  plain ``llm.generate`` call on the same prompt, in tokens/s. Target >= 0.95.
* ``capture (fed tokens)``: the same when the answer goes on after its signal tokens (the usual
  case: EOS follows them), so every state wanted was recorded and no continuation runs.
* ``second pass``: for comparison, what generation did before: plain ``generate`` and then one
  forward over the prompt and the whole answer to read the states.
* ``batch``: one left-padded batch of 8 conversations against 8 single calls, in generated
  tokens/s. Target >= 3.

Every call generates exactly ``--tokens`` tokens (``min_new_tokens``) so both sides do the same work.

Usage: .venv/bin/python benchmarks/generation_speed.py [--calls N] [--tokens T] [--threads T] [--json PATH]
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

import torch
from nextgpt.decoding import decode, states_of
from nextgpt.model import NextGPTModel
from nextgpt.progress import set_progress

BATCH = 8


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(a: Callable[[], Any], b: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, called alternately (which goes first alternates too)."""
    times_a, times_b = [], []
    a(), b()  # warm-up
    for index in range(calls):
        if index % 2:
            times_b.append(timed(b))
            times_a.append(timed(a))
        else:
            times_a.append(timed(a))
            times_b.append(timed(b))
    return statistics.median(times_a), statistics.median(times_b)


def measure(calls: int = 9, tokens: int = 32) -> dict[str, dict[str, float]]:
    """The three comparisons, as ``{row: {"toolkit_tok_s", "plain_tok_s", "ratio"}}``."""
    set_progress(False)
    model = NextGPTModel.from_pretrained("tiny", modalities=["image"])
    llm, eos = model.llm, model.tokenizer.eos_token_id
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randn(24 + 3 * i, model.d_llm, generator=generator) for i in range(BATCH)]
    pad = torch.zeros(model.d_llm)
    options = {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": eos,
        "eos_token_id": eos,
    }
    prompt = prompts[0]

    def plain() -> list[int]:
        mask = torch.ones(1, prompt.shape[0], dtype=torch.long)
        return llm.generate(inputs_embeds=prompt[None], attention_mask=mask, **options)[0].tolist()

    def capture() -> torch.Tensor | None:
        decoded = decode(llm, [prompt], pad, "dynamic", 0, **options)
        return states_of(llm, decoded, [decoded.new_ids[0]], eos)[0]

    def capture_fed() -> torch.Tensor | None:
        decoded = decode(llm, [prompt], pad, "dynamic", 0, **options)
        return states_of(llm, decoded, [decoded.new_ids[0][:-1]], eos)[0]

    def second_pass() -> torch.Tensor:
        ids = plain()
        full = torch.cat([prompt, llm.get_input_embeddings()(torch.tensor(ids))])[None]
        return llm(inputs_embeds=full, output_hidden_states=True).hidden_states[-1]

    def batch() -> None:
        decode(llm, prompts, pad, "dynamic", 0, **options)

    def singles() -> None:
        for one in prompts:
            decode(llm, [one], pad, "dynamic", 0, **options)

    rows: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, ours, theirs, count in (
            ("capture vs plain generate", capture, plain, tokens),
            ("capture (fed tokens) vs plain generate", capture_fed, plain, tokens),
            ("second pass vs plain generate", second_pass, plain, tokens),
            (f"batch of {BATCH} vs {BATCH} single calls", batch, singles, tokens * BATCH),
        ):
            ours_s, theirs_s = interleaved(ours, theirs, calls)
            rows[name] = {
                "toolkit_tok_s": count / ours_s,
                "plain_tok_s": count / theirs_s,
                "ratio": theirs_s / ours_s,
            }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=9, help="timed calls of each side per row")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per call")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure(args.calls, args.tokens)
    print(f"{'row':40} {'toolkit tok/s':>14} {'other tok/s':>12} {'ratio':>7}")
    for name, row in rows.items():
        print(f"{name:40} {row['toolkit_tok_s']:14.1f} {row['plain_tok_s']:12.1f} {row['ratio']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
