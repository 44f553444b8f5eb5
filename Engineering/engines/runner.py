"""Run orchestration shared by the three executors (the original's MainEngine).

``main(script, argv)`` resolves the configuration and follows two tables: the task of ``--taskID``
(:mod:`Engineering.engines.tasks`: engine, datamodule, fixed settings) and the plan of ``--run_mode``
(:mod:`Engineering.engines.run_plan`: which of fit, validation and test run, on which splits, with which weights).
Everything that can be refused (settings, checkpoint, data) is checked before the run folder is created. From then on
the run holds the folder (:mod:`Engineering.engines.run_folder`: one run per folder, nothing new left behind by a
failed run) and publishes ``Output*/`` as one set (:mod:`Engineering.outputs.outset`).
"""

from __future__ import annotations

import copy
import logging
import math
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.tuner import Tuner

from Engineering.configuration import (
    RunConfig,
    make_run_name,
    resolve_run,
    run_paths,
    save_resolved,
    system_resources,
)
from Engineering.configuration.cpus import cpu_budget, thread_policy
from Engineering.configuration.resolve import explicit_options, resolved_document
from Engineering.engines.base import BaseEngine
from Engineering.engines.console import closing_summary, console_logging, log_model_summary
from Engineering.engines.run_folder import RunFolder
from Engineering.engines.run_plan import RunPlan, TestWeights, plan_of
from Engineering.engines.stored_config import StoreRunConfig, check_checkpoint_fits
from Engineering.engines.strategies import check_run_settings, compile_network, global_rank
from Engineering.engines.tasks import TASKS, Task, build_engine, task_of, task_of_script
from Engineering.engines.trainer_setup import (
    build_callbacks,
    build_loggers,
    deterministic_algorithms,
    trainer_kwargs,
)
from Engineering.errors import CheckpointError, ConfigError, OutputError, debug_requested
from Engineering.hub import TrustedFiles, load_into, load_pretrained_weights, load_weights_into
from Engineering.hub.checkpoints import is_deepspeed_checkpoint, resume_checkpoint
from Engineering.outputs.collector import TestOutputs
from Engineering.outputs.outset import OutputSet, verify_output_set
from Engineering.outputs.provenance import code_version, provenance_attrs

log = logging.getLogger("imlatent")


