"""Manipulation figures and files: frame choice, labelled grid, GIF, HDF5 tensors, staged output folder."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from Engineering.errors import ConfigError
from Engineering.outputs.latent_figures import (
    grid_figure,
    pick_frames,
    save_figure,
    staged_folder,
    write_gif,
    write_tensors,
)


def test_frames_are_spread_or_checked():
    assert pick_frames(50, None) == [0, 16, 33, 49] and pick_frames(2, None) == [0, 1]
    assert pick_frames(6, [5, 0, 5]) == [5, 0]
    with pytest.raises(ConfigError, match=r"--frames 6 is out of range; the series has frames 0..5"):
        pick_frames(6, [1, 6])


def test_grid_png_gif_and_tensors(tmp_path):
    rows = np.random.default_rng(0).random((3, 2, 8, 10))  # 3 rows, 2 frames of 8x10
    fig = grid_figure(rows[:, :2], ["input", "α = 0", "α = +1 SD"], ["frame 0", "frame 1"], "title", 1, [1, 2])
    labels = [ax.get_ylabel() for ax in fig.axes[::3]]
    assert labels == ["input", "α = 0", "α = +1 SD"] and not fig.axes[2].axison  # no |Δ| cell for the input row
    png = Image.open(save_figure(fig, tmp_path / "g.png"))
    assert png.format == "PNG" and png.width > png.height
    gif = Image.open(write_gif(rows, ["a", "b", "c"], "t", tmp_path / "g.gif"))
    assert gif.n_frames == 2
    write_tensors(tmp_path / "t.h5", {"images": rows, "alphas": np.array([0.0, 1.0])}, {"key": "1/2/3/s"})
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f["images"].dtype == np.float32 and f["images"].shape == rows.shape and f.attrs["key"] == "1/2/3/s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.gif", "g.png", "t.h5"]  # no temporary file left


def test_a_failed_staged_call_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_folder(out) as stage:
            (stage / "a.png").write_bytes(b"x")
            raise RuntimeError("decode failed")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with staged_folder(out) as stage:
        (stage / "sub").mkdir()
        (stage / "a.png").write_bytes(b"new")
    assert (out / "a.png").read_bytes() == b"new" and (out / "sub").is_dir() and len(list(tmp_path.iterdir())) == 1
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file; expected a folder"):
        with staged_folder(tmp_path / "file"):
            pass
