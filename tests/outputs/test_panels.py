"""Reconstruction panels: file per series, sanitised names, 2D/3D shapes, nothing written outside the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from Engineering.outputs.panels import (
    panel_figure,
    panel_keys_to_write,
    panel_name,
    render_panel,
    write_recon_panel,
    write_recon_panels,
)

KEY = "1000011/20208/2_0/primary_LAX_4Ch_transverse_0"
GAP, MIN_TILE = 2, 96


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 1, shape)
    return gt, np.clip(gt + rng.normal(0, 0.05, shape), 0, 1)


def _mode(path: Path) -> str:
    with Image.open(path) as im:
        return im.mode


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


CASES = [
    # (sample shape, expected column titles)
    pytest.param((1, 6, 16, 16), ["slice/time 0", "slice/time 2", "slice/time 3", "slice/time 5"], id="3d-4-slices"),
    pytest.param((2, 3, 32, 32), ["slice/time 0", "slice/time 1", "slice/time 2"], id="3d-fewer-frames-than-slices"),
    pytest.param((1, 16, 16), ["sample 0"], id="2d-one-column"),
]


@pytest.mark.parametrize(("shape", "titles"), CASES)
def test_panel_is_written_labelled(tmp_path, shape, titles):
    gt, recon = _pair(shape)
    path = write_recon_panel(tmp_path / "panels", KEY, gt, recon)
    assert path == tmp_path / "panels" / "1000011_20208_2_0_primary_LAX_4Ch_transverse_0.png"
    assert _mode(path) == "RGB"
    assert _files(tmp_path) == {path}  # no temporary file left behind
    frames = gt[0] if gt.ndim == 4 else gt[:1]
    index_name = "slice/time" if gt.ndim == 4 else "sample"
    fig = panel_figure(frames, frames, KEY, 4, index_name)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in axes[: len(titles)]] == titles
    assert [ax.get_ylabel() for ax in axes[:: len(titles)]] == ["input", "reconstruction", "|difference|"]
    assert fig.get_suptitle() == "subject 1000011 · field 20208 · instance 2_0 · primary_LAX_4Ch_transverse_0"
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 3


def test_rows_are_clipped_input_recon_and_self_scaled_difference():
    gt = np.full((2, 4, 4), 0.5)
    recon = gt.copy()
    recon[1] = 2.0  # out of range: clipped to 1 in the recon row
    recon[0, 0, 0] = np.nan  # NaN counts as 0
    img = render_panel(gt, recon, n_slices=2)
    tile = MIN_TILE
    assert img[0, 0] == 128  # input 0.5
    assert img[tile + GAP, tile + GAP] == 255  # recon of frame 1, clipped
    diff_row = img[2 * (tile + GAP) :]
    assert diff_row[:, tile + GAP :].max() == 255  # the largest |diff| (1.5) maps to white
    assert diff_row[0, 0] == round(0.5 / 1.5 * 255)  # own scale: 0.5 of 1.5


def test_slices_are_evenly_spaced():
    frames = np.arange(9, dtype=float)[:, None, None] * np.ones((9, 2, 2)) / 8  # frame f has value f/8
    img = render_panel(frames, frames, n_slices=3)
    cols = [img[0, c * (MIN_TILE + GAP)] for c in range(3)]
    assert cols == [0, round(4 / 8 * 255), 255]  # frames 0, 4, 8


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (KEY, "1000011_20208_2_0_primary_LAX_4Ch_transverse_0.png"),
        ("../../x", "_.._x_"),
        ("..", "panel_"),
        ("/etc/passwd", "_etc_passwd_"),
        ("1/2/3/a b\\c:d", "1_2_3_a_b_c_d_"),
        ("", "panel_"),
    ],
)
def test_panel_name_is_sanitised(key, expected):
    name = panel_name(key)
    assert name.startswith(expected)
    assert name.endswith(".png") and not name.startswith(".")
    assert all(ch.isalnum() or ch in "._-" for ch in name)


def test_sanitised_names_of_different_keys_do_not_collide():
    assert panel_name("1/2/3/a b") != panel_name("1/2/3/a_b")
    assert panel_name("a/b/c/d") == "a_b_c_d.png" != panel_name("a_b_c_d")


@pytest.mark.parametrize("key", ["../../x", "../../../tmp/evil/0_0/s", "/abs/olute/2_0/x", "..\\..\\x", "./.hidden"])
def test_crafted_keys_never_write_outside_the_panel_folder(tmp_path, key):
    out = tmp_path / "run" / "Output" / "panels"
    gt, recon = _pair((1, 2, 8, 8))
    path = write_recon_panel(out, key, gt, recon)
    assert path.parent == out and not path.name.startswith(".")
    assert _files(tmp_path) == {path}


def test_bad_shapes_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"input shape \(1, 4, 4\) != reconstruction shape \(1, 4, 5\)"):
        write_recon_panel(tmp_path, KEY, np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match=r"expected \(C, D, H, W\) for 3D or \(C, H, W\) for 2D"):
        write_recon_panel(tmp_path, KEY, np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="n_slices=0; expected at least 1"):
        render_panel(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), n_slices=0)
    assert not _files(tmp_path)


def test_panel_keys_to_write_matches_subjects_exactly():
    keys = ["12/f/2_0/s", "123/f/2_0/s", "1/f/2_0/s"]
    assert panel_keys_to_write(keys, {"12"}) == ["12/f/2_0/s"]  # exact match; the original tested substrings
    assert panel_keys_to_write(keys, None) == sorted(keys)
    assert panel_keys_to_write(keys, set()) == []


def test_write_recon_panels_from_dense_recon_h5_arrays(tmp_path):
    gt3, recon3 = _pair((1, 1, 1, 5, 8, 8))  # recon.h5 layout: (nI, nJ, nK, D, H, W), channel squeezed
    gt2 = np.full((1, 3, 1, 8, 8), np.nan)  # 2D series of 3 slots, two stored: (nI, nJ, nK, H, W)
    gt2[0, 0], gt2[0, 2] = 0.2, 0.8
    keys = {"7/f/2_0/vol": (gt3, recon3), "8/f/2_0/img": (gt2, gt2.copy()), "9/f/2_0/other": (gt3, recon3)}
    written = write_recon_panels(
        tmp_path,
        {k: r for k, (_, r) in keys.items()},
        {k: g for k, (g, _) in keys.items() if k != "9/f/2_0/other"} | {"9/f/2_0/other": gt3},
        is3D=True,
        subjects={"7", "9"},
    )
    assert [p.name for p in written] == ["7_f_2_0_vol.png", "9_f_2_0_other.png"]
    (two_d,) = write_recon_panels(tmp_path / "2d", {"8/f/2_0/img": gt2}, {"8/f/2_0/img": gt2}, is3D=False)
    with Image.open(written[0]) as four, Image.open(two_d) as two:
        assert four.mode == two.mode == "RGB"
        assert four.size[0] > two.size[0]  # 4 slice columns against one column per stored 2D sample (2)


def test_write_recon_panels_rejects_wrong_dimensionality(tmp_path):
    dense = np.zeros((1, 1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"dense result of shape \(1, 1, 1, 8, 8\) does not hold 3D samples"):
        write_recon_panels(tmp_path, {"1/f/2_0/s": dense}, {"1/f/2_0/s": dense}, is3D=True)
    empty = np.full((1, 1, 1, 8, 8), np.nan)
    with pytest.raises(ValueError, match="holds no stored sample"):
        write_recon_panels(tmp_path, {"1/f/2_0/s": empty}, {"1/f/2_0/s": empty}, is3D=False)