class Runner:
    """One invocation of an executor: resolved config -> task and run plan -> data, engine, Trainer -> fit/test."""

    def __init__(self, script: str, argv: Sequence[str]) -> None:
        self.started = time.monotonic()
        self.metrics: dict[str, Any] = {}  # key metrics of this invocation, for the closing summary
        self.best_ckpt = ""
        pl.seed_everything(1701, workers=True, verbose=False)  # faithful: before anything else
        self.rc = resolve_run(script, list(argv))  # a test or resume starts from the run's stored configuration
        assert self.rc.cfg is not None  # resolving types and checks the configuration
        # only the command line itself may vouch for a checkpoint: never a data JSON, YAML or replayed config
        self.trust = TrustedFiles.of(explicit_options(script, argv).get("trust_checkpoint", ""))
        self.rc.hparams.trust_checkpoint = ""
        self.task = _task_of_executor(script, self.rc.cfg.run.taskID)
        self.plan = plan_of(self.rc.cfg.run.run_mode)
        cfg = self.rc.cfg.updated(trust_checkpoint="", **self.task.fixed)
        _check_run_mode_options(cfg, self.plan)
        check_run_settings(cfg)  # strategy/accelerator/precision/optimiser/SLURM: fail before any data is read
        self.rank = global_rank(devices_per_node=cfg.run.ndevices or 1)
        self.pristine = copy.deepcopy(self.rc)  # saved before naming changes trainID: a replay names the same run
        self.resources = system_resources()
        cfg = _apply_resources(cfg, self.resources, self.rank)
        train_id, self.run_name = make_run_name(cfg)
        self.cfg = cfg.updated(trainID=train_id, run_name=self.run_name)
        self.paths = run_paths(self.cfg, self.run_name)
        self.ckpt = self.checkpoint_path()  # before any folder is created: a bad --resume leaves nothing behind
        # likewise for missing or malformed data, fold CSVs and phenotype tables
        self.dm, self.cfg = self.task.datamodule(self.cfg, self.paths, self.plan.merge_train_val)
        if not self.cfg.run.non_deter:
            pl.seed_everything(self.cfg.run.seed, workers=True, verbose=False)
        self.model = self.engine()  # likewise for a checkpoint whose network differs from this command's
        if self.ckpt is not None:
            check_checkpoint_fits(self.model, self.ckpt)
        # one run per run folder (rank 0 locks it); a failure from here on leaves nothing new behind
        self.folder = RunFolder(self.paths, self.rank)
        self.outset: OutputSet | None = None  # the staging folder of Output*/ (rank 0), published after the test
        with self.folder.guard():
            self.folder.open()
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            if self.rank == 0:  # DDP children and other srun tasks share the run folder: rank 0 writes it once
                # a test-only invocation documents its own output set; training invocations the run folder
                target = self.paths.run_dir
                if not self.plan.fit:
                    self.outset = self.folder.output_set(self.paths.output)
                    target = self.outset.staging
                pristine = self.pristine
                self.folder.replace_file(target / "resolved_config.yaml", lambda path: save_resolved(pristine, path))
        precision = self.cfg.run.matmul_precision
        if precision != "highest" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            torch.set_float32_matmul_precision(precision)

    # ------------------------------------------------------------------ the run, as the plan says
    def engage(self) -> None:
        """Fit and/or test as the plan says; the run folder is released at the end (and cleaned after a failure)."""
        with self.folder.guard():
            self._engage()
            if self.rank == 0:
                for line in self.summary():
                    log.info(line)
        self.folder.close()

    def summary(self) -> list[str]:
        """The closing lines: run folder, best checkpoint, published outputs, key metrics, elapsed time."""
        outputs = [self.paths.output] if self.plan.test is not TestWeights.NONE and self.paths.output.exists() else []
        best = self.best_ckpt if self.plan.fit else ""
        return closing_summary(self.paths.run_dir, outputs, self.metrics, self.started, best)

    def _engage(self) -> None:
        engine, run = self.model, self.cfg.run
        trainer = self.trainer(engine, self.dm)
        if run.auto_bs or run.auto_lr:
            self.tune(trainer, engine, self.dm)
        if run.compile_model:
            compile_network(engine)  # in place: the networks only, checkpoint keys stay without _orig_mod.
        if self.plan.fit:
            self.fit(trainer, engine)
        if self.plan.test is not TestWeights.NONE:
            self.test(trainer, engine)

    def fit(self, trainer: pl.Trainer, engine: BaseEngine) -> None:
        ckpt = self.ckpt
        resuming = f", resuming from {ckpt}" if ckpt else ""
        log.info("Training %s (run_mode %d)%s", self.run_name, self.cfg.run.run_mode, resuming)
        # Lightning reads the checkpoint itself: weights-only unless the user vouches for it (a DeepSpeed folder is
        # read by DeepSpeed, after select_checkpoint checked that its shards name nothing beyond DeepSpeed's values)
        weights_only = ckpt is None or not self.trust.covers(ckpt)
        if self.rank == 0:
            log_model_summary(engine)
        trainer.fit(engine, datamodule=self.dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=weights_only)
        self.best_ckpt = _best_checkpoint(trainer)
        self.metrics.update(_key_metrics(trainer, ("val_loss", "train_loss")))

    def test(self, trainer: pl.Trainer, engine: BaseEngine) -> None:
        """Test into a staging folder that rank 0 publishes as ``Output*/`` once every file is written."""
        if self.rank == 0 and self.paths.output.exists():
            problems = verify_output_set(self.paths.output, checksum=False)
            if problems:
                log.warning(
                    "%s is not a complete output set (%s); this run replaces it", self.paths.output, problems[0]
                )
        if self.rank == 0 and self.outset is None:
            self.outset = self.folder.output_set(self.paths.output)
        self.dm.setup("test")
        engine.test_outputs = self.test_outputs(self.outset.staging if self.outset else self.paths.output)
        load, weights = self.test_weights(trainer)
        engine.provenance = self.provenance(engine, weights)
        if load is not None:
            load_weights_into(engine, load, self.trust)
        try:
            trainer.test(engine, datamodule=self.dm, verbose=False)  # the metrics end the closing summary
        except OutputError as err:  # name the published files, not the staging folder
            raise (self.outset.rename_error(err) if self.outset else err) from err
        self.metrics.update(_key_metrics(trainer, ("test_",)))
        if self.outset is not None:
            log.info("Test outputs published to %s", self.outset.publish(engine.provenance))

    # ------------------------------------------------------------------ pieces
    def checkpoint_path(self) -> Path | None:
        """The checkpoint chosen by --resume/--load_best/--load_model_4test."""
        ckpt = resume_checkpoint(self.cfg.run, self.paths.run_dir, self.trust)
        if ckpt is not None and self.plan.fit:
            self.check_resume_target(ckpt)
        return ckpt

    def engine(self) -> BaseEngine:
        engine, run = build_engine(self.cfg), self.cfg.run
        if run.load_hf:
            report = load_into(engine, run.load_hf, trust=self.trust, expected_config=engine.architecture())
            log.info("Loaded pretrained weights %s from %s", run.load_hf, report.source)
        if run.preweights_path:
            load_pretrained_weights(engine, Path(run.preweights_path), self.trust)
        return engine

    def trainer(self, engine: BaseEngine, dm: Any) -> pl.Trainer:
        validate = self.plan.validate
        loggers = build_loggers(self.cfg, self.run_name, engine)
        callbacks = build_callbacks(self.cfg, self.paths.checkpoints, validate)
        callbacks.append(StoreRunConfig(resolved_document(self.pristine)))  # every checkpoint carries the config
        kwargs = trainer_kwargs(self.cfg, loggers, callbacks, validate)
        kwargs["default_root_dir"] = str(self.paths.run_dir)  # SLURM requeue writes and resumes hpc_ckpt_*.ckpt here
        if self.plan.fit and self.cfg.run.dev_run == 0:
            dm.setup("fit")
            ranks = max(1, int(kwargs["devices"])) * max(1, int(kwargs["num_nodes"] or 1))
            kwargs["limit_train_batches"] = at_least_one_batch(
                kwargs["limit_train_batches"], dm.train_dataloader(), "train", ranks
            )
            if validate:
                kwargs["limit_val_batches"] = at_least_one_batch(
                    kwargs["limit_val_batches"], dm.val_dataloader(), "val", ranks
                )
        trainer = pl.Trainer(**kwargs)
        if not self.cfg.run.non_deter:
            deterministic_algorithms()
        return trainer

    def test_outputs(self, output_dir: Path) -> TestOutputs:
        outputs = self.cfg.outputs
        return TestOutputs(
            output_dir=output_dir,
            save_recon=outputs.save_recon and not self.cfg.diffae.test_emb_only,
            recon_subjects=getattr(self.dm, "recon_subjects", None),
            metric_suffix=outputs.output_suffix,
            evaluation=outputs.eval,
        )

    def test_weights(self, trainer: pl.Trainer) -> tuple[Path | None, Any]:
        """The file to load before testing (None: the engine's weights as they are) and its name for provenance."""
        run = self.cfg.run
        if self.plan.test is TestWeights.GIVEN:
            if self.ckpt is None and not (run.preweights_path or run.load_hf):
                log.warning(
                    "run_mode 2 without --resume, --preweights_path or --load_hf: testing a randomly initialised model"
                )
            return self.ckpt, self.ckpt or run.preweights_path or run.load_hf
        best = _best_checkpoint(trainer) if self.plan.test is TestWeights.BEST else ""
        if best:
            log.info("Testing the best checkpoint %s", best)
            return Path(best), best
        # END_OF_FIT, or BEST without a best checkpoint: the weights in memory at the end of fit
        return None, f"end of training ({self.paths.checkpoints / 'last.ckpt'})"

    def check_resume_target(self, ckpt: Path) -> None:
        """A DeepSpeed checkpoint folder continues training only in a DeepSpeed run (it can be tested in any run)."""
        strategy = self.cfg.run.training_strategy
        if is_deepspeed_checkpoint(ckpt) and not strategy.startswith("deepspeed"):
            raise CheckpointError(
                f"checkpoint {ckpt} is a DeepSpeed checkpoint folder: resuming training from it needs a DeepSpeed "
                f"run (--training_strategy deepspeed_stage_N, got {strategy or 'default'}); to test it on this "
                "machine, use --run_mode 2"
            )

    def provenance(self, engine: BaseEngine, weights: Any) -> dict[str, Any]:
        """Root attributes of emb.h5 saying which run, weights, seed and code produced it."""
        latent = engine.architecture().get("latent_dim", -1)
        seed = None if self.cfg.run.non_deter else self.cfg.run.seed
        return provenance_attrs(self.run_name, str(weights) if weights else None, seed, int(latent), code_version())

    def tune(self, trainer: pl.Trainer, engine: BaseEngine, dm: Any) -> None:
        """--auto_bs / --auto_lr through Lightning's tuner, once, with the datamodule (the original ran it twice)."""
        tuner = Tuner(trainer)
        if self.cfg.run.auto_bs:
            tuner.scale_batch_size(engine, datamodule=dm, mode="binsearch")
            self.cfg = self.cfg.updated(batch_size=dm.batch_size)
            engine.use_config(self.cfg)  # keeps the effective batch: the accumulation follows the new batch size
            if self.cfg.training.auto_optim:
                trainer.accumulate_grad_batches = self.cfg.accumulate
            if hasattr(engine, "conf"):
                engine.conf.accum_batches = self.cfg.accumulate  # type: ignore[union-attr]  # torch stubs: Module.__getattr__
            log.info("auto_bs: batch size %d", dm.batch_size)
        if self.cfg.run.auto_lr:
            finder = tuner.lr_find(engine, datamodule=dm)
            if finder is not None:
                _save_lr_finder(finder, self.paths.run_dir)
                self.cfg = self.cfg.updated(lr=finder.suggestion() or engine.lr)
                engine.use_config(self.cfg)
                log.info("auto_lr: learning rate %g", engine.lr)


