"""CPU budget of this process and its intra-op thread policy.

The cores a process may use are the fewest of: its CPU affinity (``os.sched_getaffinity``), the cgroup CPU quota
(``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in v1, rounded up) and, inside a SLURM job,
``SLURM_CPUS_PER_TASK``. torch's intra-op threads are those cores minus the DataLoader worker processes (each
worker computes on one core), at least one; ``--num_threads``, or else ``OMP_NUM_THREADS``, overrides the rule.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    """``cores`` usable by this process and what limited it (source -> cores, only the sources that exist)."""

    cores: int
    sources: dict[str, int] = field(default_factory=dict)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The process's own cgroup folder (from /proc/self/cgroup) first, then the root (a container's namespace)."""
    dirs: list[Path] = []
    text = _read(proc_cgroup) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2].startswith("/") and parts[2] != "/":
            rel = parts[2].lstrip("/")
            dirs += [root / rel, root / "cpu" / rel, root / "cpu,cpuacct" / rel]
    return dirs + [root, root / "cpu", root / "cpu,cpuacct"]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """Cores allowed by the cgroup CPU quota (rounded up, at least 1), or None when there is no quota."""
    for folder in _own_cgroup_dirs(root, proc_cgroup):
        v2 = _read(folder / "cpu.max")
        if v2 is not None:
            match = re.fullmatch(r"(\d+)\s+(\d+)", v2)  # "max 100000" means no quota
            if match and int(match.group(2)) > 0:
                return max(1, math.ceil(int(match.group(1)) / int(match.group(2))))
            return None
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            if quota.lstrip("-").isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
                return max(1, math.ceil(int(quota) / int(period)))
            return None
    return None


def cpu_budget(
    environ: Mapping[str, str] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = Path("/proc/self/cgroup"),
) -> CpuBudget:
    """The cores this process may use: the fewest of affinity, cgroup quota and SLURM_CPUS_PER_TASK."""
    env = os.environ if environ is None else environ
    sources: dict[str, int] = {}
    if hasattr(os, "sched_getaffinity"):
        sources["affinity"] = len(os.sched_getaffinity(0))
    else:
        sources["cpu_count"] = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if quota is not None:
        sources["cgroup quota"] = quota
    match = re.match(r"\s*(\d+)", env.get("SLURM_CPUS_PER_TASK", ""))
    if "SLURM_JOB_ID" in env and match and int(match.group(1)) > 0:
        sources["SLURM_CPUS_PER_TASK"] = int(match.group(1))
    return CpuBudget(max(1, min(sources.values())), sources)


@dataclass(frozen=True)
class ThreadPolicy:
    """torch intra-op threads of the main process and why (``override``: the option or variable that set them)."""

    threads: int
    budget: CpuBudget
    workers: int
    processes: int = 1
    override: str = ""

    def describe(self) -> str:
        """One line for the log, e.g. ``2 intra-op threads = 2 cores (affinity 2) - 0 DataLoader workers``."""
        limits = ", ".join(f"{name} {n}" for name, n in self.budget.sources.items())
        if self.override:
            return f"{self.threads} intra-op threads ({self.override}; {self.budget.cores} cores available: {limits})"
        share = f" / {self.processes} processes on this node" if self.processes > 1 else ""
        return (
            f"{self.threads} intra-op threads = {self.budget.cores} cores ({limits}){share}"
            f" - {self.workers} DataLoader workers (override with --num_threads or OMP_NUM_THREADS)"
        )


def thread_policy(
    budget: CpuBudget,
    num_workers: int,
    processes: int = 1,
    requested: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> ThreadPolicy:
    """Threads = the process's share of the cores minus its DataLoader workers, at least 1, unless set explicitly.

    Args:
        budget: the cores of this process (:func:`cpu_budget`).
        num_workers: DataLoader worker processes of this process (one core each).
        processes: processes sharing these cores (DDP ranks started on one node from one affinity set).
        requested: ``--num_threads``; > 0 wins over everything.
        environ: where ``OMP_NUM_THREADS`` is read (default ``os.environ``); a positive value set there is the
            user's explicit choice (torch reads it too) and wins over the rule.
    """
    if requested is not None and requested > 0:
        return ThreadPolicy(int(requested), budget, num_workers, processes, "--num_threads")
    env = os.environ if environ is None else environ
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return ThreadPolicy(int(omp), budget, num_workers, processes, "OMP_NUM_THREADS")
    share = max(1, budget.cores // max(1, processes))
    return ThreadPolicy(max(1, share - max(0, num_workers)), budget, num_workers, processes)
