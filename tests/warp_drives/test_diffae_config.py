"""DiffAEConfig: template defaults, override order and validation messages."""

from __future__ import annotations

import pytest

from Engineering.errors import ConfigError
from Engineering.warp_drives.diffae import DiffAEConfig

RUN = dict(
    is3D=True, in_channels=1, out_channels=1, input_shape=(50, 128, 128), latent_dim=128, batch_size=2, fp16=True
)
YAML = {"net_ch": 32, "sample_every_batches": 1000, "sample_size": 4}


def test_default_3d_resolution():
    cfg = DiffAEConfig.from_run(**RUN, yaml_overrides=YAML)
    assert (cfg.img_size, cfg.n_dims, cfg.group_norm_limit, cfg.net_ch) == (128, 3, 32, 32)
    assert (cfg.embed_channels, cfg.style_ch, cfg.sample_size) == (128, 128, 4)
    assert (cfg.T, cfg.T_eval, cfg.T_inv, cfg.T_step) == (1000, 20, 20, 20)
    assert cfg.net_ch_mult == (1, 1, 2, 3, 4) and cfg.net_enc_channel_mult == (1, 1, 2, 3, 4, 4)
    assert (cfg.ema_decay, cfg.grad_clip, cfg.lr, cfg.dropout, cfg.keep_depth) == (0.9999, 1.0, 1e-4, 0.1, True)


def test_yaml_overrides_and_test_with_teval():
    yaml = {**YAML, "T_eval": 50, "T_inv": 5, "T_step": 5, "net_ch_mult": [1, 2, 2, 2, 2], "dropout": 0}
    cfg = DiffAEConfig.from_run(**RUN, yaml_overrides=yaml)
    assert (cfg.T_inv, cfg.T_step) == (50, 50)  # test_with_TEval wins over the YAML
    assert cfg.net_ch_mult == (1, 2, 2, 2, 2) and cfg.dropout == 0.0
    cfg = DiffAEConfig.from_run(**RUN, yaml_overrides=yaml, test_with_TEval=False)
    assert (cfg.T_inv, cfg.T_step) == (5, 5)


def test_group_norm_limit_follows_net_ch_and_img_size_all_axes():
    cfg = DiffAEConfig.from_run(**{**RUN, "input_shape": (160, 64, 64)}, yaml_overrides={"net_ch": 8})
    assert (cfg.group_norm_limit, cfg.img_size) == (8, 160)


def test_unknown_key_names_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown model.DiffAE key 'net_chh'.*valid keys: .*net_ch"):
        DiffAEConfig.from_run(**RUN, yaml_overrides={"net_chh": 32})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"net_ch": "wide"}, r"net_ch must be an integer, got 'wide'"),
        ({"net_attn": 16}, r"net_attn must be a list of integers, got 16"),
        ({"keep_depth": 1}, r"keep_depth must be true or false, got 1"),
        ({"T_eval": 999}, r"exactly 999 DDIM steps"),
        ({"img_size": 64}, r"unknown model.DiffAE key 'img_size'"),
        ({"net_enc_pool": "max"}, r"net_enc_pool 'max'"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        DiffAEConfig.from_run(**RUN, yaml_overrides=overrides)


@pytest.mark.parametrize("latent_dim", [None, -1, 0])
def test_latent_dim_must_be_positive(latent_dim):
    with pytest.raises(ConfigError, match=f"positive integer model.latent_dim, got {latent_dim}"):
        DiffAEConfig.from_run(**{**RUN, "latent_dim": latent_dim}, yaml_overrides=YAML)


@pytest.mark.parametrize(
    "is3D, shape, message",
    [
        (True, (128, 128), "must have 3 positive sizes"),
        (False, (50, 128, 128), "must have 2"),
        (False, (40, 40), "multiple of 16 .* at least 32 .*nearest valid shapes: 32,32 or 48,48"),
    ],
)
def test_bad_input_shape(is3D, shape, message):
    with pytest.raises(ConfigError, match=message):
        DiffAEConfig.from_run(**{**RUN, "is3D": is3D, "input_shape": shape}, yaml_overrides=YAML)


def test_depth_needs_no_divisibility_only_when_kept():
    DiffAEConfig.from_run(**{**RUN, "input_shape": (7, 32, 32)}, yaml_overrides=YAML)
    with pytest.raises(ConfigError, match="axis 0 \\(7\\)"):
        DiffAEConfig.from_run(**{**RUN, "input_shape": (7, 32, 32)}, yaml_overrides={**YAML, "keep_depth": False})