def _task_of_executor(script: str, task_id: int) -> Task:
    """The task of ``--taskID``, which must be the one this executor runs."""
    if TASKS[task_id].script != script:
        raise ConfigError(
            f"--taskID {task_id} does not belong to {task_of_script(script).executor}; "
            f"run {TASKS[task_id].executor} instead"
        )
    return task_of(task_id)


def _check_run_mode_options(cfg: RunConfig, plan: RunPlan) -> None:
    """Options that cannot work in the chosen run mode are errors before anything is read or written."""
    run, training = cfg.run, cfg.training
    if run.use_concurrent_dataloader:
        raise ConfigError(
            "--use_concurrent_dataloader is not supported: the third-party concurrent_dataloader package is not"
            " used here; drop the option (the standard DataLoader with --num_workers reads in parallel)"
        )
    if training.lr_decay_type == 2 and not plan.validate:
        raise ConfigError(
            f"--lr_decay_type 2 (ReduceLROnPlateau) monitors val_loss, which run_mode {run.run_mode} does not compute;"
            " use run_mode 1 or 4, or --lr_decay_type 1"
        )
    if training.early_stopping_patience >= 0 and not plan.validate:
        raise ConfigError(
            f"--early_stopping_patience {training.early_stopping_patience} monitors val_loss, which run_mode "
            f"{run.run_mode} does not compute; use run_mode 1 or 4"
        )
    if run.load_model_4test and not run.resume and plan.fit:
        raise ConfigError(
            f"--load_model_4test tests another run's checkpoint: use it with --run_mode 2 (got {run.run_mode}),"
            " or add --resume to continue training from that run"
        )
    if cfg.outputs.tbactive and not cfg.data.tblog_path:
        raise ConfigError(
            "TensorBoard is on (--tbactive) but the data JSON has no 'tblog_path'; set it or pass --no-tbactive"
        )


