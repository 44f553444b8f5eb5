"""Fault tolerance of training runs: atomic checkpoints, exact resume, non-finite-loss guard, pre-emption signals.

The pieces are Lightning callbacks (plus one CheckpointIO plugin), built together by :func:`reliability_callbacks`:

* :class:`AtomicCheckpointIO` writes every ``.ckpt`` to a temporary file in the same folder, fsyncs it and moves it
  into place with ``os.replace``, so a process killed mid-write leaves the previous checkpoint intact.
  :class:`AtomicCheckpointing` installs it on the Trainer's strategy when the strategy uses Lightning's plain
  ``TorchCheckpointIO`` (the plugin can equally be passed as ``Trainer(plugins=[AtomicCheckpointIO()])``).
* :class:`RNGStateCheckpoint` stores the global torch / CUDA / numpy / python RNG states and the DiffAE per-rank
  generator in every checkpoint and restores them on ``--resume``; Lightning restores loops, optimisers, LR
  schedulers and the weights (EMA included, it is a sub-module) but not the RNGs, so without it a resumed run draws
  another shuffle order and other diffusion timesteps than an uninterrupted one.
* :class:`NonFiniteLossGuard` stops the run with a one-line :class:`NonFiniteLossError` at the first NaN/inf loss
  (YAML ``training.nan_policy: stop``, the default) before the bad gradients reach the weights, or skips the
  optimiser step of such batches and logs their count as ``train_nan_skips`` (``nan_policy: skip``).
* :class:`PreemptionCheckpoint` saves ``last.ckpt`` at the next training-batch end after SIGTERM (sent by SLURM,
  Kubernetes, ``kill``) or, outside SLURM's own auto-requeue, SIGUSR1, then ends the run (exit status 0) so a
  requeued job resumes with ``--resume``.
"""

from __future__ import annotations

import logging
import random
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from Engineering.configuration.run_config import RunConfig
from Engineering.errors import ConfigError, ImLatentError
from Engineering.fileio import atomic_write

log = logging.getLogger("imlatent")

NAN_POLICIES = ("stop", "skip")
RNG_KEY = "imlatent_rng"
"""Top-level checkpoint key holding the RNG states (plain tensors and ints: loadable with ``weights_only=True``)."""


class NonFiniteLossError(ImLatentError):
    """The training loss became NaN or infinite (exit status 3: the run diverged; the data or settings are suspect)."""

    exit_code = 3


# --------------------------------------------------------------------------------------------- atomic writes


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a fsynced temporary file in the same folder and ``os.replace``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, but a local checkpoint is never visible half-written."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        if "://" in str(path):  # remote file systems: Lightning's own writer
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, Path(path))


