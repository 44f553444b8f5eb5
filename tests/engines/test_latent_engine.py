"""ClassifyLatentEngine: the faithful latent regressor, the classification mode, EMA and the test-stage files."""

from __future__ import annotations

import json
import logging

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from Engineering.data.folds import Fold
from Engineering.data.latent_datamodule import LatentDataModule
from Engineering.engines.latent import ClassifyLatentEngine, auroc, r2_scores
from Engineering.errors import ConfigError
from Engineering.outputs import write_results_h5
from Engineering.outputs.collector import TestOutputs as OutputSettings
from Engineering.warp_drives.latent import build_latent_head, ema_copy, ema_update

L, TAG = 8, "primary_LAX_4Ch_transverse_0"


def _hp(**kw) -> dict:
    base = dict(in_channels=L, modelID=0, lossID=1, ema_decay=0.9, lr=0.05, optimiserID=0, latent_task="regression")
    base.update(kw)
    return base


def _synthetic(tmp_path, n: int = 120) -> tuple:
    """Latents z ~ N(0, 1); y = z·w + small noise; cls = [z0 + z1 > 0]; 60/20/20 % split."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, L))
    y = z @ rng.normal(size=L) + 0.05 * rng.normal(size=n)
    ids = list(range(1000000, 1000000 + n))
    write_results_h5(tmp_path / "emb.h5", {f"{s}/20208/2_0/{TAG}": z[i].reshape(1, 1, 1, L) for i, s in enumerate(ids)})
    pd.DataFrame({"FID": ids, "y": y * 7 + 100, "cls": (z[:, 0] + z[:, 1] > 0).astype(int)}).to_csv(
        tmp_path / "ph.tsv", sep="\t", index=False
    )
    s = [str(i) for i in ids]
    return tmp_path / "emb.h5", Fold(s[: int(0.6 * n)], s[int(0.6 * n) : int(0.8 * n)], s[int(0.8 * n) :])


def _fit_and_test(tmp_path, task: str, cols: str, epochs: int = 25):
    emb, fold = _synthetic(tmp_path)
    dm = LatentDataModule(emb, {"path": str(tmp_path / "ph.tsv"), "cols": cols}, fold, task=task, batch_size=24)
    engine = ClassifyLatentEngine(_hp(**dm.engine_hparams()), {})
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(engine, datamodule=dm)
    fit_metrics = dict(trainer.callback_metrics)
    engine.test_outputs = OutputSettings(output_dir=tmp_path / "Output")
    trainer.test(engine, datamodule=dm, verbose=False)
    return fit_metrics, trainer.callback_metrics


def test_metric_helpers():
    y = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    np.testing.assert_allclose(r2_scores(y, y), [1.0, 1.0])
    assert r2_scores(y, y + [[0.5, 0.0]] * 3)[0] == pytest.approx(1 - 0.75 / 2)
    assert auroc(np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])) == 0.75
    probs3 = np.eye(3)[[0, 1, 2, 2]]
    assert auroc(np.array([0, 1, 2, 2]), probs3) == 1.0


def test_head_and_ema_update():
    net = build_latent_head(0, L, 3)
    assert isinstance(net, torch.nn.Linear) and net.weight.shape == (3, L)
    shadow = ema_copy(net)
    assert not any(p.requires_grad for p in shadow.parameters()) and not shadow.training
    before = shadow.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema_update(shadow, net, 0.75)
    torch.testing.assert_close(shadow.weight, 0.75 * before + 0.25 * net.weight)
    with pytest.raises(ConfigError, match=r"--modelID 3 is unknown for taskID 2"):
        build_latent_head(3, L, 3)
    with pytest.raises(ConfigError, match=r"--modelID -1 \(identity\) needs --in_channels \(8\) equal to .* \(3\)"):
        build_latent_head(-1, L, 3)


def test_engine_validates_arguments():
    with pytest.raises(ConfigError, match=r"--lossID 7 is unknown for taskID 2; valid: 0 \(L1\), 1 \(MSE\), 2"):
        ClassifyLatentEngine(_hp(lossID=7, latent_targets=["y"]), {})
    with pytest.raises(ConfigError, match=r"latent_classes \[1\]; classification needs at least two classes"):
        ClassifyLatentEngine(_hp(latent_task="classification", latent_targets=["c"], latent_classes=[1]), {})
    with pytest.raises(ConfigError, match=r"--ema_decay 1.5: expected less than or equal to 1"):
        ClassifyLatentEngine(_hp(ema_decay=1.5, latent_targets=["y"]), {})
    engine = ClassifyLatentEngine(_hp(lossID=2, DS_phenotypes={"cols": "a,b,c"}), {})
    assert engine.net.out_features == 3 and isinstance(engine.loss_fn, torch.nn.SmoothL1Loss)
    assert set(engine.state_dict()) == {"net.weight", "net.bias", "ema_net.weight", "ema_net.bias"}


@pytest.mark.slow
def test_regressor_learns_linear_phenotype_and_writes_outputs(tmp_path, capsys):
    fit_metrics, metrics = _fit_and_test(tmp_path, "regression", "y")
    for name in ("train_loss", "train_loss_ema", "val_loss", "val_loss_ema", "val_r2_0", "val_r2_ema_0"):
        assert name in fit_metrics, name
    assert {"test_loss", "test_loss_ema", "test_r2_ema_0"} <= set(metrics)
    assert float(metrics["test_r2_0"]) > 0.9
    assert "Final testing results:" in capsys.readouterr().out
    out = tmp_path / "Output"
    pred = pd.read_csv(out / "latent_predictions.csv")
    assert list(pred.columns) == ["subID", "fieldID", "instanceID", "data_tag", "y", "y_pred", "y_pred_ema"]
    assert len(pred) == 24 and pred["y"].mean() == pytest.approx(100, abs=5)  # phenotype units, not z-scores
    truth = pd.read_csv(tmp_path / "ph.tsv", sep="\t").set_index("FID").loc[pred.subID, "y"].to_numpy()
    np.testing.assert_allclose(pred["y"].to_numpy(), truth, rtol=1e-5)
    scores = pd.read_csv(out / "latent_scores.csv")
    assert scores.loc[0, "phenotype"] == "y" and scores.loc[0, "r2"] > 0.9
    summary = json.loads((out / "latent_scores.json").read_text())
    assert summary["task"] == "regression" and summary["scores"]["test_r2_0"] > 0.9


@pytest.mark.slow
def test_classification_mode_on_separable_target(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    fit_metrics, metrics = _fit_and_test(tmp_path, "classification", "cls")
    assert float(metrics["test_acc"]) > 0.9
    assert float(metrics["test_auroc"]) > 0.9
    assert {"val_acc", "val_auroc", "val_acc_ema", "val_auroc_ema"} <= set(fit_metrics)
    pred = pd.read_csv(tmp_path / "Output" / "latent_predictions.csv")
    assert {"cls", "cls_pred", "cls_prob_0", "cls_prob_1", "cls_prob_ema_1"} <= set(pred.columns)
    assert (pred["cls"] == pred["cls_pred"]).mean() > 0.9
    scores = pd.read_csv(tmp_path / "Output" / "latent_scores.csv")
    assert list(scores.columns) == ["phenotype", "n", "accuracy", "auroc", "accuracy_ema", "auroc_ema"]