def _save_lr_finder(finder: Any, run_dir: Path) -> None:
    """The LR-finder curve as auto_lr.csv, and as auto_lr_graph.png when matplotlib is installed."""
    pd.DataFrame({"lr": finder.results["lr"], "loss": finder.results["loss"]}).to_csv(
        run_dir / "auto_lr.csv", index=False
    )
    try:
        figure = finder.plot(suggest=True)
    except Exception as err:  # noqa: BLE001 - Lightning raises MisconfigurationException without matplotlib
        log.info("auto_lr: no plot (%s); the curve is in auto_lr.csv", str(err).split(".")[0])
        return
    figure.savefig(run_dir / "auto_lr_graph.png")


def at_least_one_batch(limit: int | float, loader: Any, stage: str, ranks: int = 1) -> int | float:
    """A batch fraction that would select no batch at all selects one instead (Lightning would raise).

    Under DDP each of ``ranks`` processes sees its own share of the loader (Lightning's DistributedSampler).
    """
    n_batches = _batches_per_rank(loader, ranks) if loader is not None else 0
    if isinstance(limit, float) and n_batches and limit * n_batches < 1:
        log.warning(
            "--n_%s_batches %g of %d %s batches is less than one batch; using 1 batch per epoch",
            stage,
            limit,
            n_batches,
            stage,
        )
        return 1
    return limit


