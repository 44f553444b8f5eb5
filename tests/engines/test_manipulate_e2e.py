"""manipulate.py on tiny trained DiffAE runs (tests/engines/conftest.py): grids, GIFs, tensors, and bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from Engineering.errors import run_guarded


def _executor():
    path = Path(__file__).resolve().parents[2] / "Executors" / "manipulate.py"
    spec = importlib.util.spec_from_file_location("_exec_manipulate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recon(run_dir: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(run_dir / "Output" / "recon.h5", "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_3d_grid_gif_and_tensors_with_alpha_zero_equal_to_recon_h5(diffae_runs, tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    recon = _recon(diffae_runs.run3d)
    key = sorted(recon)[0]
    subject = key.split("/")[0]
    args = ["--run_dir", str(diffae_runs.run3d), "--load_best", "--subjects", subject, "--direction", "index", "1",
            "--alphas", "-2", "0", "2", "--frames", "0", "5", "--out", str(tmp_path / "m"), "--no_progress"]  # fmt: skip
    assert _executor().main(args) == 0
    stem = tmp_path / "m" / f"manip_{subject}_Z1"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [f"{stem.name}{s}" for s in (".gif", ".h5", ".png")]
    with h5py.File(f"{stem}.h5", "r") as f:
        images, alphas = f["images"][()], f["alphas"][()]
        assert f.attrs["key"] == key and f.attrs["direction_label"] == "Z1" and f.attrs["direction_sd"] > 0
        assert f.attrs["ddim_decoding_steps"] == 2 and f["direction"].shape == (8,)
    assert images.shape == (3, 1, 1, 6, 32, 32) and alphas.tolist() == [-2, 0, 2]
    np.testing.assert_allclose(images[1, 0, 0], recon[key][0, 0, 0], atol=2e-5)  # α = 0: the test stage's recon
    assert np.abs(images[2] - images[1]).max() > 0  # +2 SD along Z1 changes the decode
    grid = Image.open(f"{stem}.png")
    assert grid.format == "PNG" and grid.width > 300 and grid.height > 400  # 4 rows (input + 3 α) of 3 columns
    gif = Image.open(f"{stem}.gif")
    assert gif.format == "GIF" and gif.n_frames == 6  # one GIF frame per time frame


@pytest.mark.slow
def test_2d_interpolation_runs_from_a_to_b_and_frames_move_along_a_direction(
    diffae_runs, tmp_path, monkeypatch, repo_root
):
    monkeypatch.chdir(repo_root)
    a, b = diffae_runs.patients[1], diffae_runs.patients[2]
    args = ["--run_dir", str(diffae_runs.run2d), "--between", a, b, "--steps", "3", "--ddim_steps", "1",
            "--subjects", a, "--direction", "index", "2", "--alphas", "0", "3",
            "--out", str(tmp_path / "i"), "--no_progress"]  # fmt: skip
    assert _executor().main(args) == 0
    with h5py.File(tmp_path / "i" / f"manip_{a}_Z2.h5", "r") as f:
        moved = f["images"][()]  # (2 α, 6 frames, 1, 32, 32): each frame has its own latent, moved alike
        assert f.attrs["direction_sd"] > 0  # measured on every frame's latent of the split run's emb.h5
    assert moved.shape == (2, 6, 1, 32, 32) and not np.allclose(moved[0], moved[1])
    stem = tmp_path / "i" / f"interp_{a}_{b}"
    with h5py.File(f"{stem}.h5", "r") as f:
        images, ts = f["images"][()], f["fractions"][()]
        assert f.attrs["ddim_inversion_steps"] == 1
    assert ts.tolist() == [0.0, 0.5, 1.0] and images.shape[:3] == (3, 6, 1)  # 3 steps x 6 frames of one channel
    assert not np.allclose(images[0], images[2])
    assert Image.open(f"{stem}.gif").n_frames == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--subjects", "999", "--direction", "index", "0"], "subject 999 is not in"),
        (["--subjects", "{a}", "--direction", "index", "99"], "latent index 99 is out of range; expected 0..7"),
        (["--subjects", "{a}"], "--subjects needs --direction"),
        (["--subjects", "{a}", "--direction", "index", "0", "--frames", "9"], "--frames 9 is out of range"),
        (["--between", "{a}", "{a}", "--steps", "1"], "at least 2 steps"),
        (["--subjects", "{a}", "--direction", "index", "0", "--alphas", "x"], "--alphas 'x' is not a number"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    diffae_runs, tmp_path, monkeypatch, repo_root, capsys, extra, message
):
    monkeypatch.chdir(repo_root)
    extra = [e.format(a=diffae_runs.patients[1]) for e in extra]
    args = ["--run_dir", str(diffae_runs.run3d), "--out", str(tmp_path / "m"), "--no_progress", *extra]
    assert run_guarded(_executor().main, args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imlatent: error:") and message in err and "\n" not in err
    assert not (tmp_path / "m").exists()


def test_a_run_that_is_not_a_diffae_run_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "resolved_config.yaml").write_text(
        "script: recon\nargv: []\nhparams: {}\nconfig: {}\ndatajson: {}\noverrides: {}\n"
    )
    args = ["--run_dir", str(tmp_path / "run"), "--between", "1", "2"]
    assert run_guarded(_executor().main, args) == 2
    assert "is a recon run; this needs a DiffAE run" in capsys.readouterr().err
