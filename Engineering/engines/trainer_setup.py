"""Lightning Trainer construction from the resolved hyper-parameters."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.utils.deterministic
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.reliability import reliability_callbacks
from Engineering.engines.strategies import STRATEGIES, check_run_settings, choose_strategy, cluster_plugins
from Engineering.errors import ConfigError

log = logging.getLogger("imlatent")

__all__ = [
    "STRATEGIES",
    "build_callbacks",
    "build_loggers",
    "check_strategy",
    "deterministic_algorithms",
    "precision_of",
    "trainer_kwargs",
]


def deterministic_algorithms() -> None:
    """Deterministic kernels (warn where torch has none), without filling every new tensor first.

    ``use_deterministic_algorithms`` also fills uninitialised memory (NaN/max int) so that reading it is
    repeatable; that costs ~7 % of a CPU DiffAE step and changes no result of a correct program (every
    kernel writes its output before reading it). Kill-and-resume still gives identical weights.
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
    # a module-level flag the stubs do not declare
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def precision_of(ampmode: str) -> int | str:
    """``--ampmode`` as Lightning precision: an int when it parses ("32" -> 32), else the string."""
    try:
        return int(ampmode)
    except (TypeError, ValueError):
        return str(ampmode)


def batch_limit(value: float) -> int | float:
    """``--n_train_batches``/``--n_val_batches``: > 1 is a number of batches, <= 1 a fraction."""
    return int(value) if value > 1 else float(value)


def wandb_run_name(prefix: str, run_name: str) -> str:
    """The W&B display name: ``<prefix>_<run_name>`` with ``--wnbprefix`` (the original parsed it and never used
    it); the W&B run id stays the run name, so resuming finds the same W&B run whatever the prefix."""
    prefix = prefix.strip().rstrip("_")
    return f"{prefix}_{run_name}" if prefix else run_name


def build_loggers(cfg: RunConfig, run_name: str, model: Any) -> list[Any]:
    """W&B first, TensorBoard last (image logging uses the last logger)."""
    loggers: list[Any] = []
    out = cfg.outputs
    if out.wnbactive:
        try:
            import wandb  # noqa: F401
            from lightning.pytorch.loggers import WandbLogger
        except ImportError as err:
            raise ConfigError("--wnbactive needs the wandb package: pip install 'imlatent[wandb]'") from err
        wandb_logger = WandbLogger(
            name=wandb_run_name(out.wnbprefix, run_name),
            id=run_name,
            project=out.wnbproject,
            group=out.wnbgroup,
            entity=out.wnbentity,
            config={k: v for k, v in cfg.hparams.items() if isinstance(v, (str, int, float, bool, type(None)))},
        )
        if out.wnbmodellog and out.wnbmodellog != "None":
            wandb_logger.watch(model, log=out.wnbmodellog, log_freq=out.wnbmodelfreq)
        loggers.append(wandb_logger)
    else:
        os.environ.setdefault("WANDB_MODE", "disabled")
    if out.tbactive:
        from lightning.pytorch.loggers import TensorBoardLogger

        tblog = cfg.data.tblog_path
        if not tblog:  # the runner refuses this before any folder exists; kept for direct callers
            raise ConfigError(
                "TensorBoard is on (--tbactive) but the data JSON has no 'tblog_path'; set it or pass --no-tbactive"
            )
        Path(tblog).mkdir(parents=True, exist_ok=True)
        loggers.append(TensorBoardLogger(tblog, name=run_name, log_graph=False))
    return loggers


def build_callbacks(cfg: RunConfig, checkpoint_dir: Path, validate: bool) -> list[Callback]:
    """ModelCheckpoint on val_loss with save_last (+ EarlyStopping when asked and the run validates)."""
    patience = cfg.training.early_stopping_patience
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(checkpoint_dir),
            monitor="val_loss" if validate else None,
            save_last=True,
            # without validation the top-1 file is simply the latest epoch; Lightning refreshes last.ckpt only when it
            # saves that file, so keeping it is what makes a run without validation resumable after every epoch
        )
    ]
    if patience >= 0 and validate:  # the runner refuses early stopping without validation before this point
        callbacks.append(
            EarlyStopping(monitor="val_loss", mode="min", patience=patience, check_on_train_epoch_end=False)
        )
    # atomic ckpts, RNG state, NaN guard, SIGTERM/SIGUSR1 save
    callbacks += reliability_callbacks(checkpoint_dir, cfg.training.nan_policy)
    return callbacks


def check_strategy(cfg: RunConfig) -> Any:
    """The Lightning strategy (a configured object, a registered name, or None for Lightning's default)."""
    return check_run_settings(cfg).build()


def trainer_kwargs(cfg: RunConfig, loggers: list[Any], callbacks: list[Callback], validate: bool) -> dict[str, Any]:
    """Keyword arguments of ``lightning.Trainer`` for this run."""
    run, training = cfg.run, cfg.training
    kw: dict[str, Any] = {
        "accelerator": run.accelerator,
        "devices": run.ndevices or 1,
        "num_nodes": run.nnodes,
        "sync_batchnorm": run.sync_batchnorm,
        "precision": precision_of(run.ampmode),
        "max_epochs": run.num_epochs,
        "limit_train_batches": batch_limit(run.n_train_batches),
        "limit_val_batches": batch_limit(run.n_val_batches) if validate else 0,
        "log_every_n_steps": training.log_freq,
        "detect_anomaly": run.check_anomalies,
        "deterministic": not run.non_deter,
        "benchmark": run.non_deter,  # cuDNN autotuning only where results need not repeat
        "logger": loggers if loggers else False,
        "callbacks": callbacks,
        "enable_model_summary": False,  # the runner writes the summary to CaptainsLog (console: --debug)
    }
    strategy = choose_strategy(run.training_strategy, run.taskID).build()  # checked by the Runner
    if strategy is not None:
        kw["strategy"] = strategy
    plugins = cluster_plugins()
    if plugins:
        kw["plugins"] = plugins
    if run.profiler:
        kw["profiler"] = run.profiler
    if not validate:
        kw["num_sanity_val_steps"] = 0
    if training.auto_optim:
        kw["accumulate_grad_batches"] = cfg.accumulate
        if training.clips:
            kw["gradient_clip_val"] = training.grad_clip_val
            kw["gradient_clip_algorithm"] = training.grad_clip_algo
    if run.dev_run > 0:
        kw["fast_dev_run"] = run.dev_run
    elif run.dev_run < 0:
        # barebones: no loggers, no checkpointing, no progress bar; |dev_run| batches per stage
        kw.update(barebones=True, logger=False, callbacks=[], enable_checkpointing=False, log_every_n_steps=0)
        kw["limit_train_batches"] = kw["limit_val_batches"] = -run.dev_run
        kw["limit_test_batches"] = -run.dev_run
        kw["max_epochs"] = 1
    return kw
