"""Losses: masked/channel-weighted recon losses, SSIM losses, lossID and class mapping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from Engineering.configuration.run_config import RunConfig
from Engineering.errors import ConfigError
from Engineering.science.losses import (
    ChannelVarWeightedLoss,
    MaskedReconLoss,
    build_custom_loss,
    build_engine_loss,
    ms_ssim,
    parse_loss_params,
    ssim,
)


def test_masked_loss_modes() -> None:
    x = torch.zeros(2, 1, 2, 2)
    recon = torch.ones(2, 1, 2, 2)
    mask = torch.zeros_like(x)
    mask[:, :, 0, 0] = 1
    assert torch.equal(MaskedReconLoss("l1", "0")(recon, x, mask), torch.tensor([1.0, 1.0]))
    assert torch.equal(MaskedReconLoss("mse", 1)(2 * recon, x, mask), torch.tensor([20.0, 20.0]))  # 4 + 16
    with pytest.raises(ConfigError, match="loss_fn='bce' is not supported; valid values: mse, mae, l1"):
        MaskedReconLoss("bce")
    with pytest.raises(ConfigError, match="mode='2' is not supported; valid values: 0, 1"):
        MaskedReconLoss("l1", "2")


def test_channel_var_weighted_loss_is_finite_for_one_channel() -> None:
    """Population variance (unlike the original), so a single channel gives weights 1 (no NaN)."""
    x, recon = torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    assert torch.equal(ChannelVarWeightedLoss("l1")(recon, x), torch.tensor([9.0, 9.0]))
    target = torch.stack([torch.zeros(3, 3), torch.full((3, 3), 2.0)]).unsqueeze(0)  # (1, 2, 3, 3), var 1
    assert torch.allclose(ChannelVarWeightedLoss("mse")(torch.zeros_like(target), target), torch.tensor([2.0 * 36]))


@pytest.mark.parametrize("shape", [(2, 1, 24, 24), (2, 1, 12, 16, 16)])
def test_ssim_identity_and_loss_direction(shape: tuple) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape)
    assert torch.isclose(ssim(x, x), torch.tensor(1.0))
    loss = build_engine_loss(4)
    assert loss(x, x).abs() < 1e-6 and loss(torch.rand(shape), x) > 0.5  # 1 − SSIM: lower is better


def test_ms_ssim_needs_large_inputs_and_is_one_on_identity() -> None:
    with pytest.raises(ValueError, match="every spatial side > 160"):
        ms_ssim(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    x = torch.rand(1, 1, 176, 176)
    assert torch.isclose(ms_ssim(x, x), torch.tensor(1.0), atol=1e-5)


def test_engine_loss_ids(tmp_path, monkeypatch) -> None:
    assert isinstance(build_engine_loss(0), nn.L1Loss) and isinstance(build_engine_loss(2), nn.SmoothL1Loss)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch cache: no LPIPS trunk weights
    with pytest.raises(ConfigError, match=r"--lossID -2 \(LPIPS, trunk alex\) needs torchvision's"):
        build_engine_loss(-2)
    with pytest.raises(ConfigError, match=r"--lossID -1 needs the weights .* --ploss_weights PATH"):
        build_engine_loss(-1, RunConfig.build("recon", {"ploss_weights": str(tmp_path / "none.pth")}, {}))
    with pytest.raises(ConfigError, match="--lossID 5 is unknown; valid: -1 perceptual loss, -2 LPIPS, 0 L1, 1 MSE"):
        build_engine_loss(5)


def test_custom_loss_class_mapping_and_params() -> None:
    loss = build_custom_loss("Engineering.Science.losses.masked_loss.MaskedReconLoss", {"loss_fn": "l1", "mode": "1"})
    assert isinstance(loss, MaskedReconLoss) and loss.mode == "1"
    assert isinstance(
        build_custom_loss("Engineering.science.losses.ChannelVarWeightedLoss", ""), ChannelVarWeightedLoss
    )
    assert parse_loss_params("loss_fn: l1, mode: 0") == {"loss_fn": "l1", "mode": "0"}
    with pytest.raises(ConfigError, match="'torch.nn.L1Loss' is not an Engineering"):
        build_custom_loss("torch.nn.L1Loss", {})
    with pytest.raises(ConfigError, match="do not fit MaskedReconLoss"):
        build_custom_loss("MaskedReconLoss", {"beta": 1})
