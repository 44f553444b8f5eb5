"""ClassifyLatentEngine (taskID 2): the latent regressor, plus a real classification mode.

Despite the original's name the faithful model is a *latent regressor*: ``nn.Linear(in_channels, n_phenotypes)``
trained with L1/MSE/SmoothL1 (``--lossID`` 0/1/2) on z-scored phenotypes, with a frozen EMA shadow (``--ema_decay``)
updated after every training batch. ``latent_task: classification`` (dataNpath JSON key, or
``--json§latent_task classification``) trains the same head on the class logits of one column with cross-entropy
and reports accuracy and AUROC.

Logged scalars: ``train_loss``, ``train_loss_ema``, ``val_loss``, ``val_loss_ema``,
``val_r2_<i>``/``val_r2_ema_<i>`` (classification: ``val_acc``, ``val_auroc`` and their ``_ema`` twins),
``test_loss``, ``test_loss_ema`` and the test scores. Unlike the original, the test stage also writes
``latent_predictions.csv``, ``latent_scores.csv`` and ``latent_scores.json`` into the run's Output folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.base import BaseEngine
from Engineering.errors import ConfigError
from Engineering.outputs.collector import InferenceResult
from Engineering.outputs.predictions import PredictionCollector
from Engineering.warp_drives.latent import build_latent_head, ema_copy, ema_update

if TYPE_CHECKING:
    from lightning.pytorch.core.optimizer import LightningOptimizer

log = logging.getLogger("imlatent")

#: lossID → regression loss of the latent regressor (constants.LOSSID_CLS)
REGRESSION_LOSSES: dict[int, type[nn.Module]] = {0: nn.L1Loss, 1: nn.MSELoss, 2: nn.SmoothL1Loss}
PREDICTIONS_CSV = "latent_predictions.csv"
SCORES_CSV = "latent_scores.csv"
SCORES_JSON = "latent_scores.json"
_ID_COLUMNS = ("subID", "fieldID", "instanceID", "dsID")


# ---------------------------------------------------------------------------------------------- metrics
def r2_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column of (N, n) arrays (sklearn ``r2_score`` semantics per output;
    a constant column gives 1.0 for a perfect fit, else 0.0)."""
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    return np.where(ss_tot > 0, 1.0 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank statistic (ties get average ranks); NaN if one class."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """AUROC of class probabilities (N, K): binary uses class 1; K > 2 the macro one-vs-rest mean over classes
    that have both positives and negatives in ``labels``."""
    if probs.shape[1] == 2:
        return binary_auroc(labels == 1, probs[:, 1])
    values = [binary_auroc(labels == k, probs[:, k]) for k in range(probs.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------- engine
class ClassifyLatentEngine(BaseEngine):
    """Latent regressor / classifier over ``(B, in_channels)`` latents.

    Settings used: ``modelID`` (0 linear, -1 identity), ``in_channels``, ``lossID``, ``ema_decay``, and what
    :meth:`LatentDataModule.engine_hparams` records: ``latent_task``, ``latent_targets``, ``latent_classes``,
    ``latent_target_mean``/``latent_target_std`` (train statistics, to report predictions in phenotype units).
    """

    SCRIPT = "latentcls"

    def __init__(self, hparams: RunConfig | Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        super().__init__(hparams, config)
        latent, loss_id = self.cfg.latent, self.cfg.training.lossID
        self.task = latent.latent_task
        self.targets = [str(c) for c in latent.latent_targets or _phenotype_cols(self.cfg.data.dataset)]
        self.classes = list(latent.latent_classes)
        if self.task == "classification":
            if len(self.classes) < 2:
                raise ConfigError(f"latent_classes {self.classes!r}; classification needs at least two classes")
            n_out = len(self.classes)
            self.loss_fn: nn.Module = nn.CrossEntropyLoss()
            if loss_id != 1:
                log.warning("--lossID %s ignored: latent_task classification uses cross-entropy", loss_id)
        else:
            n_out = len(self.targets)
            if loss_id not in REGRESSION_LOSSES:
                raise ConfigError(f"--lossID {loss_id} is unknown for taskID 2; valid: 0 (L1), 1 (MSE), 2 (SmoothL1)")
            self.loss_fn = REGRESSION_LOSSES[loss_id]()
        self.net = build_latent_head(self.cfg.model.modelID, self.cfg.model.in_channels, n_out)
        self.ema_net = ema_copy(self.net)
        self.ema_decay = latent.ema_decay  # a probability, checked when the configuration is built
        self.predictions = PredictionCollector()  # of the current validation epoch or test run

    def train(self, mode: bool = True) -> ClassifyLatentEngine:
        """Lightning switches modes on the whole module; the EMA shadow always stays in eval."""
        super().train(mode)
        self.ema_net.eval()
        return self

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, L) latents → (B, n_outputs) predictions (regression) or logits (classification)."""
        return self.net(latent)

    # ------------------------------------------------------------------ shared step
    def _step(self, batch: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss of net and EMA net on one batch; logs ``<split>_loss`` and ``<split>_loss_ema``."""
        latent, target = batch["latent"], batch["phenotypes"]
        out = self.net(latent)
        loss = self.loss_fn(out, target)
        with torch.no_grad():
            out_ema = self.ema_net(latent)
            loss_ema = self.loss_fn(out_ema, target)
        on_step = split == "train"
        kw = {"on_step": on_step, "on_epoch": True, "batch_size": latent.shape[0], "sync_dist": not on_step}
        self.log(f"{split}_loss", loss, prog_bar=True, **kw)
        self.log(f"{split}_loss_ema", loss_ema, **kw)
        if split != "train":
            self._collect(batch, out, out_ema)
        return loss, out, out_ema

    def _collect(self, batch: Mapping[str, Any], out: torch.Tensor, out_ema: torch.Tensor) -> None:
        arrays = {
            "target": batch["phenotypes"].detach().cpu().numpy(),
            "pred": self._readout(out),
            "pred_ema": self._readout(out_ema),
        }
        ids = {
            name: batch[name].tolist() if torch.is_tensor(batch[name]) else list(batch[name]) for name in _ID_COLUMNS
        }
        self.predictions.add(ids, arrays)

    def _readout(self, out: torch.Tensor) -> np.ndarray:
        out = out.detach().float().cpu()
        return (out.softmax(dim=1) if self.task == "classification" else out).numpy()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._step(batch, "train")
        if not self.automatic_optimization:
            opt = cast("LightningOptimizer", self.optimizers())  # configure_optimizers returns one optimiser
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        ema_update(self.ema_net, self.net, self.ema_decay)

    def on_validation_epoch_start(self) -> None:
        self.predictions = PredictionCollector()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.predictions.empty:
            return
        for name, value in self.scores("val").items():
            self.log(name, value, sync_dist=True)

    # ------------------------------------------------------------------ scores
    def scores(self, split: str) -> dict[str, float]:
        """``<split>_r2_<i>``/``<split>_r2_ema_<i>`` (regression) or ``<split>_acc``, ``<split>_auroc`` and their
        ``_ema`` twins (classification) over everything collected in this epoch."""
        data = self.predictions.stacked()
        out: dict[str, float] = {}
        if self.task == "classification":
            labels = data["target"].astype(np.int64)
            for suffix, probs in (("", data["pred"]), ("_ema", data["pred_ema"])):
                out[f"{split}_acc{suffix}"] = float((probs.argmax(axis=1) == labels).mean())
                out[f"{split}_auroc{suffix}"] = auroc(labels, probs)
            return out
        r2, r2_ema = r2_scores(data["target"], data["pred"]), r2_scores(data["target"], data["pred_ema"])
        for i in range(len(r2)):
            out[f"{split}_r2_{i}"] = float(r2[i])
            out[f"{split}_r2_ema_{i}"] = float(r2_ema[i])
        return out

    # ------------------------------------------------------------------ test
    def infer(self, batch: Mapping[str, Any]) -> InferenceResult:
        """The head's output of one batch (used by predict); no embeddings are produced by this engine."""
        return InferenceResult(embedding=self.net(batch["latent"]))

    def on_test_start(self) -> None:
        if self.test_outputs is None:
            raise ConfigError("the engine has no test output settings; the runner must set engine.test_outputs")
        self.predictions = PredictionCollector()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_end(self) -> None:
        gathered = self.predictions.gathered()
        if gathered is None:
            return
        self.predictions = gathered
        if gathered.empty:
            log.warning("the test split produced no batches; no latent test outputs written")
            return
        scores = self.scores("test")
        for name, value in scores.items():
            self.log(name, value, rank_zero_only=True)
        print("Final testing results:", scores)
        self.write_test_outputs(scores)

    def on_test_end(self) -> None:
        """Nothing left to do: the base class's emb.h5/recon.h5 writing does not apply to this engine."""

    def write_test_outputs(self, scores: Mapping[str, float]) -> None:
        """Predictions per series and scores per target into the Output folder."""
        assert self.test_outputs is not None  # checked in on_test_start
        from Engineering.outputs.files import atomic_write_bytes

        out_dir = self.test_outputs.output_dir
        data = self.predictions.stacked()
        table = pd.DataFrame({name: self.predictions.ids[name] for name in _ID_COLUMNS}).rename(
            columns={"dsID": "data_tag"}
        )
        table = pd.concat([table, self._prediction_columns(data)], axis=1)
        atomic_write_bytes(out_dir / PREDICTIONS_CSV, table.to_csv(index=False).encode("utf-8"))
        atomic_write_bytes(out_dir / SCORES_CSV, self._score_table(scores).to_csv(index=False).encode("utf-8"))
        summary = {"task": self.task, "n_test": len(table), "targets": self.targets, "scores": dict(scores)}
        atomic_write_bytes(out_dir / SCORES_JSON, (json.dumps(summary, indent=2, default=float) + "\n").encode())
        log.info("Latent test outputs written to %s (%d series)", out_dir, len(table))

    def _prediction_columns(self, data: Mapping[str, np.ndarray]) -> pd.DataFrame:
        cols: dict[str, Any] = {}
        if self.task == "classification":
            name = self.targets[0]
            classes = np.asarray(self.classes, dtype=object)
            cols[name] = classes[data["target"].astype(np.int64)]
            cols[f"{name}_pred"] = classes[data["pred"].argmax(axis=1)]
            cols[f"{name}_pred_ema"] = classes[data["pred_ema"].argmax(axis=1)]
            for k, cls in enumerate(self.classes):
                cols[f"{name}_prob_{cls}"] = data["pred"][:, k]
                cols[f"{name}_prob_ema_{cls}"] = data["pred_ema"][:, k]
            return pd.DataFrame(cols)
        latent = self.cfg.latent
        mean = np.asarray(latent.latent_target_mean or np.zeros(len(self.targets)), dtype=np.float64)
        std = np.asarray(latent.latent_target_std or np.ones(len(self.targets)), dtype=np.float64)
        for key, suffix in (("target", ""), ("pred", "_pred"), ("pred_ema", "_pred_ema")):
            values = data[key].astype(np.float64) * std + mean  # back in phenotype units
            for i, name in enumerate(self.targets):
                cols[f"{name}{suffix}"] = values[:, i]
        return pd.DataFrame(cols)

    def _score_table(self, scores: Mapping[str, float]) -> pd.DataFrame:
        if self.task == "classification":
            row = {"phenotype": self.targets[0], "n": len(self.predictions.ids["subID"])}
            row.update({k.removeprefix("test_"): v for k, v in scores.items()})
            return pd.DataFrame([row]).rename(columns={"acc": "accuracy", "acc_ema": "accuracy_ema"})
        rows = [
            {"index": i, "phenotype": name, "r2": scores[f"test_r2_{i}"], "r2_ema": scores[f"test_r2_ema_{i}"]}
            for i, name in enumerate(self.targets)
        ]
        return pd.DataFrame(rows)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> np.ndarray:
        """Head output of a batch as numpy (probabilities in classification mode)."""
        return self._readout(self.net(batch["latent"]))


def _phenotype_cols(dataset: Mapping[str, Any]) -> list[str]:
    """The ``cols`` of the data JSON's ``DS_phenotypes`` (a comma-separated string or a list)."""
    cols = (dataset.get("phenotypes") or {}).get("cols", "")
    return [c.strip() for c in cols.split(",") if c.strip()] if isinstance(cols, str) else list(cols)
