"""Load check of ``nextgpt serve`` on the tiny preset (CPU).

Starts the real command (``nextgpt serve --model tiny``) as a subprocess, warms it up, then:

1. **load**: ``--clients`` concurrent clients (the official ``openai`` client) send a mix of
   requests (text to text, text to image, image to text) for ``--seconds``; reported: requests
   served, errors (must be 0), p50/p95 latency (queueing included), and the server's resident
   memory after warm-up and at the end (growth must stay under 10%);
2. **overhead**: the same requests one at a time, each sent to the server over a plain
   kept-alive HTTP connection, through the openai client, and run by calling
   ``NextGPTModel.generate`` directly in this process (same inputs, seeds and options),
   interleaved call by call; reported: the total seconds of each and ``direct / served`` (1.0 =
   no overhead; must be >= 0.9), and the same ratio through the openai client (the client
   library's own cost included, for information).

Both sides use ``--threads`` torch threads. Exit status 1 when a check fails.

Usage: .venv/bin/python benchmarks/serve_load.py [--clients N] [--seconds S] [--pairs N] [--threads T] [--json PATH]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, threads: int, queue_size: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "nextgpt", "serve", "--model", "tiny", "--port", str(port), "--quiet"]
    command += ["--threads", str(threads), "--queue-size", str(queue_size)]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start within 300 s")


def requests(image: Path) -> list[dict[str, Any]]:
    """The request mix: (OpenAI request, the same as ``generate`` arguments)."""
    url = f"data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()}"
    return [
        {"name": "text>text", "parts": [], "text": "Say hello.", "out": []},
        {"name": "text>image", "parts": [], "text": "Draw a red circle.", "out": ["image"]},
        {"name": "image>text", "parts": [("image_url", url, image)], "text": "What is this?", "out": []},
    ]


def openai_call(client: Any, spec: dict[str, Any], seed: int) -> Any:
    content: list[dict[str, Any]] = [{"type": kind, kind: {"url": url}} for kind, url, _ in spec["parts"]]
    content.append({"type": "text", "text": spec["text"]})
    return client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": content}],
        modalities=["text", *spec["out"]],
        max_tokens=8,
        seed=seed,
    )


def direct_call(model: Any, spec: dict[str, Any], seed: int, out: Path) -> Any:
    content: list[dict[str, Any]] = [{"type": "image", "path": str(path)} for _, _, path in spec["parts"]]
    content.append({"type": "text", "text": spec["text"]})
    return model.generate(
        [{"role": "user", "content": content}],
        output_dir=out,
        request=spec["out"],
        max_new_tokens=8,
        seed=seed,
        progress=False,
    )


def load_phase(url: str, mix: list[dict[str, Any]], clients: int, seconds: float) -> dict[str, Any]:
    import openai

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop(number: int) -> None:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        i = 0
        while time.monotonic() < stop_at:
            spec = mix[(number + i) % len(mix)]
            began = time.perf_counter()
            try:
                openai_call(client, spec, seed=i)
            except Exception as exc:
                with lock:
                    errors.append(f"{spec['name']}: {type(exc).__name__}: {exc}")
            else:
                with lock:
                    latencies.append(time.perf_counter() - began)
            i += 1

    workers = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    quantiles = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    return {
        "served": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p95_s": quantiles[18],
    }


def raw_call(connection: Any, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """The request `openai_call` sends, over a plain kept-alive HTTP connection (no client library)."""
    content: list[dict[str, Any]] = [{"type": kind, kind: {"url": url}} for kind, url, _ in spec["parts"]]
    content.append({"type": "text", "text": spec["text"]})
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "modalities": ["text", *spec["out"]],
        "max_tokens": 8,
        "seed": seed,
    }
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {answer}")
    return answer


def overhead_phase(url: str, model: Any, mix: list[dict[str, Any]], pairs: int, out: Path) -> dict[str, Any]:
    """Each request of the mix, in turn: served over plain HTTP (the server's own overhead),
    served through the openai client (the overhead a client library adds on top), and by
    ``generate`` directly; the three are interleaved, rotating which goes first."""
    import http.client

    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    calls = {
        "served": lambda spec, seed: raw_call(connection, spec, seed),
        "openai": lambda spec, seed: openai_call(client, spec, seed),
        "direct": lambda spec, seed: direct_call(model, spec, seed, out),
    }
    times: dict[str, list[float]] = {side: [] for side in calls}
    sides = list(calls)
    for i in range(pairs):
        spec = mix[i % len(mix)]
        for side in sides[i % 3 :] + sides[: i % 3]:
            began = time.perf_counter()
            calls[side](spec, i)
            times[side].append(time.perf_counter() - began)
    connection.close()
    total = {side: sum(values) for side, values in times.items()}
    return {
        "served_total_s": total["served"],
        "openai_client_total_s": total["openai"],
        "direct_total_s": total["direct"],
        "direct_over_served": total["direct"] / total["served"],
        "direct_over_openai_client": total["direct"] / total["openai"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default: 4)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load phase (default: 30)")
    parser.add_argument("--pairs", type=int, default=24, help="requests of the overhead phase (default: 24)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each side (default: 1)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from nextgpt.model import NextGPTModel
    from nextgpt.progress import set_progress

    set_progress(False)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    from nextgpt_image.examples import example_image
    from nextgpt_image.media import save_image

    image = save_image(example_image(), work / "in.png")
    mix = requests(image)

    port = free_port()
    server = start_server(port, args.threads, queue_size=args.clients * 2)
    url = f"http://127.0.0.1:{port}"
    process = psutil.Process(server.pid)
    try:
        model = NextGPTModel.from_pretrained("tiny")
        import openai

        warm = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        for i in range(2 * len(mix)):  # warm-up: every kind of request, twice, on both sides
            openai_call(warm, mix[i % len(mix)], seed=i)
            direct_call(model, mix[i % len(mix)], seed=i, out=work)
        rss_start = process.memory_info().rss
        load = load_phase(url, mix, args.clients, args.seconds)
        rss_end = process.memory_info().rss
        overhead = overhead_phase(url, model, mix, args.pairs, work)
    finally:
        server.terminate()
        server.wait(timeout=30)

    growth = rss_end / rss_start - 1
    results = {
        "clients": args.clients,
        "seconds": args.seconds,
        **load,
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "rss_growth": growth,
        **overhead,
    }
    print(f"load: {args.clients} clients for {args.seconds:.0f} s on the tiny preset")
    print(f"  requests served {load['served']}, errors {load['errors']}")
    print(f"  latency p50 {load['p50_s']:.3f} s, p95 {load['p95_s']:.3f} s")
    print(f"  server RSS {rss_start / 2**20:.0f} MB after warm-up, {rss_end / 2**20:.0f} MB at the end ({growth:+.1%})")
    print(
        f"overhead ({args.pairs} requests each): served {overhead['served_total_s']:.2f} s, direct generate "
        f"{overhead['direct_total_s']:.2f} s: direct/served {overhead['direct_over_served']:.2f} "
        f"(through the openai client: {overhead['openai_client_total_s']:.2f} s, "
        f"{overhead['direct_over_openai_client']:.2f})"
    )
    for error in load["first_errors"]:
        print(f"  error: {error}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = load["errors"] == 0 and growth < 0.10 and overhead["direct_over_served"] >= 0.9
    print("checks: " + ("passed" if ok else "FAILED (errors must be 0, RSS growth < 10%, direct/served >= 0.9)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
