"""Wall time and peak resident memory of `nextgpt demo` (tiny preset, CPU), in one run.

Usage: .venv/bin/python benchmarks/demo_resources.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    nextgpt = Path(sys.executable).parent / "nextgpt"
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([str(nextgpt), "demo", "--out", out], capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return done.returncode
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {"demo_wall_s": round(wall, 1), "demo_peak_rss_mib": round(peak_mib)}
    print(f"nextgpt demo: {figures['demo_wall_s']} s wall, peak RSS {figures['demo_peak_rss_mib']} MiB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
