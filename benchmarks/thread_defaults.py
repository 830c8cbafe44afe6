"""Thread defaults: toy-world stage-1 training speed with nextgpt's default thread count against
``OMP_NUM_THREADS=1``, torch's own default and every count up to the usable CPUs.

    python benchmarks/thread_defaults.py [--workdir outputs/thread_bench] [--steps 100] [--repeats 4]

Each setting trains stage 1 of the toy world with ``nextgpt fit`` (the Lightning CLI, config
``examples/toy_world/configs/stage1.yaml``) in a process of its own; a callback times each step
after a warm-up, and a run's speed is one over its median step time. Settings are interleaved,
``--repeats`` rounds of all of them, so each sees the same machine load; a setting's speed is the
median over rounds. Prints steps/s and the ratio of each to the best setting, and, pooling the
runs of settings that used the same thread count (they are the same configuration), the speed of
the count nextgpt's default chose against the best count: that should be at least 0.9. The world
and a small-budget ``toy`` model are built once into ``--workdir`` (about 2 minutes), and the
frozen encoders' features are cached there before the timed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "toy_world" / "configs" / "stage1.yaml"


class StepTimer(Callback):
    """Lightning callback (loaded by the child processes): writes the steps/s after ``warmup``
    steps, and the thread count torch used, to ``path``."""

    def __init__(self, path: str, warmup: int = 5) -> None:
        self.path, self.warmup, self.starts = path, warmup, []

    def on_train_batch_start(self, *args: Any) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, *args: Any) -> None:
        import torch

        self.starts.append(time.perf_counter())
        timed = self.starts[self.warmup :]
        durations = [b - a for a, b in zip(timed, timed[1:], strict=False)]
        rate = 1 / statistics.median(durations)  # the median step: robust to bursts of load from elsewhere
        Path(self.path).write_text(json.dumps({"steps_per_s": rate, "threads": torch.get_num_threads()}))


def prepare(workdir: Path, env: dict[str, str]) -> Path:
    """The toy world and a small-budget toy model in ``workdir`` (built once)."""
    python = sys.executable
    world = workdir / "outputs" / "toy_world"
    if not (world / "heldout").is_dir():
        script = ROOT / "examples" / "toy_world" / "generate_world.py"
        subprocess.run([python, str(script), "--root", str(world)], check=True, env=env, capture_output=True)
    toy = workdir / "toy-base"
    if not (toy / "config.json").is_file():
        print("building the small-budget toy base model (about 2 minutes)...", flush=True)
        build = ROOT / "examples" / "toy_world" / "build_toy.py"
        command = [python, str(build), "--budget", "small", "--base-only", "--out", str(workdir / "toy")]
        subprocess.run(command, check=True, env=env)
    return toy


def fit(workdir: Path, toy: Path, steps: int, env: dict[str, str], result: Path | None) -> None:
    callbacks = "[]"
    if result is not None:
        callbacks = json.dumps([{"class_path": "thread_defaults.StepTimer", "init_args": {"path": str(result)}}])
    nextgpt = Path(sys.executable).parent / "nextgpt"
    argv = [
        str(nextgpt),
        "fit",
        "--config",
        str(CONFIG),
        f"--model.model={toy}",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=100000",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.callbacks={callbacks}",
        f"--trainer.default_root_dir={workdir / 'runs'}",
    ]
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nextgpt fit failed ({' '.join(argv)}):\n{done.stderr[-3000:]}")


def main() -> int:
    from nextgpt.threads import ENV_THREADS, default_num_threads, usable_cpus
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("outputs/thread_bench"))
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run (after 5 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", ENV_THREADS)}
    base.update(
        HF_HUB_OFFLINE="1",
        NEXTGPT_PROGRESS="0",
        PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    toy = prepare(workdir, base)
    fit(workdir, toy, 2, base, None)  # fills the feature cache, untimed

    import torch

    cpus = usable_cpus()
    settings = {"nextgpt default": {}, "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"}}
    torch_default = torch.get_num_threads()  # this process has not set it: torch's own choice
    for n in sorted({*range(1, cpus + 1), torch_default}):
        label = f"{n} thread{'s' * (n > 1)}" + (" (torch's)" if n == torch_default else "")
        settings[label] = {ENV_THREADS: str(n)}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    threads: dict[str, list[int]] = {name: [] for name in settings}
    runs = [(r, name) for r in range(args.repeats) for name in settings]
    for round_, name in tqdm(runs, desc="stage-1 runs", unit="run"):
        result = workdir / f"timing-{round_}-{name.replace(' ', '_').replace('=', '')}.json"
        fit(workdir, toy, args.steps + 5, {**base, **settings[name]}, result)
        measured = json.loads(result.read_text())
        rates[name].append(measured["steps_per_s"])
        threads[name].append(measured["threads"])
    speed = {name: statistics.median(values) for name, values in rates.items()}
    best = max(speed.values())
    # Settings that ran with the same thread count are the same configuration: pooled, their
    # runs say how fast each count is, without picking the luckiest of identical settings.
    by_count: dict[int, list[float]] = {}
    for name, values in rates.items():
        for count, value in zip(threads[name], values, strict=True):
            by_count.setdefault(count, []).append(value)
    count_speed = {n: statistics.median(v) for n, v in sorted(by_count.items())}
    print(
        f"\ntoy stage 1, {args.steps} timed steps, {args.repeats} interleaved rounds; usable CPUs {cpus}, "
        f"torch's own default {torch_default} threads, nextgpt's default now {default_num_threads()} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    print(f"{'setting':<22}{'threads':>8}{'steps/s':>10}{'/ best':>8}   runs (steps/s)")
    for name in settings:
        runs_text = ", ".join(f"{v:.1f}" for v in rates[name])
        used = "/".join(str(n) for n in sorted(set(threads[name])))
        print(f"{name:<22}{used:>8}{speed[name]:>10.2f}{speed[name] / best:>8.2f}   {runs_text}")
    pooled = ", ".join(f"{n}: {s:.2f} steps/s" for n, s in count_speed.items())
    print(f"by thread count (all runs that used it): {pooled}")
    ratio = speed["nextgpt default"] / best
    # the default may choose differently from round to round (it watches the load)
    choice = statistics.median(count_speed[n] for n in threads["nextgpt default"]) / max(count_speed.values())
    print(f"nextgpt default / best setting: {ratio:.2f}; the default's thread count / the best count: {choice:.2f}")
    print(f"target 0.9: {'met' if choice >= 0.9 else 'missed'} by the default's choice")
    if args.json:
        figures = {"rates": rates, "threads": threads, "ratio": ratio, "choice": choice}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
