"""The start-of-run line that says how the data's shape becomes the network's input shape."""

from __future__ import annotations

import logging

import pytest

from Engineering.data.datamodule import H5DataModule
from Engineering.data.demo import write_demo_dataset
from Engineering.transforms.spatial import describe_fit
from tests.data.test_datamodule import FRAMES, SIZE, _hparams


def test_demo_volumes_in_the_default_shape_are_mostly_padding():
    line, share = describe_fit((50, 32, 32), (56, 128, 128))
    assert line == (
        "data 50×32×32 → network input 56×128×128: D pad 50→56, H pad 32→128, W pad 32→128; "
        "94.4% of the input voxels are added padding"
    )
    assert share == pytest.approx(1 - 50 * 32 * 32 / (56 * 128 * 128))


def test_crop_pad_and_keep_per_axis_with_a_channel_axis():
    line, share = describe_fit((1, 50, 160, 100), (50, 128, 128))
    assert "data 1×50×160×100 → network input 50×128×128: D kept, H crop 160→128, W pad 100→128;" in line
    assert share == pytest.approx(1 - 100 / 128)


def test_zoom_comes_first_and_2d_axes():
    line, share = describe_fit((64, 64), (128, 128), interp_fact=2)
    assert line.startswith("data 64×64 zoomed ×2 to 128×128 → network input 128×128: H kept, W kept; 0.0%")
    assert share == 0


def test_croppad_off_says_so():
    line, share = describe_fit((40, 40), (32, 32), croppad=False)
    assert line.endswith("no crop/pad (--croppad off), the sizes differ") and share == 0


@pytest.mark.parametrize("input_shape, warned", [(f"{FRAMES},20,20", False), ("56,128,128", True)])
def test_datamodule_reports_once_and_warns_on_mostly_padding(tmp_path, caplog, input_shape, warned):
    demo = write_demo_dataset(tmp_path / "demo", n_patients=4, frames=FRAMES, size=SIZE, n_folds=2)
    dm = H5DataModule.from_config(_hparams(demo.datadir, input_shape=input_shape), merge_train_val=False)
    with caplog.at_level(logging.INFO, logger="imlatent"):
        dm.setup("fit")
        dm.setup("test")
    lines = [r for r in caplog.records if r.getMessage().startswith("Input shapes")]
    assert len(lines) == 1
    assert f"first train sample): data {FRAMES}×{SIZE}×{SIZE} → network input" in lines[0].getMessage()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "zero padding" in r.getMessage()]
    assert bool(warnings) == warned
