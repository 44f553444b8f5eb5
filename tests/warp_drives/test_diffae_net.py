"""DiffAE network: shapes in 2D/3D, conditioning paths, depth handling, constructor validation."""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.diffae import build_diffae_net
from Engineering.warp_drives.diffae.blocks import AttentionBlock, ResBlock
from tests.tiny_diffae import CASES, tiny_config


def _perturb(net: torch.nn.Module) -> None:
    """Make the zero-initialised output layers non-zero so that every path matters."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))


@pytest.fixture(scope="module", params=CASES, ids=["2d", "3d"])
def net_and_cfg(request):
    cfg = tiny_config(*request.param)
    net = build_diffae_net(cfg).eval()
    _perturb(net)
    return net, cfg


def test_forward_and_encode_shapes(net_and_cfg):
    net, cfg = net_and_cfg
    x = torch.rand(2, 1, *cfg.input_shape) * 2 - 1
    z = net.encode(x)
    assert z.shape == (2, 16)
    with torch.no_grad():
        eps = net(x, torch.tensor([3, 900]), cond=z)
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_cond_none_encodes_x_start(net_and_cfg):
    net, cfg = net_and_cfg
    x_start, x_t = torch.rand(2, 1, *cfg.input_shape), torch.randn(2, 1, *cfg.input_shape)
    t = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(net(x_t, t, x_start=x_start), net(x_t, t, cond=net.encode(x_start)))
        assert not torch.equal(net(x_t, t, cond=torch.zeros(2, 16)), net(x_t, t, cond=torch.ones(2, 16)))
    with pytest.raises(ValueError, match="cond"):
        net(x_t, t)


def test_fresh_net_predicts_zero():
    """The zero-initialised output conv makes a fresh denoiser predict ε̂ = 0."""
    net = build_diffae_net(tiny_config(False, (32, 32)))
    assert not net(torch.randn(1, 1, 32, 32), torch.tensor([5]), cond=torch.randn(1, 16)).any()


def test_gradients_reach_encoder():
    net = build_diffae_net(tiny_config(False, (32, 32)))
    _perturb(net)
    x = torch.randn(1, 1, 32, 32)
    net(x, torch.tensor([5]), x_start=x).pow(2).mean().backward()
    assert net.encoder.out[3].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("keep_depth, bottleneck_depth", [(True, 8), (False, 2)])
def test_depth_resampling_is_a_setting(keep_depth, bottleneck_depth):
    shallow = {"net_ch_mult": [1, 1, 1], "net_enc_channel_mult": [1, 1], "net_attn": []}
    cfg = tiny_config(True, (8, 8, 8), keep_depth=keep_depth, **shallow)
    net = build_diffae_net(cfg)
    seen = []
    net.middle_block.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        out = net(torch.randn(1, 1, 8, 8, 8), torch.tensor([0]), cond=torch.zeros(1, 16))
    assert seen[0][2:] == (bottleneck_depth, 2, 2) and out.shape == (1, 1, 8, 8, 8)


def test_resblock_validation_messages():
    with pytest.raises(ConfigError, match="emb_channels"):
        ResBlock(8, dims=2)
    with pytest.raises(ConfigError, match="up and down"):
        ResBlock(8, dims=2, use_condition=False, up=True, down=True)
    with pytest.raises(ConfigError, match="dims must be 1, 2 or 3, got 4"):
        ResBlock(8, dims=4, use_condition=False)
    with pytest.raises(ConfigError, match="dropout"):
        ResBlock(8, dims=2, emb_channels=4, cond_channels=4, dropout=1.5)
    with pytest.raises(ConfigError, match="-1"):
        AttentionBlock(-1)


def test_attention_is_identity_at_init_and_preserves_shape():
    block = AttentionBlock(8, group_limit=8)
    x = torch.randn(2, 8, 3, 4, 4)
    assert torch.equal(block(x), x)
