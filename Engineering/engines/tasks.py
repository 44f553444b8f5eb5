"""The table of tasks: what ``--taskID`` selects.

Each task names the executor that runs it, its engine (LightningModule), how its datamodule is built from the
resolved settings, and the settings it always uses whatever the command line says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl

from Engineering.configuration import RunConfig, RunPaths
from Engineering.data.datamodule import H5DataModule
from Engineering.data.latent_datamodule import LatentDataModule
from Engineering.engines.base import BaseEngine
from Engineering.engines.diffae import DiffAEEngine
from Engineering.engines.latent import ClassifyLatentEngine
from Engineering.engines.recon import ReconEngine
from Engineering.engines.run_plan import TestWeights, plan_of
from Engineering.errors import ConfigError

#: (cfg, paths, merge_train_val) -> (datamodule, cfg with what the engine needs from the data)
DataModuleBuilder = Callable[[RunConfig, RunPaths, bool], tuple[pl.LightningDataModule, RunConfig]]


def h5_datamodule(cfg: RunConfig, paths: RunPaths, merge_train_val: bool) -> tuple[H5DataModule, RunConfig]:
    """Series from HDF5 files (recon, DiffAE).

    Every split the run reads is indexed and checked here, before the runner writes anything: bad data leaves
    no run folder.
    """
    dm = H5DataModule.from_config(cfg, merge_train_val=merge_train_val)
    plan = plan_of(cfg.run.run_mode)
    opts = dm.dataset_options
    side_tables = opts.fetch_phenotypes or opts.fetch_confounders
    if plan.fit or side_tables:
        dm.build("fit")
    if plan.test is not TestWeights.NONE:
        dm.build("test")
    if side_tables:
        # phenotype/confounder heads are sized from the training table, so the engine needs these counts
        cfg = cfg.updated(**dm.side_counts)
    return dm, cfg


def latent_datamodule(cfg: RunConfig, paths: RunPaths, merge_train_val: bool) -> tuple[LatentDataModule, RunConfig]:
    """Latent vectors of an earlier run's ``emb.h5`` with their phenotypes (latent regressor)."""
    assert paths.latent_file is not None  # run_paths sets it for taskID 2
    dm = LatentDataModule.from_config(cfg, paths.latent_file, merge_train_val=merge_train_val)
    return dm, cfg.updated(**dm.engine_hparams())  # task, targets, classes and train statistics -> engine + ckpt


@dataclass(frozen=True)
class Task:
    """One row of the task table."""

    task_id: int
    script: str  # the configuration's script name: which options exist and their defaults
    executor: str  # the executor that runs this task
    title: str
    engine: type[BaseEngine]
    datamodule: DataModuleBuilder
    fixed: Mapping[str, Any] = field(default_factory=dict)  # settings this task always uses


TASKS: dict[int, Task] = {
    task.task_id: task
    for task in (
        Task(0, "recon", "Executors/main_recon.py", "recon", ReconEngine, h5_datamodule),
        # DiffAE always uses Lightning's automatic optimisation (accumulation, clipping)
        Task(1, "diffae", "Executors/main_diffAE.py", "DiffAE", DiffAEEngine, h5_datamodule, {"auto_optim": True}),
        Task(
            2, "latentcls", "Executors/main_latentcls.py", "latent regressor", ClassifyLatentEngine, latent_datamodule
        ),
    )
}


def task_of(task_id: int) -> Task:
    """The task of ``--taskID``; an unknown id is a configuration error."""
    if task_id not in TASKS:
        valid = ", ".join(f"{t.task_id} ({t.title})" for t in TASKS.values())
        raise ConfigError(f"--taskID {task_id} is unknown; valid: {valid}")
    return TASKS[task_id]


def task_of_script(script: str) -> Task:
    """The task an executor's script name runs by default."""
    return next(task for task in TASKS.values() if task.script == script)


def build_engine(cfg: RunConfig) -> BaseEngine:
    """The LightningModule of the configuration's ``--taskID``."""
    return task_of(cfg.run.taskID).engine(cfg)