def _batches_per_rank(loader: Any, ranks: int) -> int:
    if ranks <= 1 or not hasattr(loader, "dataset"):
        return len(loader)
    per_rank = -(-len(loader.dataset) // ranks)  # DistributedSampler pads every rank to ceil(N / ranks)
    batch = loader.batch_size or 1
    return per_rank // batch if loader.drop_last else -(-per_rank // batch)


def _key_metrics(trainer: pl.Trainer, prefixes: tuple[str, ...]) -> dict[str, Any]:
    """The logged epoch metrics whose names start with one of ``prefixes`` (step-level duplicates left out)."""
    found = dict(trainer.callback_metrics)
    duplicate = {k for k in found if k.endswith(("_step", "_epoch")) and k.rsplit("_", 1)[0] in found}
    return {k: v for k, v in found.items() if k.startswith(prefixes) and k not in duplicate}


def _best_checkpoint(trainer: pl.Trainer) -> str:
    cb = trainer.checkpoint_callback
    return getattr(cb, "best_model_path", "") if cb is not None else ""


def _apply_resources(cfg: RunConfig, resources: Any, rank: int = 0) -> RunConfig:
    """DataLoader workers and torch threads from the cores this process may use (affinity, cgroup quota, SLURM).

    Workers are capped at floor(0.9 * cores) - 1, or SLURM_CPUS_PER_TASK - 1 in a SLURM job (the original's rule,
    applied to the cores really available); the intra-op threads are the remaining cores
    (:func:`thread_policy`, ``--num_threads`` overrides). The original's ``cpus // 2`` left half the machine idle.
    """
    in_slurm = bool(getattr(resources, "slurm_env", None))
    budget = cpu_budget()
    max_workers = max(0, (budget.cores if in_slurm else math.floor(0.9 * budget.cores)) - 1)
    workers = cfg.run.num_workers
    if sys.platform.startswith("win"):
        workers = 0
    elif workers > max_workers:
        log.warning("num_workers %d lowered to %d (available CPUs)", workers, max_workers)
        workers = max_workers
    # DDP ranks started on one node share its cores; under srun each task has its own CPUs
    processes = 1 if in_slurm else max(1, cfg.run.ndevices or 1)
    policy = thread_policy(budget, workers, processes, cfg.run.num_threads)
    torch.set_num_threads(policy.threads)
    if rank == 0:
        log.info("Threads: %s", policy.describe())
    limit = cfg.run.mem_limit
    if limit:  # opt-in address-space limit (off by default: it may break CUDA)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return cfg.updated(num_workers=workers, nbatch_prefetch=cfg.run.nbatch_prefetch if workers else None)


def main(script: str, argv: Sequence[str]) -> int:
    """Entry point of every executor."""
    console_logging(debug_requested(argv))
    Runner(script, argv).engage()
    return 0
