"""The test-output collectors: batches in, files (or gathered predictions) out, outside any engine."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from Engineering.outputs.collector import InferenceResult, OutputCollector
from Engineering.outputs.collector import TestOutputs as OutputSettings
from Engineering.outputs.predictions import PredictionCollector

KEYS = ["1000001/20208/2_0/sax", "1000002/20208/2_0/sax"]
INDICES = [torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([0, 0])]


def test_output_collector_writes_embeddings_reconstructions_and_metrics(tmp_path):
    settings = OutputSettings(output_dir=tmp_path / "Output", recon_subjects={"1000002"})
    collector = OutputCollector(settings, is3d=False, provenance={"imlatent_run": "demo"})
    x = torch.rand(2, 1, 16, 16)
    collector.add(KEYS, INDICES, InferenceResult(embedding=torch.ones(2, 3), recon=x, ground_truth=x))
    total, count = collector.ssim_sum_count()
    assert count == 1 and total == 1.0  # identical images: median SSIM 1
    collector.write()
    out = settings.output_dir
    with h5py.File(out / "emb.h5") as emb, h5py.File(out / "recon.h5") as recon:
        assert emb[KEYS[0]].shape == (1, 2, 1, 3) and emb.attrs["imlatent_latent_dim"] == 3
        assert emb.attrs["imlatent_run"] == "demo"
        assert list(recon["1000002/20208/2_0"]) == ["sax"]  # only the recon subjects
    assert (out / "metrics.csv").is_file() and len(list((out / "panels").glob("*.png"))) == 1


def test_output_collector_without_reconstructions_writes_embeddings_and_extras_only(tmp_path):
    settings = OutputSettings(output_dir=tmp_path, save_recon=False)
    collector = OutputCollector(settings, is3d=True)
    collector.add(KEYS, INDICES, InferenceResult(embedding=torch.zeros(2, 4), extra={"pheno_pred": torch.ones(2, 1)}))
    assert collector.ssim_sum_count() == (0.0, 0) and collector.ssim_name == "test_ssim"
    collector.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.h5", "pheno_pred.h5"]


def test_latents_stay_on_the_device_until_flushed_in_one_copy(tmp_path, monkeypatch):
    """The latent-extraction hot path does no host copy and no per-sample work per batch."""
    from Engineering.outputs import collector as module

    copies = []
    monkeypatch.setattr(module, "as_numpy", lambda v: copies.append(v.shape) or v.numpy())
    monkeypatch.setattr(module, "FLUSH_EVERY", 3)
    out = OutputCollector(OutputSettings(output_dir=tmp_path, save_recon=False), is3d=True)
    for b in range(4):  # 4 batches of 2 series each, values = batch number
        keys = [f"{1000000 + 2 * b + i}/20208/2_0/sax" for i in range(2)]
        out.add(keys, INDICES, InferenceResult(embedding=torch.full((2, 3), float(b))))
        assert copies == ([] if b < 2 else [(6, 3)])  # flushed once, after the third batch, as one array
    out.write()
    assert copies == [(6, 3), (2, 3)]
    with h5py.File(tmp_path / "emb.h5") as emb:
        assert len(emb) == 8
        assert emb["1000006/20208/2_0/sax"].shape == (1, 2, 1, 3)  # first sample of a batch: index (0, 1, 0)
        assert emb["1000006/20208/2_0/sax"][0, 1, 0].tolist() == [3.0, 3.0, 3.0]
        assert emb["1000001/20208/2_0/sax"][0, 0, 0].tolist() == [0.0, 0.0, 0.0]


def test_prediction_collector_stacks_batches_in_arrival_order():
    predictions = PredictionCollector()
    assert predictions.empty
    predictions.add({"subID": ["a", "b"]}, {"pred": np.zeros((2, 1))})
    predictions.add({"subID": ["c"]}, {"pred": np.ones((1, 1))})
    gathered = predictions.gathered()  # not distributed: this rank's predictions
    assert gathered is not None and gathered.ids == {"subID": ["a", "b", "c"]}
    assert gathered.stacked()["pred"].ravel().tolist() == [0.0, 0.0, 1.0]
