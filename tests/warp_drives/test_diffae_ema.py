"""EMA update helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from Engineering.errors import ConfigError
from Engineering.warp_drives.diffae import ema_update


def test_ema_update_formula():
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, source, 0.9)
    for k, v in target.state_dict().items():
        assert torch.allclose(v, before[k] * 0.9 + source.state_dict()[k] * 0.1)
    assert target.weight.grad is None


def test_ema_decay_zero_copies_and_one_keeps():
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    kept = target.weight.detach().clone()
    ema_update(target, source, 1.0)
    assert torch.equal(target.weight, kept)
    ema_update(target, source, 0.0)
    assert torch.equal(target.weight, source.weight)


def test_ema_bad_decay_and_mismatched_modules():
    with pytest.raises(ConfigError, match="1.5"):
        ema_update(nn.Linear(1, 1), nn.Linear(1, 1), 1.5)
    with pytest.raises(KeyError, match="differ"):
        ema_update(nn.Linear(1, 1), nn.Sequential(nn.Linear(1, 1)), 0.5)
