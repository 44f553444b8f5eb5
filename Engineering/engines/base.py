"""Shared LightningModule behaviour: optimisers, LR decay, logging helpers and the test-output lifecycle.

Engines (recon, DiffAE, latent) are thin subclasses. The test stage is common to all of them: each
engine implements :meth:`BaseEngine.infer` (one batch -> embeddings, reconstructions, ground truth) and
the base class accumulates the results, gathers them from every rank and lets rank 0 write
``emb.h5``, ``recon.h5`` and ``metrics.csv/.pkl`` once, atomically (shell.md §6).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch

from Engineering.errors import ConfigError
from Engineering.transforms import parse_shape

log = logging.getLogger("imlatent")

#: at most this many PNG panels per test run (the first series stored), to bound memory and files
MAX_PANELS = 32

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


@dataclass
class TestOutputs:
    """Where and what the test stage writes (shell.md §6)."""

    output_dir: Path
    save_recon: bool = True
    recon_subjects: set[str] | None = None
    metric_suffix: str = ""
    eval_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class InferenceResult:
    """One test batch as seen by the writers.

    embedding: (B, L); recon and ground_truth: (B, C, *spatial) in the metric space (normally [0, 1]) or None.
    extra: additional per-sample predictions written as ``<tag>.h5`` (e.g. ``pheno_pred``), each (B, n).
    """

    embedding: torch.Tensor
    recon: torch.Tensor | None = None
    ground_truth: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


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
        self._results: Any = None

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

    def log_images(self, tag: str, inp: torch.Tensor, out: torch.Tensor, batch_idx: int) -> None:
        """Log sample 0, channel 0 (central depth slice for 3D) of input and output to TensorBoard."""
        freq = int(self.config.get("training", {}).get("im_log_freq", -1))
        writer = self.tensorboard()
        if writer is None or freq < 0 or batch_idx % max(freq, 1) != 0:
            return
        for name, img in (("input", inp), ("output", out)):
            img = img[0, 0].detach().float().cpu()
            if img.ndim == 3:  # (D, H, W) -> central slice
                img = img[img.shape[0] // 2]
            if torch.is_complex(img):
                img = img.abs()
            img = (img - img.min()) / (img.max() - img.min() + 1e-8)
            writer.add_image(f"{tag}/{name}", img.unsqueeze(0), self.global_step)

    # ------------------------------------------------------------------ test lifecycle
    def infer(self, batch: Mapping[str, Any]) -> InferenceResult:
        """Embeddings (and optionally reconstructions) of one test batch."""
        raise NotImplementedError

    def on_test_start(self) -> None:
        from Engineering.outputs import Evaluator, ResultHolder

        if self.test_outputs is None:
            raise ConfigError("the engine has no test output settings; the runner must set engine.test_outputs")
        eval_opts = dict(self.test_outputs.eval_options)
        self._results = {
            "emb": ResultHolder(),
            "recon": ResultHolder(),
            "gt": ResultHolder(),  # ground truth of the recon subjects, for the PNG panels
            "extra": {},
            "rows": [],
            "evaluator": Evaluator(
                metrics2use=eval_opts.get("metrics2use") or {},
                norm4diff=bool(eval_opts.get("norm4diff", False)),
                store_fullscale_evals=bool(eval_opts.get("store_fullscale_evals", False)),
                n_calc_processes=_metric_processes(int(eval_opts.get("n_calc_processes", 0))),
                mp_start_method="spawn" if torch.cuda.is_initialized() else "fork",
            ),
            "ssim": [],
        }

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        result = self.infer(batch)
        keys = list(batch["key"])
        indices = tuple(torch.as_tensor(ix).tolist() for ix in batch["indices"])
        res = self._results
        res["emb"].add(keys, indices, _to_numpy(result.embedding))
        for tag, values in result.extra.items():
            res["extra"].setdefault(tag, type(res["emb"])()).add(keys, indices, _to_numpy(values))
        if result.recon is None or result.ground_truth is None:
            return
        recon = _to_numpy(result.recon)
        gt = _to_numpy(result.ground_truth)
        assert self.test_outputs is not None  # checked in on_test_start
        if self.test_outputs.save_recon:
            squeezed = np.stack([_squeeze_channel(r) for r in recon])  # recon.h5 drops a singleton channel axis
            res["recon"].add(keys, indices, squeezed, only_subjects=self.test_outputs.recon_subjects)
            if len(res["gt"].keys()) < MAX_PANELS:  # ground truth is kept only for the series that get a panel
                truth = np.stack([_squeeze_channel(g) for g in gt])
                res["gt"].add(keys, indices, truth, only_subjects=self.test_outputs.recon_subjects)
        rows = res["evaluator"].evaluate(gt, recon, keys)
        res["rows"].extend(rows)
        from Engineering.outputs import median_ssim

        res["ssim"].append(float(median_ssim(gt, recon)))

    def on_test_epoch_end(self) -> None:
        """Log ``test_ssim[_<suffix>]``: the mean over all ranks' batches of the per-batch median SSIM (§6.7).

        Every rank takes part in the reduction, also one whose shard of the test set was empty, so none waits.
        """
        values = [v for v in self._results["ssim"] if np.isfinite(v)]
        stats = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=self.device)
        total = cast(torch.Tensor, self.all_gather(stats)).reshape(-1, 2).sum(0)  # (world, 2) -> (2,)
        if total[1] > 0:
            assert self.test_outputs is not None  # checked in on_test_start
            name = "test_ssim" + (f"_{self.test_outputs.metric_suffix}" if self.test_outputs.metric_suffix else "")
            self.log(name, float(total[0] / total[1]), rank_zero_only=True)

    def on_test_end(self) -> None:
        from Engineering.outputs import ResultHolder, gather_to_rank0, write_metrics, write_results_h5

        res = self._results
        res["evaluator"].close()
        state = {
            "emb": res["emb"].state(),
            "recon": res["recon"].state(),
            "gt": res["gt"].state(),
            "extra": {k: v.state() for k, v in res["extra"].items()},
            "rows": res["rows"],
        }
        gathered = gather_to_rank0(state)
        if gathered is None:  # not rank 0: rank 0 writes everything once
            return
        emb = ResultHolder.merged(ResultHolder.from_state(st["emb"]) for st in gathered)
        recon = ResultHolder.merged(ResultHolder.from_state(st["recon"]) for st in gathered)
        tags = sorted({tag for st in gathered for tag in st["extra"]})
        rows = [row for st in gathered for row in st["rows"]]
        if len(gathered) > 1:  # ranks hold strided shares: one deterministic order whatever the number of ranks
            rows.sort(key=_row_identity)
        assert self.test_outputs is not None  # checked in on_test_start
        out = self.test_outputs.output_dir
        out.mkdir(parents=True, exist_ok=True)
        emb_dense = emb.to_dense()
        attrs = dict(self.provenance) if self.provenance else None
        if attrs is not None and emb_dense:
            attrs["imlatent_latent_dim"] = int(next(iter(emb_dense.values())).shape[-1])  # the length really written
        write_results_h5(out / "emb.h5", emb_dense, attrs=attrs)
        if self.test_outputs.save_recon:
            from Engineering.outputs.panels import PANEL_DIR, write_recon_panels

            recon_dense = recon.to_dense()
            write_results_h5(out / "recon.h5", recon_dense)
            gt = ResultHolder.merged(ResultHolder.from_state(st["gt"]) for st in gathered)
            is3d = bool(int(self.hp.get("is3D", 1)))
            gt_dense = gt.to_dense()
            panel_recon = {key: recon_dense[key] for key in gt_dense if key in recon_dense}
            write_recon_panels(out / PANEL_DIR, panel_recon, gt_dense, is3D=is3d)
        for tag in tags:
            holder = ResultHolder.merged(
                ResultHolder.from_state(st["extra"][tag]) for st in gathered if tag in st["extra"]
            )
            write_results_h5(out / f"{tag}.h5", holder.to_dense())
        if rows:
            write_metrics(out, rows)
        log.info("Test outputs written to %s (%d series)", out, len(emb))


def _row_identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    from Engineering.science.metrics import ID_COLUMNS

    return tuple(str(row.get(col, "")) for col in ID_COLUMNS)


def _metric_processes(requested: int) -> int:
    """Metric worker processes: as configured (-1 = all CPUs), but never more than this process may use."""
    import os

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested < 0:
        return available
    return min(requested, available)


def _to_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    t = t.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.numpy()


def _squeeze_channel(x: np.ndarray) -> np.ndarray:
    """Drop a singleton channel axis of one sample (C, *spatial), as recon.h5 stores it."""
    return x[0] if x.shape[0] == 1 else x
