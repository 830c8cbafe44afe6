"""How many CPU threads torch uses: no more than the CPUs this process may actually run on.

torch sizes its intra-op thread pool from the machine's cores. That oversubscribes when the
process may use fewer of them (a cgroup CPU quota in a container, a CPU affinity mask set by
``taskset`` or a scheduler) and when other processes keep some of them busy: the threads then
wait for each other at every operation. On a shared 2-core machine the toy world's stage-1
training ran 20x slower with torch's default than with one thread.

`default_num_threads` is the CPUs in this process's affinity mask, capped by the cgroup quota
(v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), less the CPUs other processes keep busy (the
one-minute load average, rounded), and at least 1. `configure_threads` applies it (the CLI and
`NextGPTLightningModule` call it) unless the user chose: an explicit number, then
``NEXTGPT_NUM_THREADS``, then ``OMP_NUM_THREADS`` (which torch reads itself) win, in that order.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

ENV_THREADS = "NEXTGPT_NUM_THREADS"
"""Environment variable that fixes the number of torch intra-op threads."""

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all CPUs where the OS has no such mask)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cgroup_cpu_quota(root: Path = _CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when unlimited.

    Reads cgroup v2 (``cpu.max``: ``"<quota> <period>"`` or ``"max <period>"``) and v1
    (``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us``; a quota of -1 is unlimited).
    """
    v2 = _read(root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max" and _positive(quota) and _positive(period):
            return int(quota) / int(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and _positive(quota) and _positive(period):
        return int(quota) / int(period)
    return None


def usable_cpus(root: Path = _CGROUP_ROOT) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (rounded
    up: a quota of 1.5 CPUs keeps two threads busy most of the time)."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def busy_cpus(cpus: int) -> int:
    """How many of ``cpus`` usable CPUs other processes keep busy: the one-minute load average,
    scaled to this process's share of the machine and rounded (0 where the OS does not report
    a load average)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0
    share = cpus / max(cpus, os.cpu_count() or cpus)
    return max(0, round(load * share))


def default_num_threads(root: Path = _CGROUP_ROOT) -> int:
    """The usable CPUs less the busy ones, at least 1."""
    cpus = usable_cpus(root)
    return max(1, cpus - busy_cpus(cpus))


def chosen_num_threads(explicit: int | None = None) -> int | None:
    """The number of threads nextgpt sets, or None to leave torch's setting alone (the user set
    ``OMP_NUM_THREADS``). Order: ``explicit``, ``NEXTGPT_NUM_THREADS``, ``OMP_NUM_THREADS``,
    `default_num_threads`."""
    from nextgpt.errors import ConfigError

    if explicit is not None:
        if explicit < 1:
            raise ConfigError(f"threads: expected a positive number, got {explicit}")
        return explicit
    raw = os.environ.get(ENV_THREADS, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{ENV_THREADS}: expected a positive whole number, got {raw!r}")
        return int(raw)
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return default_num_threads()


def configure_threads(explicit: int | None = None) -> int:
    """Set torch's intra-op threads as `chosen_num_threads` says; returns the number in use."""
    import torch

    chosen = chosen_num_threads(explicit)
    if chosen is not None and chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    return torch.get_num_threads()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _positive(text: str) -> bool:
    return text.lstrip("-").isdigit() and int(text) > 0
