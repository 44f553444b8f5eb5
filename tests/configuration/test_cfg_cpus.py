"""CPU budget (affinity, cgroup quota, SLURM) and the intra-op thread policy applied by the runner."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from Engineering.configuration.cpus import CpuBudget, cgroup_cpu_limit, cpu_budget, thread_policy
from Engineering.configuration.resolve import SystemResources
from Engineering.configuration.run_config import RunConfig
from Engineering.engines import runner


def _cgroup(tmp_path: Path, files: dict[str, str], own: str = "0::/\n") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(own)
    return root, proc


@pytest.mark.parametrize(
    "files, own, expected",
    [
        ({"cpu.max": "250000 100000\n"}, "0::/\n", 3),  # v2 at the namespace root, rounded up
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2 without quota
        ({"job/cpu.max": "100000 100000\n", "cpu.max": "max 100000\n"}, "0::/job\n", 1),  # own cgroup first
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", 4),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),  # v1, none
        ({}, "0::/\n", None),  # no cgroup files at all
    ],
)
def test_cgroup_quota(tmp_path, files, own, expected):
    root, proc = _cgroup(tmp_path, files, own)
    assert cgroup_cpu_limit(root, proc) == expected


def test_budget_is_the_smallest_limit(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    root, proc = _cgroup(tmp_path, {"cpu.max": "100000 100000\n"})
    slurm = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "64"}
    budget = cpu_budget(slurm, root, proc)
    assert budget.sources == {"affinity": affinity, "cgroup quota": 1, "SLURM_CPUS_PER_TASK": 64}
    assert budget.cores == 1
    free, _ = _cgroup(tmp_path / "free", {})
    assert cpu_budget({"SLURM_CPUS_PER_TASK": "1"}, free, proc).sources == {"affinity": affinity}  # not a job


@pytest.mark.parametrize(
    "cores, workers, processes, requested, threads",
    [(2, 0, 1, None, 2), (2, 2, 1, None, 1), (16, 4, 1, None, 12), (16, 2, 4, None, 2), (2, 0, 1, 5, 5)],
)
def test_thread_policy(cores, workers, processes, requested, threads):
    policy = thread_policy(CpuBudget(cores, {"affinity": cores}), workers, processes, requested, environ={})
    assert policy.threads == threads
    line = policy.describe()
    assert line.startswith(f"{threads} intra-op threads")
    assert ("--num_threads;" in line) == bool(requested)


@pytest.mark.parametrize("value, threads", [("3", 3), ("", 2), ("0", 2), ("x", 2)])
def test_omp_num_threads_is_an_explicit_choice(value, threads):
    budget = CpuBudget(2, {"affinity": 2})
    policy = thread_policy(budget, 0, environ={"OMP_NUM_THREADS": value})
    assert policy.threads == threads and (policy.override == "OMP_NUM_THREADS") == (threads == 3)
    assert thread_policy(budget, 0, requested=5, environ={"OMP_NUM_THREADS": "3"}).threads == 5  # the option wins


def test_runner_applies_and_prints_the_policy_once(caplog, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner, "cpu_budget", lambda: CpuBudget(4, {"affinity": 4}))

    def cfg(**options: object) -> RunConfig:
        return RunConfig.build("diffae", options, {"model": {"latent_dim": 4}})

    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="imlatent"):
            applied = runner._apply_resources(cfg(num_workers=8, num_threads=0), SystemResources(None, 1, {}))
        assert applied.run.num_workers == 2 and torch.get_num_threads() == 2  # workers: floor(0.9 * 4) - 1
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Threads:")]
        assert lines == ["Threads: 2 intra-op threads = 4 cores (affinity 4) - 2 DataLoader workers "
                         "(override with --num_threads or OMP_NUM_THREADS)"]  # fmt: skip
        monkeypatch.setattr(runner, "cpu_budget", lambda: CpuBudget(2, {"affinity": 2}))
        applied = runner._apply_resources(cfg(num_workers=8, num_threads=0), SystemResources(None, 1, {}))
        assert applied.run.num_workers == 0 and torch.get_num_threads() == 2 and applied.run.nbatch_prefetch is None
        runner._apply_resources(cfg(num_workers=0, num_threads=3), SystemResources(None, 1, {}))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
