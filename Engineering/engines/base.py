"""Shared LightningModule behaviour: optimisers, LR decay, logging helpers and the test-output lifecycle.

Engines (recon, DiffAE, latent) are thin subclasses over their networks. The test stage is common to all of them:
each engine implements :meth:`BaseEngine.infer` (one batch -> embeddings, reconstructions, ground truth) and hands
the result to the test-output collector (:class:`Engineering.outputs.collector.OutputCollector`), which gathers the
results of every rank and lets rank 0 write ``emb.h5``, ``recon.h5`` and ``metrics.csv/.pkl`` once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import lightning.pytorch as pl
import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.configuration.sections import LRDecay
from Engineering.errors import ConfigError
from Engineering.outputs.collector import InferenceResult, OutputCollector, TestOutputs
from Engineering.outputs.panels import labelled_panel

log = logging.getLogger("imlatent")

#: optimiserID -> name (the original's ids)
OPTIMISERS: dict[int, str] = {
    0: "Adam",
    1: "AdamW",
    2: "RAdam",
    3: "Madam",
    4: "MTAdam",
    100: "DeepSpeedCPUAdam",
    200: "FusedAdam",
}
#: ids of OPTIMISERS that build_optimiser cannot build, with the reason (refused before a run starts)
UNAVAILABLE_OPTIMISERS: dict[int, str] = {
    4: "its step() needs each task's loss, their ranks and a feature map, which Lightning's optimiser step never "
    "passes (the original could not train with it either)",
}


def _optimiser_key(optimiser_id: int | str) -> int | str:
    if isinstance(optimiser_id, str) and optimiser_id.strip().lstrip("-").isdigit():
        return int(optimiser_id)
    return optimiser_id


def _named_optimiser(name: str) -> Any:
    """A torch.optim class, or a pytorch_optimizer one when that package is installed."""
    cls = getattr(torch.optim, name, None)
    if cls is not None:
        return cls
    try:
        import pytorch_optimizer  # type: ignore[import-not-found]

        return pytorch_optimizer.load_optimizer(name)
    except Exception as err:  # noqa: BLE001 - any failure means the name is unusable
        raise ConfigError(
            f"--optimiserID {name!r} is neither an optimiser id {sorted(OPTIMISERS)} nor a torch.optim class"
            " (install pytorch_optimizer for other named optimisers)"
        ) from err


def check_optimiser(optimiser_id: int | str) -> None:
    """Refuse an ``--optimiserID`` that :func:`build_optimiser` cannot build, with the reason."""
    key = _optimiser_key(optimiser_id)
    if isinstance(key, str):
        _named_optimiser(key)
        return
    if key not in OPTIMISERS:
        raise ConfigError(f"--optimiserID {key} is unknown; valid ids: {sorted(OPTIMISERS)} or a torch.optim name")
    if key in UNAVAILABLE_OPTIMISERS:
        usable = ", ".join(str(k) for k in OPTIMISERS if k not in UNAVAILABLE_OPTIMISERS)
        raise ConfigError(
            f"--optimiserID {key} ({OPTIMISERS[key]}) cannot be used: {UNAVAILABLE_OPTIMISERS[key]}; use {usable}"
        )


def build_optimiser(optimiser_id: int | str, params: Any, lr: float) -> torch.optim.Optimizer:
    """Create the optimiser chosen by ``--optimiserID`` (an integer id, or the name of a torch.optim class)."""
    check_optimiser(optimiser_id)
    key = _optimiser_key(optimiser_id)
    if isinstance(key, str):
        return _named_optimiser(key)(params, lr=lr)
    name = OPTIMISERS[key]
    if name == "DeepSpeedCPUAdam":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=lr)
    if name == "FusedAdam":
        from deepspeed.ops.adam import FusedAdam

        return FusedAdam(params, lr=lr)
    if name == "Madam":
        from Engineering.science.madam import Madam

        return Madam(params, lr=lr)
    return getattr(torch.optim, name)(params, lr=lr)


def build_lr_scheduler(decay_type: int, lr_decay: LRDecay, optimiser: torch.optim.Optimizer) -> dict | None:
    """Lightning scheduler dict for ``--lr_decay_type`` 1 (StepLR) or 2 (ReduceLROnPlateau on val_loss)."""
    if decay_type == 0:
        return None
    if decay_type == 1:
        step = lr_decay.type1
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.StepLR(
            optimiser, step_size=step.decay_nepoch, gamma=step.decay_rate
        )
        return {"scheduler": sched, "interval": "epoch"}
    if decay_type == 2:
        plateau = lr_decay.type2
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser,
            mode="min",
            factor=plateau.decay_rate,
            patience=plateau.patience,
            threshold=plateau.threshold,
            cooldown=plateau.cooldown,
            min_lr=plateau.min_lr,
        )
        return {"scheduler": sched, "interval": "epoch", "monitor": "val_loss"}
    raise ConfigError(f"--lr_decay_type {decay_type} is unknown; valid: 0 (none), 1 (StepLR), 2 (ReduceLROnPlateau)")


class BaseEngine(pl.LightningModule):
    """Common run control of every engine: optimiser choice, LR decay and the test-output lifecycle.

    Subclasses implement ``training_step``/``validation_step`` and :meth:`infer`. An engine is built from a
    :class:`RunConfig`, or from the ``hparams``/``config`` pair a checkpoint stores (settings it lacks take the
    defaults of the engine's executor, ``SCRIPT``); checkpoints keep carrying that pair.
    """

    SCRIPT = "recon"

    def __init__(self, hparams: RunConfig | Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = hparams if isinstance(hparams, RunConfig) else RunConfig.from_saved(hparams, config or {}, self.SCRIPT)
        self.save_hyperparameters({"hparams": dict(cfg.hparams), "config": dict(cfg.yaml)})
        self.cfg = cfg
        self.lr = cfg.training.lr
        self.automatic_optimization = cfg.training.auto_optim
        self.test_outputs: TestOutputs | None = None
        self.provenance: dict[str, Any] | None = None  # root attributes of emb.h5, set by the runner
        self.collector: OutputCollector | None = None  # the test stage's, made in on_test_start

    def use_config(self, cfg: RunConfig) -> None:
        """Adopt a changed configuration (the batch size or learning rate found by the tuner); checkpoints keep it."""
        self.cfg = cfg
        self.lr = cfg.training.lr
        self.hparams["hparams"] = dict(cfg.hparams)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        training = self.cfg.training
        optimiser = build_optimiser(training.optimiserID, self.parameters(), self.lr)
        sched = build_lr_scheduler(training.lr_decay_type, training.lr_decay, optimiser)
        if sched is None:
            return optimiser
        return {"optimizer": optimiser, "lr_scheduler": sched}

    def on_train_epoch_end(self) -> None:
        """Under manual optimisation Lightning does not step LR schedulers: step each (one per optimiser) once per
        epoch here; ReduceLROnPlateau steps on ``val_loss`` when the epoch computed it."""
        if self.automatic_optimization:
            return
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [] if scheds is None else [scheds]
        val_loss = self.trainer.callback_metrics.get("val_loss")
        for sched in scheds:
            if not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step()
            elif val_loss is not None:
                sched.step(float(val_loss))

    def architecture(self) -> dict[str, Any]:
        """Values that fix the network's shape, compared with a pretrained repository's config.json."""
        model = self.cfg.model
        arch: dict[str, Any] = {"is3D": model.is_3d, "in_channels": model.in_channels}
        if self.SCRIPT != "latentcls":  # the image engines: the latent regressor has no image shape
            arch.update(out_channels=model.out_channels, input_shape=list(self.cfg.data.shape))
        if model.latent_dim is not None and model.latent_dim > 0:
            arch["latent_dim"] = model.latent_dim
        return arch

    def _last_batch_of_epoch(self, batch_idx: int) -> bool:
        """True on the epoch's last training batch, where a partial accumulation is stepped (as Lightning does)."""
        trainer = self._trainer
        total = getattr(trainer, "num_training_batches", None) if trainer is not None else None
        return isinstance(total, int) and batch_idx + 1 == total

    @property
    def accumulate_gradbatch(self) -> int:
        return self.cfg.accumulate

    # ------------------------------------------------------------------ logging helpers
    def tensorboard(self) -> Any | None:
        """The TensorBoard experiment (SummaryWriter) of the last logger, if TensorBoard is active."""
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in reversed(self.loggers):
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def log_images(self, tag: str, inp: torch.Tensor, out: torch.Tensor, batch_idx: int, signed: bool = False) -> None:
        """Log the labelled panel of sample 0, channel 0 (the panel written to panels/*.png) to TensorBoard.

        ``inp``/``out`` are in [0, 1], or in [-1, 1] with ``signed`` (DiffAE); both are shown on one fixed scale,
        not each stretched to its own min..max (which turned an almost constant output into noise).
        """
        freq = self.cfg.training.im_log_freq
        writer = self.tensorboard()
        if writer is None or freq < 0 or batch_idx % max(freq, 1) != 0:
            return
        frames = []
        for img in (inp, out):
            img = img[0, 0].detach().cpu()
            img = img.abs() if torch.is_complex(img) else img.float()
            img = (img + 1) / 2 if signed else img
            frames.append(img.numpy() if img.ndim == 3 else img[None].numpy())  # (D, H, W) or one 2D frame
        index_name = "slice/time" if frames[0].shape[0] > 1 else "sample"
        title = f"{tag} · step {self.global_step} · batch {batch_idx}, sample 0"
        panel = labelled_panel(frames[0], frames[1], title, index_name=index_name)
        writer.add_image(f"{tag}/panel", panel, self.global_step, dataformats="HWC")

    # ------------------------------------------------------------------ test lifecycle
    def infer(self, batch: Mapping[str, Any]) -> InferenceResult:
        """Embeddings (and optionally reconstructions) of one test batch."""
        raise NotImplementedError

    def on_test_start(self) -> None:
        if self.test_outputs is None:
            raise ConfigError("the engine has no test output settings; the runner must set engine.test_outputs")
        self.collector = OutputCollector(self.test_outputs, is3d=self.cfg.model.is_3d, provenance=self.provenance)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        assert self.collector is not None  # made in on_test_start
        self.collector.add(batch["key"], batch["indices"], self.infer(batch))

    def on_test_epoch_end(self) -> None:
        """Log ``test_ssim[_<suffix>]``: the mean over all ranks' batches of the per-batch median SSIM.

        Every rank takes part in the reduction, also one whose shard of the test set was empty, so none waits.
        """
        assert self.collector is not None  # made in on_test_start
        stats = torch.tensor(self.collector.ssim_sum_count(), dtype=torch.float64, device=self.device)
        total = cast(torch.Tensor, self.all_gather(stats)).reshape(-1, 2).sum(0)  # (world, 2) -> (2,)
        if total[1] > 0:
            self.log(self.collector.ssim_name, float(total[0] / total[1]), rank_zero_only=True)

    def on_test_end(self) -> None:
        assert self.collector is not None  # made in on_test_start
        self.collector.write()
