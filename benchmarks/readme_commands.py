"""Time every command the README marks as runnable, each as its own process, the way a user runs
it: ``python benchmarks/readme_commands.py [--json PATH]``.

The commands run in order in a fresh working folder that holds the repository's ``examples/`` and
``benchmarks/`` and a ``.venv`` pointing at this environment (tests/test_readme.py runs the same
commands in one process, without timing them). Python snippets run as ``python FILE``. A bar
shows progress; the table lists each command with its README line, exit code and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from readme_blocks import block_commands, readme_blocks  # noqa: E402


def planned(readme: Path) -> list[tuple[int, str, list[str]]]:
    """(README line, text, argv) of every runnable command, in order; a snippet is ``python FILE``."""
    steps = []
    for block in readme_blocks(readme):
        if block.kind != "run":
            continue
        if block.lang == "python":
            steps.append((block.line, f"python snippet at line {block.line}", ["python", block.text]))
            continue
        steps += [(c.line, c.text, c.argv) for c in block_commands(block) if not c.long]
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the timings as JSON")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "NEXTGPT_PROGRESS": "0"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="nextgpt-readme-") as tmp:
        work = Path(tmp)
        for name in ("examples", "benchmarks"):
            (work / name).symlink_to(ROOT / name)
        (work / ".venv").symlink_to(Path(sys.prefix))
        steps = planned(ROOT / "README.md")
        for line, text, argv in tqdm(steps, desc="README commands", unit="cmd"):
            if argv[0] == "python" and len(argv) == 2 and "\n" in argv[1]:
                script = work / f"readme_{line}.py"
                script.write_text(argv[1])
                argv = [str(bin_dir / "python"), str(script)]
            elif argv[0].startswith(".venv/bin/"):
                argv = [str(work / argv[0]), *argv[1:]]
            start = time.perf_counter()
            done = subprocess.run(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            rows.append({"line": line, "command": text, "exit": done.returncode, "seconds": round(seconds, 1)})
            if done.returncode != 0:
                tqdm.write(f"README.md:{line}: exit {done.returncode}\n{done.stderr[-2000:]}")
    width = max(len(r["command"]) for r in rows)
    print(f"{'line':>5}  {'command':<{width}}  exit  seconds")
    for r in rows:
        print(f"{r['line']:>5}  {r['command']:<{width}}  {r['exit']:>4}  {r['seconds']:>7.1f}")
    total = sum(r["seconds"] for r in rows)
    print(f"{len(rows)} commands, {total:.0f} s in all, slowest {max(r['seconds'] for r in rows):.1f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any(r["exit"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
