"""Directions from a latent index, a main_latentcls.py checkpoint or a phenotype fit, measured on a run's emb.h5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from Engineering.engines.directions import parse_direction, reference_latents, resolve_direction
from Engineering.errors import CheckpointError, ConfigError, DataError
from Engineering.outputs import write_results_h5

N, L = 40, 5


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder whose Output/emb.h5 holds N subjects; Z1 carries a planted phenotype signal."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N, L))
    dense = {f"{1000 + n}/20208/2_0/primary": z[n].reshape(1, 1, 1, L) for n in range(N)}
    write_results_h5(tmp_path / "run" / "Output" / "emb.h5", dense)
    write_results_h5(tmp_path / "run" / "Output_few" / "emb.h5", dict(list(dense.items())[:3]))
    table = ["FID\tHeight\tSex"] + [f"{1000 + n}\t{2 * z[n, 1] + 0.01 * n}\t{int(z[n, 3] > 0)}" for n in range(N)]
    (tmp_path / "pheno.tsv").write_text("\n".join(table) + "\n")
    return tmp_path / "run"


def _direction(run_dir: Path, *values: str):
    return resolve_direction(parse_direction(values), reference_latents(run_dir))


def test_reference_latents_come_from_the_fullest_emb_h5(run_dir):
    ref = reference_latents(run_dir)
    assert ref.path == run_dir / "Output" / "emb.h5" and ref.latents.shape == (N, L)


def test_index_and_phenotype_directions(run_dir):
    index = _direction(run_dir, "index", "2")
    assert np.allclose(index.vector, np.eye(L)[2]) and index.label == "Z2"
    height = _direction(run_dir, "phenotype", str(run_dir.parent / "pheno.tsv"), "Height")
    assert height.vector[1] > 0.99 and height.label == "Height (ridge)"
    sex = _direction(run_dir, "phenotype", str(run_dir.parent / "pheno.tsv"), "Sex")  # two values: logistic
    assert sex.label == "Sex (logistic)" and np.argmax(np.abs(sex.vector)) == 3 and sex.vector[3] > 0


def _latentcls_run(tmp_path: Path, weight: torch.Tensor, hparams: dict) -> Path:
    folder = tmp_path / "cls" / "Checkpoints"
    folder.mkdir(parents=True)
    state = {"net.weight": weight, "net.bias": torch.zeros(len(weight)), "ema_net.weight": weight}
    torch.save({"state_dict": state, "hyper_parameters": {"hparams": hparams}}, folder / "last.ckpt")
    return folder.parent


def test_latentcls_direction_is_the_named_row_of_its_head(run_dir, tmp_path):
    weight = torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 2.0]])
    cls_run = _latentcls_run(tmp_path, weight, {"latent_task": "regression", "latent_targets": ["LVEF", "LVM"]})
    lvm = _direction(run_dir, "latentcls", str(cls_run), "LVM")
    assert np.allclose(lvm.vector, np.eye(L)[4]) and lvm.label == "LVM (latentcls weights)"
    assert np.allclose(_direction(run_dir, "latentcls", str(cls_run)).vector, np.eye(L)[0])  # default: first row
    with pytest.raises(ConfigError, match="target 'BMI' is not one of LVEF, LVM"):
        _direction(run_dir, "latentcls", str(cls_run), "BMI")


def test_latentcls_classifier_direction_is_class_one_minus_class_zero(run_dir, tmp_path):
    weight = torch.tensor([[0.0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0]])
    cls_run = _latentcls_run(tmp_path, weight, {"latent_task": "classification", "latent_classes": [0, 1]})
    d = _direction(run_dir, "latentcls", str(cls_run))
    assert np.allclose(d.vector, np.array([0, -1, 1, 0, 0]) / np.sqrt(2))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((), "expected one of index, latentcls, phenotype first"),
        (("pca", "1"), "'pca': expected one of index, latentcls, phenotype"),
        (("index",), "wrong number of arguments"),
        (("index", "two"), "expected an integer latent index"),
        (("phenotype", "t.tsv", "Age", "lasso"), "'lasso': expected one of ridge, logistic"),
    ],
)
def test_bad_direction_options_are_one_clear_line(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_direction(values)


def test_directions_that_do_not_fit_the_run_are_refused(run_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"latent index 7 is out of range; expected 0..4"):
        _direction(run_dir, "index", "7")
    cls_run = _latentcls_run(tmp_path, torch.ones(1, 3), {"latent_targets": ["LVEF"]})
    with pytest.raises(DataError, match="direction LVEF .* has length 3; the run's latents have length 5"):
        _direction(run_dir, "latentcls", str(cls_run))
    with pytest.raises(DataError, match="lacks column"):
        _direction(run_dir, "phenotype", str(run_dir.parent / "pheno.tsv"), "Weight")
    with pytest.raises(DataError, match="has no Output\\*/emb.h5"):
        reference_latents(tmp_path / "cls")
    (tmp_path / "bad" / "Checkpoints").mkdir(parents=True)
    (tmp_path / "bad" / "Checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        _direction(run_dir, "latentcls", str(tmp_path / "bad"))
