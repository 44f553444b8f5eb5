"""Spatial and intensity transforms against hand-computed values, plus the golden DiffAE normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from Engineering.errors import ConfigError, DataError
from Engineering.transforms import (
    EPS,
    ComplexModeConverter,
    CropOrPad,
    Grey2RGB,
    IntensityNorm,
    Interpolate,
    RandomHorizontalFlip,
    ToTensor,
    TransformOptions,
    ZScoreNorm,
    build_transforms,
)


def _sample(data, **extra):
    return {"inp": {"data": data, **extra}, "key": "p/f/i/primary", "indices": (0, 0, 0)}


X = np.array([[2.0, 4.0], [6.0, 10.0]], dtype=np.float32)


@pytest.mark.parametrize(
    ("norm_type", "extra", "expected"),
    [
        ("minmax", {}, (X - 2) / (8 + EPS)),
        ("divbymax", {}, X / (10 + EPS)),
        ("minmaxvol", {"volmin": 0.0, "volmax": 20.0}, X / (20 + EPS)),
        ("divbymaxvol", {"volmin": 0.0, "volmax": 40.0}, X / (40 + EPS)),
        ("minmaxvol", {}, (X - 2) / (8 + EPS)),  # no attributes: faithful per-sample fallback
    ],
)
def test_intensity_norm(norm_type, extra, expected):
    out = IntensityNorm(norm_type)(_sample(X.copy(), **extra))["inp"]["data"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_intensity_norm_float64_attributes_stay_float32():
    out = IntensityNorm("minmaxvol")(_sample(X.copy(), volmin=np.float64(0), volmax=np.float64(10)))
    assert out["inp"]["data"].dtype == np.float32


def test_intensity_norm_unknown_type():
    with pytest.raises(ConfigError, match=r"IntensityNorm type 'maxabs' is unknown; expected one of minmax, divbymax"):
        IntensityNorm("maxabs")


def test_zscore_minmaxvol_bit_exact_order_of_operations():
    x = torch.tensor([[[3.0, 7.0], [1.0, 100.0]]])  # (1, 2, 2)
    out = ZScoreNorm((0.5,), (0.5,), "minmaxvol")(_sample(x.clone(), volmin=0.0, volmax=4095.0))["inp"]["data"]
    u = (x - x.min()) / (x.max() - x.min() + EPS)
    assert torch.equal(out, (u - 0.5) / 0.5)
    assert out.min() == -1 and out.max() == pytest.approx(1, abs=1e-6)  # vol attributes ignored (faithful)


def test_zscore_numeric_empty_and_divbymax_prenorm():
    x = torch.tensor([[2.0, 4.0]])
    assert torch.allclose(ZScoreNorm((1.0,), (2.0,), "2")(_sample(x.clone()))["inp"]["data"], torch.tensor([[0, 0.5]]))
    assert torch.allclose(ZScoreNorm((1.0,), (2.0,), "")(_sample(x.clone()))["inp"]["data"], torch.tensor([[0.5, 1.5]]))
    out = ZScoreNorm((0.0,), (1.0,), "divbymax")(_sample(x.clone()))["inp"]["data"]
    assert torch.allclose(out, x / (4 + EPS))


def test_zscore_per_channel():
    x = torch.ones(2, 2, 2)
    out = ZScoreNorm((0.0, 1.0), (1.0, 2.0), "")(_sample(x))["inp"]["data"]
    assert torch.equal(out[0], torch.ones(2, 2)) and torch.equal(out[1], torch.zeros(2, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": (0.5,), "std": (0.0,), "prenorm": ""}, r"zscore_std=0.0 contains 0"),
        ({"mean": (0.5,), "std": (0.5,), "prenorm": "maxabs"}, r"zscore_prenorm 'maxabs' is unknown; expected empty"),
    ],
)
def test_zscore_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ZScoreNorm(**kwargs)


def test_zscore_empty_mean_string_is_config_error():
    with pytest.raises(ConfigError, match=r"zscore_mean is empty; expected comma-separated numbers"):
        build_transforms(TransformOptions(norm_type="zscore", zscore_mean="", zscore_std="0.5", input_shape=(4, 4, 4)))


def test_crop_or_pad_split_and_channel_axis():
    x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    out = CropOrPad((2, 6))(_sample(x))["inp"]["data"]
    assert out.shape == (2, 6)
    np.testing.assert_array_equal(out[:, 0], [0, 0])  # pad 3: 1 before, 2 after
    np.testing.assert_array_equal(out[:, 1:4], x[1:3])  # crop 5→2 starts at floor(3/2)=1
    chan = CropOrPad((2, 6))(_sample(np.ones((4, 5, 3), np.float32)))["inp"]["data"]
    assert chan.shape == (4, 2, 6)


def test_crop_or_pad_zero_keeps_every_axis():
    out = CropOrPad((0, 0, 0))(_sample(np.ones((3, 5, 7), np.float32)))["inp"]["data"]
    assert out.shape == (3, 5, 7)


def test_crop_or_pad_rank_mismatch():
    with pytest.raises(DataError, match=r"sample 'p/f/i/primary' has shape \(2, 3, 4, 5\) but input_shape \(4, 4\)"):
        CropOrPad((4, 4))(_sample(np.ones((2, 3, 4, 5), np.float32)))


def test_interpolate_zooms_all_axes():
    out = Interpolate(2.0)(_sample(np.ones((2, 3, 4), np.float32), mask=np.ones((2, 3, 4), np.float32)))
    assert out["inp"]["data"].shape == (4, 6, 8) and out["inp"]["mask"].shape == (4, 6, 8)


def test_to_tensor_channel_rule():
    assert ToTensor(2)(_sample(np.ones((4, 5), np.float32)))["inp"]["data"].shape == (1, 4, 5)
    assert ToTensor(2)(_sample(np.ones((3, 4, 5), np.float32)))["inp"]["data"].shape == (3, 4, 5)
    assert ToTensor(3)(_sample(np.ones((3, 4, 5), np.float32)))["inp"]["data"].shape == (1, 3, 4, 5)


def test_grey2rgb_modes():
    x = torch.full((1, 2, 2), 3.0)
    assert torch.equal(Grey2RGB(0)(_sample(x))["inp"]["data"][:, 0, 0], torch.tensor([0.0, 3.0, 0.0]))
    assert torch.equal(Grey2RGB(1)(_sample(x))["inp"]["data"][:, 0, 0], torch.tensor([3.0, 3.0, 3.0]))
    noisy = Grey2RGB(2)(_sample(x))["inp"]["data"]
    assert noisy.shape == (3, 2, 2) and noisy[[0, 2]].abs().max() <= 0.0078125
    with pytest.raises(ConfigError, match=r"grey2RGB=5 is invalid"):
        Grey2RGB(5)


def test_complex_modes_and_inverse():
    z = torch.tensor([[3 + 4j, -1 + 0j]], dtype=torch.complex64)
    assert torch.allclose(ComplexModeConverter(1).convert(z), torch.tensor([[5.0, 1.0]]))
    assert torch.allclose(ComplexModeConverter(2).convert(z), torch.tensor([[3.0, -1.0]]))
    assert torch.allclose(ComplexModeConverter(6).convert(z), torch.tensor([[4.0, 0.0]]))
    for fwd, inv in ((3, -3), (4, -4)):
        two = ComplexModeConverter(fwd).convert(z)
        assert two.shape == (2, 2)
        assert torch.allclose(ComplexModeConverter(inv).convert(two), z, atol=1e-6)
    with pytest.raises(ConfigError, match=r"complex_mode=7 is invalid"):
        ComplexModeConverter(7)


def test_flip_moves_mask_with_data():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = RandomHorizontalFlip(1.0)(_sample(x, mask=x.copy()))
    np.testing.assert_array_equal(out["inp"]["data"], x[:, ::-1])
    np.testing.assert_array_equal(out["inp"]["mask"], x[:, ::-1])
    same = RandomHorizontalFlip(0.0)(_sample(x.copy()))
    np.testing.assert_array_equal(same["inp"]["data"], x)


def test_augmentation_probability_is_product():
    torch.manual_seed(0)
    train, evaluate = build_transforms(
        TransformOptions(norm_type="minmax", croppad=False, is3D=False, p_augment=0.5, p_aug_horflip=0.5)
    )
    x = np.array([[0.0, 1.0]], dtype=np.float32)
    flips = sum(bool(train(_sample(x.copy()))["inp"]["data"][0, 0, 0] > 0.5) for _ in range(400))
    assert 60 < flips < 140  # expectation 100 = 400 * 0.25
    assert all(evaluate(_sample(x.copy()))["inp"]["data"][0, 0, 0] == 0 for _ in range(20))


def test_options_validation():
    with pytest.raises(ConfigError, match=r"norm_type 'foo' is unknown; expected one of zscore, minmax"):
        TransformOptions(norm_type="foo")
    with pytest.raises(ConfigError, match=r"input_shape=50,128,128 has 3 entries; expected 2 for is3D=0"):
        TransformOptions(input_shape=(50, 128, 128), is3D=False)


def test_build_chain_order():
    train, evaluate = build_transforms(
        TransformOptions(
            norm_type="zscore",
            zscore_mean="0.5",
            zscore_std="0.5",
            zscore_prenorm="minmaxvol",
            input_shape=(4, 8, 8),
            interp_fact=2,
            grey2RGB=1,
            is_complexDS=True,
            complex_mode=1,
        )
    )
    names = [type(t).__name__ for t in evaluate.transforms]
    assert names == ["Interpolate", "CropOrPad", "ToTensor", "ZScoreNorm", "Grey2RGB", "ComplexModeConverter"]
    assert type(train.transforms[0]).__name__ == "RandomApply"
