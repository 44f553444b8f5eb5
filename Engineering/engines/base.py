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

from Engineering.errors import ConfigError
from Engineering.outputs.collector import InferenceResult, OutputCollector, TestOutputs
from Engineering.outputs.panels import labelled_panel
from Engineering.transforms import parse_shape

log = logging.getLogger("imlatent")

#: optimiserID -> (name, factory(params, lr))
OPTIMISERS: dict[int, str] = {
    0: "Adam",
    1: "AdamW",
    2: "RAdam",
    3: "Madam",
    4: "MTAdam",
    100: "DeepSpeedCPUAdam",
    200: "FusedAdam",
}


def build_optimiser(optimiser_id: int | str, params: Any, lr: float) -> torch.optim.Optimizer:
    """Create the optimiser chosen by ``--optimiserID`` (an integer id, or the name of a torch.optim class)."""
    key: int | str = optimiser_id
    if isinstance(key, str) and key.lstrip("-").isdigit():
        key = int(key)
    if isinstance(key, int):
        if key not in OPTIMISERS:
            raise ConfigError(f"--optimiserID {key} is unknown; valid ids: {sorted(OPTIMISERS)}")
        name = OPTIMISERS[key]
        if name in {"Adam", "AdamW", "RAdam"}:
            return getattr(torch.optim, name)(params, lr=lr)
        if name == "DeepSpeedCPUAdam":
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            return DeepSpeedCPUAdam(params, lr=lr)
        if name == "FusedAdam":
            from deepspeed.ops.adam import FusedAdam

            return FusedAdam(params, lr=lr)
        if name == "Madam":
            from Engineering.science.madam import Madam

            return Madam(params, lr=lr)
        # MTAdam, the one id left (the cfg parser refuses it before this point as well)
        raise ConfigError(
            f"--optimiserID {key} ({name}) cannot be used: its step() needs each task's loss, their ranks and a "
            "feature map, which Lightning's optimiser step never passes (the original could not train with it "
            "either); use 0 (Adam), 1, 2, 3, 100 or 200"
        )
    cls = getattr(torch.optim, key, None)
    if cls is None:
        try:
            import pytorch_optimizer  # type: ignore[import-not-found]

            cls = pytorch_optimizer.load_optimizer(key)
        except Exception as err:  # noqa: BLE001 - any failure means the name is unusable
            raise ConfigError(
                f"--optimiserID {key!r} is neither an optimiser id {sorted(OPTIMISERS)} nor a torch.optim class"
                " (install pytorch_optimizer for other named optimisers)"
            ) from err
    return cls(params, lr=lr)


def build_lr_scheduler(decay_type: int, lr_decay: Mapping[str, Any], optimiser: torch.optim.Optimizer) -> dict | None:
    """Lightning scheduler dict for ``--lr_decay_type`` 1 (StepLR) or 2 (ReduceLROnPlateau on val_loss)."""
    if decay_type == 0:
        return None
    if decay_type == 1:
        p = lr_decay.get("type1", {})
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.StepLR(
            optimiser, step_size=int(p.get("decay_nepoch", 25)), gamma=float(p.get("decay_rate", 0.1))
        )
        return {"scheduler": sched, "interval": "epoch"}
    if decay_type == 2:
        p = lr_decay.get("type2", {})
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser,
            mode="min",
            factor=float(p.get("decay_rate", 0.1)),
            patience=int(p.get("patience", 10)),
            threshold=float(p.get("threshold", 1e-4)),
            cooldown=int(p.get("cooldown", 0)),
            min_lr=float(p.get("min_lr", 0)),
        )
        return {"scheduler": sched, "interval": "epoch", "monitor": "val_loss"}
    raise ConfigError(f"--lr_decay_type {decay_type} is unknown; valid: 0 (none), 1 (StepLR), 2 (ReduceLROnPlateau)")


def plain_hparams(hparams: Any) -> dict[str, Any]:
    """The hyper-parameters as a dict of plain (YAML/checkpoint-safe) values."""
    items = vars(hparams).items() if not isinstance(hparams, Mapping) else hparams.items()
    out: dict[str, Any] = {}
    for key, value in items:
        if isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
            out[key] = value
    return out


class BaseEngine(pl.LightningModule):
    """Common run control of every engine: optimiser choice, LR decay and the test-output lifecycle.

    Subclasses implement ``training_step``/``validation_step`` and :meth:`infer`.
    """

    def __init__(self, hparams: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"hparams": dict(hparams), "config": dict(config)})
        self.hp = dict(hparams)
        self.config = dict(config)
        self.lr = float(self.hp.get("lr", 1e-4))
        self.automatic_optimization = bool(self.hp.get("auto_optim", True))
        self.test_outputs: TestOutputs | None = None
        self.provenance: dict[str, Any] | None = None  # root attributes of emb.h5, set by the runner
        self.collector: OutputCollector | None = None  # the test stage's, made in on_test_start

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        optimiser = build_optimiser(self.hp.get("optimiserID", 0), self.parameters(), self.lr)
        sched = build_lr_scheduler(
            int(self.hp.get("lr_decay_type", 0)), self.config.get("training", {}).get("LRDecay", {}), optimiser
        )
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
        keys = ("is3D", "in_channels", "out_channels", "input_shape")
        arch = {k: self.hp[k] for k in keys if k in self.hp}
        if "is3D" in arch:
            arch["is3D"] = bool(int(arch["is3D"]))
        if "input_shape" in arch:
            arch["input_shape"] = list(parse_shape(arch["input_shape"]))
        latent = (self.config.get("model") or {}).get("latent_dim")
        if isinstance(latent, int) and latent > 0:
            arch["latent_dim"] = latent
        return arch

    def _last_batch_of_epoch(self, batch_idx: int) -> bool:
        """True on the epoch's last training batch, where a partial accumulation is stepped (as Lightning does)."""
        trainer = self._trainer
        total = getattr(trainer, "num_training_batches", None) if trainer is not None else None
        return isinstance(total, int) and batch_idx + 1 == total

    @property
    def accumulate_gradbatch(self) -> int:
        return max(1, int(self.hp.get("effective_batch_size", 1)) // max(1, int(self.hp.get("batch_size", 1))))

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
        freq = int(self.config.get("training", {}).get("im_log_freq", -1))
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
        is3d = bool(int(self.hp.get("is3D", 1)))
        self.collector = OutputCollector(self.test_outputs, is3d=is3d, provenance=self.provenance)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        assert self.collector is not None  # made in on_test_start
        self.collector.add(batch["key"], batch["indices"], self.infer(batch))

    def on_test_epoch_end(self) -> None:
        """Log ``test_ssim[_<suffix>]``: the mean over all ranks' batches of the per-batch median SSIM (§6.7).

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