class AtomicCheckpointing(Callback):
    """Installs :class:`AtomicCheckpointIO` on strategies that use the plain ``TorchCheckpointIO``.

    DeepSpeed and FSDP write sharded folders with their own IO and are left alone.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()


# --------------------------------------------------------------------------------------------- RNG state


def capture_rng_state(module: Any = None) -> dict[str, Any]:
    """Global RNG states (+ the module's ``_generator`` if it has one) as tensors, ints and strings only."""
    np_state = cast(tuple[Any, ...], np.random.get_state())  # legacy=True on the global MT19937: a 5-tuple
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(module, "_generator", None)
    if isinstance(generator, torch.Generator):
        state["module_generator"] = {"device": str(generator.device), "state": generator.get_state()}
    return state


def restore_rng_state(state: Mapping[str, Any], module: Any = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    saved = state.get("module_generator")
    if saved is not None and module is not None and hasattr(module, "_generator"):
        generator = torch.Generator(device=saved["device"])
        generator.set_state(saved["state"])
        module._generator = generator


def _python_state_to_plain(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_plain(plain: Mapping[str, Any]) -> tuple:
    internal = tuple(int(v) for v in plain["internal"].tolist())
    return (plain["version"], internal, plain["gauss"])


class RNGStateCheckpoint(Callback):
    """Saves the RNG states into every checkpoint and restores them when training resumes from one.

    The states are restored in ``on_load_checkpoint``, before the fit loop creates its data-loader iterator, so the
    resumed run draws the same shuffle seed (and DiffAE timesteps/noise) as the uninterrupted run did at that point.
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = capture_rng_state(pl_module)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get(RNG_KEY)
        if state is None:
            log.warning("the checkpoint holds no RNG state (written before it was saved): resumed run is not exact")
            return
        restore_rng_state(state, pl_module)


# --------------------------------------------------------------------------------------------- NaN guard


class NonFiniteLossGuard(Callback):
    """Stop at (``stop``) or skip (``skip``) a training batch whose loss is NaN or infinite.

    The check runs in ``on_before_backward`` (automatic and manual optimisation alike), so under ``stop`` no
    non-finite gradient ever reaches the weights and the checkpoints on disk stay the last good ones. Under
    ``skip`` the gradients of the whole accumulation window are dropped at the next optimiser step.
    """

    def __init__(self, policy: str | None = None) -> None:
        if policy is not None and policy not in NAN_POLICIES:
            raise ConfigError(f"training.nan_policy {policy!r} is unknown; valid: {', '.join(NAN_POLICIES)}")
        self.policy = policy
        self.skipped = 0
        self._drop_next_step = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.policy is None:  # not given: the engine's YAML ``training.nan_policy`` (stop without one)
            cfg = getattr(pl_module, "cfg", None)
            self.policy = cfg.training.nan_policy if isinstance(cfg, RunConfig) else "stop"

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        where = f"epoch {trainer.current_epoch}, global step {trainer.global_step}"
        if self.policy == "stop":
            raise NonFiniteLossError(
                f"training loss is {_describe(loss)} at {where}; stopped before the update, the last good checkpoint "
                f"is kept in {_checkpoint_dir(trainer)} (YAML training.nan_policy: skip skips such batches instead)"
            )
        self.skipped += 1
        self._drop_next_step = True
        log.warning("training loss is %s at %s: skipping the batch (%d skipped)", _describe(loss), where, self.skipped)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self._drop_next_step:
            optimizer.zero_grad(set_to_none=True)  # parameters without gradients are not updated

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._drop_next_step = False
        if self.policy == "skip":
            pl_module.log("train_nan_skips", float(self.skipped), on_step=True, on_epoch=False, batch_size=1)


def _describe(loss: torch.Tensor) -> str:
    return "NaN" if bool(torch.isnan(loss.detach()).any()) else "infinite"


def _checkpoint_dir(trainer: pl.Trainer) -> str:
    cb = trainer.checkpoint_callback
    return str(getattr(cb, "dirpath", None) or trainer.default_root_dir)


# --------------------------------------------------------------------------------------------- pre-emption


class PreemptionCheckpoint(Callback):
    """Save ``last.ckpt`` and stop cleanly on SIGTERM, or SIGUSR1 when SLURM's auto-requeue does not handle it.

    Lightning records SIGTERM itself (``trainer.received_sigterm``) and ends the fit with ``SIGTERMException`` (a
    ``SystemExit`` with status 0) after the current batch; this callback writes ``last.ckpt`` first. Under SLURM
    with auto-requeue Lightning already saves ``hpc_ckpt_<N>.ckpt`` on SIGUSR1 and requeues the job.
    """

    def __init__(self, checkpoint_dir: Path | str) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.requested: int | None = None
        self.saved = False
        self._previous: Any = None

    @property
    def last_path(self) -> Path:
        return self.checkpoint_dir / "last.ckpt"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.requested, self.saved = None, False
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is None or _slurm_requeue_active(trainer):
            return
        try:
            if signal.getsignal(usr1) in (signal.SIG_DFL, None):
                self._previous = signal.signal(usr1, self._on_signal)
        except ValueError:  # not the main thread
            return

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = signum

    def _stop_requested(self, trainer: pl.Trainer) -> bool:
        return self.requested is not None or bool(getattr(trainer, "received_sigterm", False))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not self._stop_requested(trainer) or self.saved:
            return
        self._save(trainer)
        raise SIGTERMException  # Lightning's own clean stop: teardown, then SystemExit (status 0)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and not self.saved and trainer.state.fn == "fit":
            self._save(trainer)  # the signal arrived during validation: the training state is still consistent

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        usr1 = getattr(signal, "SIGUSR1", None)
        if self._previous is not None and usr1 is not None:
            try:
                signal.signal(usr1, self._previous)
            except ValueError:
                pass
            self._previous = None

    def _save(self, trainer: pl.Trainer) -> None:
        name = signal.Signals(self.requested).name if self.requested is not None else "SIGTERM"
        trainer.save_checkpoint(self.last_path)
        self.saved = True
        log.warning(
            "%s received: saved %s at epoch %d, global step %d; stopping (resume with --resume)",
            name,
            self.last_path,
            trainer.current_epoch,
            trainer.global_step,
        )


def _slurm_requeue_active(trainer: pl.Trainer) -> bool:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    env = getattr(trainer._accelerator_connector, "cluster_environment", None)
    return isinstance(env, SLURMEnvironment) and bool(getattr(env, "auto_requeue", False))


# --------------------------------------------------------------------------------------------- assembly


def reliability_callbacks(checkpoint_dir: Path | str, nan_policy: str | None = None) -> list[Callback]:
    """The reliability callbacks of a training run.

    ``nan_policy`` None reads YAML ``training.nan_policy`` from the engine's config when the Trainer sets up.
    """
    return [
        AtomicCheckpointing(),
        RNGStateCheckpoint(),
        NonFiniteLossGuard(nan_policy),
        PreemptionCheckpoint(checkpoint_dir),
    ]
