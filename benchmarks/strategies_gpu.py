"""Two training steps with each sharded strategy and with a 4-bit LLM, on the GPU(s) at hand,
each followed by `nextgpt export` and a load of the exported folder: the check that the strategy
blocks of ``examples/configs/strategies`` and ``llm.quantization`` work where a CPU cannot run
them (torch's FSDP refuses CPU processes; DeepSpeed and bitsandbytes need CUDA).

It uses the tiny stage-3 config (LoRA and both projectors train) with the synthetic data set, so
it takes seconds a run; a strategy whose package is missing (DeepSpeed, bitsandbytes) is
reported as skipped, not failed. Without a GPU it says so and exits with status 2;
``--list`` prints the runs without starting them (what the test suite checks on a CPU).

    python benchmarks/strategies_gpu.py            # on a machine with a CUDA GPU
    python benchmarks/strategies_gpu.py --list
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"


@dataclass
class Run:
    """One training run of two steps and its export."""

    name: str
    extra: list[str]
    needs: list[str] = field(default_factory=list)
    """Packages it needs beyond nextgpt's own (a missing one skips the run)."""


def runs() -> list[Run]:
    """Every strategy block, then QLoRA (a 4-bit LLM with LoRA on top) on one device."""
    found = []
    for block in sorted((CONFIGS / "strategies").glob("*.yaml")):
        needs = ["deepspeed"] if block.stem.startswith("deepspeed") else []
        found.append(Run(block.stem, ["--config", str(block)], needs))
    found.append(Run("qlora-4bit", ["--set", "llm.quantization=4"], ["bitsandbytes"]))
    return found


def commands(run: Run, work: Path) -> tuple[list[str], list[str]]:
    """The ``nextgpt fit`` and ``nextgpt export`` command lines of ``run``, run in ``work / run.name``
    (the tiny config's paths are relative to the working folder)."""
    fit = [
        sys.executable,
        "-m",
        "nextgpt",
        "fit",
        "--config",
        str(CONFIGS / "tiny_stage3.yaml"),
        *run.extra,
        "--trainer.accelerator=gpu",
        "--trainer.devices=1",
        "--trainer.precision=bf16-mixed",
        "--trainer.max_steps=2",
    ]
    last = work / run.name / "outputs" / "tiny_stage3" / "checkpoints" / "last.ckpt"
    export = [sys.executable, "-m", "nextgpt", "export", str(last), str(work / run.name / "model")]
    return fit, export


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the runs' commands and stop")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nextgpt-strategies-"))
    if args.list:
        for run in runs():
            for command in commands(run, work):
                print(f"{run.name}: {shlex.join(command)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("needs a CUDA GPU (torch sees none); --list prints the runs")
        return 2
    failed = 0
    for run in runs():
        missing = [name for name in run.needs if importlib.util.find_spec(name) is None]
        if missing:
            print(f"{run.name}: skipped ({', '.join(missing)} not installed)")
            continue
        began = time.perf_counter()
        folder = work / run.name
        data = [sys.executable, "-m", "nextgpt.data.synthetic", str(folder / "outputs" / "tiny_data")]
        subprocess.run(data, check=True, capture_output=True)
        for command in commands(run, work):
            result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{run.name}: FAILED: {shlex.join(command[2:5])}\n{result.stderr[-3000:]}")
                failed += 1
                break
        else:
            check = "from nextgpt import NextGPTModel; import sys; NextGPTModel.from_pretrained(sys.argv[1])"
            loaded = subprocess.run([sys.executable, "-c", check, str(folder / "model")], cwd=folder)
            status = "ok" if loaded.returncode == 0 else "FAILED to load the export"
            failed += loaded.returncode != 0
            print(f"{run.name}: 2 steps, export and load {status} ({time.perf_counter() - began:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
