"""A DiffAE for inference: α = 0 reproduces the reconstruction, interpolation ends at both subjects, runs reload.

Unit tests use a tiny random DiffAE (2D and 3D); the end-to-end ones compare with what the test stage of a tiny
trained run wrote to recon.h5.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from Engineering.configuration import resolve
from Engineering.engines.diffae_inference import (
    DiffAERun,
    SubjectSeries,
    interpolate,
    load_diffae_run,
    load_subject,
    manipulate,
)
from Engineering.engines.tasks import build_engine
from Engineering.errors import ConfigError, DataError

SMALL = ["--model§latent_dim", "4", "--model§DiffAE§net_ch", "4", "--model§DiffAE§net_num_res_blocks", "1"]
SHAPES = {"2D": (32, 32), "3D": (2, 32, 32)}


def _tiny_run(shape: tuple[int, ...]) -> DiffAERun:
    argv = ["--is3D", str(int(len(shape) == 3)), "--input_shape", ",".join(map(str, shape)), "--batch_size", "1"]
    rc = resolve("diffae", argv + ["--ampmode", "32", "--accelerator", "cpu", "--model§DiffAE§T_eval", "2", *SMALL])
    torch.manual_seed(0)
    engine = build_engine(rc.cfg).eval()
    with torch.no_grad():  # DiffAE zero-initialises its output layers: a fresh network predicts ε = 0 everywhere
        for p in engine.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return DiffAERun(Path("."), engine, rc.cfg, Path("none"), use_ema=True)  # type: ignore[arg-type]


def _series(shape: tuple[int, ...], n: int, seed: int) -> SubjectSeries:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, *shape, generator=gen) * 2 - 1
    return SubjectSeries(str(seed), f"{seed}/20208/2_0/s", [(0, j, 0) for j in range(n)], x)


@pytest.mark.parametrize("dims", SHAPES)
def test_alpha_zero_is_the_engines_own_reconstruction(dims):
    run = _tiny_run(SHAPES[dims])
    series = _series(SHAPES[dims], 2, seed=1)
    offsets = np.zeros((2, 4))
    offsets[1, 0] = 3.0
    out = manipulate(run, series, offsets, progress=False)
    assert out.shape == (2, 2, 1, *SHAPES[dims])
    engine = run.engine
    with torch.no_grad():
        expected = engine.render(series.x, engine.encode(series.x), engine.T_inv, engine.T_step)
    assert torch.equal(out[0], expected)
    assert not torch.allclose(out[1], out[0])  # a non-zero step changes the decode


@pytest.mark.parametrize("dims", SHAPES)
def test_interpolation_starts_and_ends_at_each_subjects_reconstruction(dims):
    run = _tiny_run(SHAPES[dims])
    a, b = _series(SHAPES[dims], 1, seed=1), _series(SHAPES[dims], 1, seed=2)
    out = interpolate(run, a, b, np.array([0.0, 0.5, 1.0]), ddim_steps=1, progress=False)
    ends = [manipulate(run, s, np.zeros((1, 4)), ddim_steps=1, progress=False)[0] for s in (a, b)]
    assert torch.allclose(out[0], ends[0], atol=1e-5) and torch.allclose(out[2], ends[1], atol=1e-5)
    assert not torch.allclose(out[1], out[0], atol=1e-3)


def test_ddim_steps_are_checked_and_shapes_must_agree():
    run = _tiny_run(SHAPES["2D"])
    series = _series(SHAPES["2D"], 1, seed=1)
    with pytest.raises(ConfigError, match=r"--ddim_steps 0; expected 1..1000"):
        manipulate(run, series, np.zeros((1, 4)), ddim_steps=0, progress=False)
    with pytest.raises(ConfigError, match=r"offsets of shape \(1, 3\); expected \(A, 4\)"):
        manipulate(run, series, np.zeros((1, 3)), progress=False)
    with pytest.raises(DataError, match="differ in shape"):
        interpolate(run, series, _series(SHAPES["2D"], 2, seed=2), np.array([0.0, 1.0]), progress=False)


def test_a_folder_that_is_not_a_diffae_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        load_diffae_run(tmp_path / "missing")
    with pytest.raises(ConfigError, match="stores no readable configuration"):
        load_diffae_run(tmp_path)


def _recon_h5(run_dir: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(run_dir / "Output" / "recon.h5", "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dims", ["3D", "2D"])
def test_alpha_zero_reproduces_recon_h5_of_the_test_stage(diffae_runs, dims, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    run_dir = diffae_runs.run3d if dims == "3D" else diffae_runs.run2d
    run = load_diffae_run(run_dir, load_best=dims == "3D")  # run_mode 4 tests the best checkpoint, 3 the last
    assert run.is3d == (dims == "3D")
    recon = _recon_h5(run_dir)
    key = sorted(recon)[0]
    series = load_subject(run, key.split("/")[0], key.rsplit("/", 1)[-1])
    assert series.key == key
    out = manipulate(run, series, np.zeros((1, run.latent_dim)), progress=False)[0]  # (N, C, *spatial)
    stored = recon[key]  # (nI, nJ, nK, *spatial), channel squeezed
    mine = np.full_like(stored, np.nan)
    for (i, j, k), sample in zip(series.indices, out[:, 0].numpy(), strict=True):
        mine[i, j, k] = sample
    assert np.nanstd(stored) > 1e-3  # a real image, not a constant decode
    np.testing.assert_allclose(mine, stored, atol=2e-5, equal_nan=True)
    if dims == "2D":
        assert len(series.indices) > 1  # the 2D series holds several frames, each with its own latent
