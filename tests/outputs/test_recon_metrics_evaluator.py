"""Evaluator rows (labels stay with their image), median_ssim and metrics.csv/.pkl writing (also for one batch)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from Engineering.errors import ConfigError, DataError
from Engineering.outputs import Evaluator, median_ssim, write_metrics
from Engineering.science.metrics import minmax, pearson

KEYS = ["1000001/20208/2_0/primary_LAX_4Ch_transverse_0", "1000002/20208/3_0/primary_LAX_4Ch_transverse_0"]
SHIPPED = {"ssim": True, "msssim": False, "nrmse": True, "psnr": True, "uqi": False, "sddiff": False}
METRICS = ["SSIM", "MSSSIM", "NRMSE", "PSNR", "UQI", "SDofDiff"]
IDS = ["SubID", "FieldID", "InstanceID", "Acq"]


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.random(shape)
    return gt, np.clip(gt + 0.05 * rng.standard_normal(shape), 0, 1)


def test_3d_rows_columns_and_values_match_skimage() -> None:
    gt, out = _pair((2, 1, 3, 16, 16))
    rows = Evaluator(SHIPPED).evaluate(gt, out, KEYS)
    assert len(rows) == 6 and list(rows[0]) == ["Channel", "Slice", *METRICS, *IDS]
    row = rows[4]  # sample 1, channel 0, slice 1
    assert (row["Channel"], row["Slice"], row["SubID"], row["InstanceID"]) == (0, 1, "1000002", "3_0")
    g, o = gt[1, 0, 1], out[1, 0, 1]
    assert row["SSIM"] == pytest.approx(structural_similarity(g, o, data_range=1))
    assert row["NRMSE"] == pytest.approx(normalized_root_mse(g, o))
    assert row["PSNR"] == pytest.approx(peak_signal_noise_ratio(g, o, data_range=1))
    assert (row["MSSSIM"], row["UQI"], row["SDofDiff"]) == (-1, -1, -1)


def test_2d_rows_have_no_slice_and_all_metrics_by_default() -> None:
    gt, out = _pair((2, 2, 16, 16))
    rows = Evaluator(None, norm4diff=True).evaluate(torch.from_numpy(gt).half(), torch.from_numpy(out), KEYS)
    assert len(rows) == 4 and list(rows[0]) == ["Channel", *METRICS, *IDS]
    assert [(r["SubID"], r["Channel"]) for r in rows] == [
        ("1000001", 0),
        ("1000001", 1),
        ("1000002", 0),
        ("1000002", 1),
    ]
    g = torch.from_numpy(gt).half().float().numpy()[0, 1]
    assert rows[1]["SDofDiff"] == pytest.approx(np.std(minmax(g) - minmax(out[0, 1])))
    assert 0.5 < rows[0]["MSSSIM"] <= 1 and 0.5 < rows[0]["UQI"] <= 1


def test_identical_images_score_perfectly() -> None:
    gt, _ = _pair((1, 1, 32, 32))
    row = Evaluator(None).evaluate(gt, gt.copy(), KEYS[:1])[0]
    assert row["SSIM"] == pytest.approx(1) and row["MSSSIM"] == pytest.approx(1) and row["UQI"] == pytest.approx(1)
    assert row["NRMSE"] == 0 and row["PSNR"] == np.inf and row["SDofDiff"] == 0


def test_blank_slices_are_skipped_and_later_rows_keep_their_labels() -> None:
    gt, out = _pair((2, 1, 3, 16, 16))
    gt[0, 0, 1] = 0
    gt[1, 0, 0] = 0
    rows = Evaluator(SHIPPED).evaluate(gt, out, KEYS)
    assert [(r["SubID"], r["Slice"]) for r in rows] == [("1000001", 0), ("1000001", 2), ("1000002", 1), ("1000002", 2)]
    assert rows[2]["SSIM"] == pytest.approx(structural_similarity(gt[1, 0, 1], out[1, 0, 1], data_range=1))


def test_pool_gives_the_same_rows_and_is_reused() -> None:
    gt, out = _pair((2, 1, 3, 16, 16))
    gt[0, 0, 0] = 0
    expected = Evaluator(SHIPPED).evaluate(gt, out, KEYS)
    with Evaluator(SHIPPED, n_calc_processes=2, mp_start_method="fork") as ev:
        first = ev.evaluate(gt, out, KEYS)
        pool = ev._pool
        second = ev.evaluate(gt, out, KEYS)
        assert pool is not None and ev._pool is pool
    assert first == expected and second == expected and ev._pool is None


def test_complex_data_get_mag_phase_and_pearson_columns() -> None:
    gt, out = _pair((1, 1, 16, 16))
    cg, co = gt * np.exp(1j * out), out * np.exp(1j * gt)
    row = Evaluator(SHIPPED).evaluate(cg, co, KEYS[:1])[0]
    mag = [f"{m}_mag" for m in METRICS]
    phase = [f"{m}_phase" for m in METRICS]
    assert list(row) == ["Channel", *mag, *phase, "Pearson_mag", "Pearson_phase", *IDS]
    assert row["Pearson_mag"] == pytest.approx(pearson(np.abs(cg[0, 0]), np.abs(co[0, 0])))
    assert row["SSIM_phase"] == pytest.approx(
        structural_similarity(np.angle(cg[0, 0]), np.angle(co[0, 0]), data_range=1)
    )


def test_fullscale_evals_add_maps() -> None:
    gt, out = _pair((1, 1, 16, 16))
    row = Evaluator(SHIPPED, store_fullscale_evals=True).evaluate(gt, out, KEYS[:1])[0]
    assert list(row)[-6:-4] == ["SSIMMAP", "Diff"]
    assert row["SSIMMAP"].shape == (16, 16)
    np.testing.assert_allclose(row["Diff"], gt[0, 0] - out[0, 0])


def test_median_ssim_2d_and_volumetric() -> None:
    gt, out = _pair((3, 1, 16, 16))
    per = [structural_similarity(gt[b, 0], out[b, 0], data_range=1) for b in range(3)]
    assert median_ssim(gt, out) == pytest.approx(np.median(per))
    gt3, out3 = _pair((2, 1, 8, 16, 16))
    vol = [structural_similarity(gt3[b, 0], out3[b, 0], data_range=1) for b in range(2)]
    assert median_ssim(torch.from_numpy(gt3), torch.from_numpy(out3)) == pytest.approx(np.median(vol))
    small = median_ssim(*_pair((1, 1, 4, 16, 16)))  # depth 4 < 7: window shrinks to 3
    assert 0 < small <= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics2use": {**SHIPPED, "lpips": True}}, r"eval.metrics2use has unknown key\(s\) \['lpips'\]"),
        ({"metrics2use": {"ssim": True}}, r"eval.metrics2use lacks key\(s\) \['msssim', 'nrmse'"),
        ({"metrics2use": {**SHIPPED, "psnr": "yes"}}, r"eval.metrics2use.psnr is 'yes'; expected true or false"),
        ({"n_calc_processes": -2}, r"eval.n_calc_processes is -2; expected 0, -1 or a positive integer"),
        ({"mp_start_method": "threads"}, r"mp_start_method 'threads'; expected one of"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Evaluator(**kwargs)


@pytest.mark.parametrize(
    ("gt_shape", "out_shape", "keys", "message"),
    [
        ((1, 1, 8, 8), (1, 1, 8, 9), KEYS[:1], r"gt \(1, 1, 8, 8\) vs out \(1, 1, 8, 9\)"),
        ((1, 8, 8), (1, 8, 8), KEYS[:1], r"shape \(1, 8, 8\); expected \(B, C, H, W\) or \(B, C, D, H, W\)"),
        ((1, 1, 8, 8), (1, 1, 8, 8), KEYS, r"got 2 keys for a batch of 1"),
        ((1, 1, 8, 8), (1, 1, 8, 8), ["1000001/2_0/x"], r"metrics key '1000001/2_0/x'; expected '<subID>/"),
    ],
)
def test_bad_batches(gt_shape: tuple, out_shape: tuple, keys: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Evaluator(SHIPPED).evaluate(np.ones(gt_shape), np.ones(out_shape), keys)


def test_images_too_small_for_ssim_score_nan_instead_of_failing() -> None:
    rows = Evaluator(SHIPPED).evaluate(np.full((1, 1, 8, 2), 0.5), np.full((1, 1, 8, 2), 0.4), KEYS[:1])
    assert len(rows) == 1 and np.isnan(rows[0]["SSIM"]) and rows[0]["PSNR"] > 0


def test_volumes_with_short_depth_use_the_mean_of_slice_ssims() -> None:
    gt, out = _pair((1, 1, 2, 16, 16))
    value = median_ssim(gt, out)
    assert np.isfinite(value) and 0 < value <= 1


def test_write_metrics_one_batch_is_enough_and_ids_stay_strings(tmp_path: Path) -> None:
    gt, out = _pair((1, 1, 2, 16, 16))
    keys = ["0001234/20208/2_0/primary_LAX_4Ch_transverse_0"]
    write_metrics(tmp_path / "Output", Evaluator(SHIPPED).evaluate(gt, out, keys))
    csv_text = (tmp_path / "Output" / "metrics.csv").read_text().splitlines()
    assert csv_text[0] == "Channel,Slice,SSIM,MSSSIM,NRMSE,PSNR,UQI,SDofDiff,SubID,FieldID,InstanceID,Acq"
    assert csv_text[1].endswith(",0001234,20208,2_0,primary_LAX_4Ch_transverse_0") and len(csv_text) == 3
    with open(tmp_path / "Output" / "metrics.pkl", "rb") as fh:
        frame = pickle.load(fh)
    assert isinstance(frame, pd.DataFrame) and frame.shape == (2, 12)
    assert frame.SubID.dtype == object and frame.SubID.tolist() == ["0001234", "0001234"]
    assert sorted(p.name for p in (tmp_path / "Output").iterdir()) == ["metrics.csv", "metrics.pkl"]


def test_write_metrics_without_rows_writes_nothing_and_mixed_rows_fail(tmp_path: Path) -> None:
    write_metrics(tmp_path, [])
    assert not list(tmp_path.iterdir())
    with pytest.raises(DataError, match=r"metrics row 1 has columns \['Channel'\]; expected \['Channel', 'Slice'\]"):
        write_metrics(tmp_path, [{"Channel": 0, "Slice": 0}, {"Channel": 0}])
