"""Checkpoints carry the run's configuration and architecture; a checkpoint whose network differs is refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from Engineering.configuration.stored import CHECKPOINT_CONFIG_KEY
from Engineering.engines.stored_config import (
    ARCHITECTURE_KEY,
    StoreRunConfig,
    architecture_mismatch,
    check_checkpoint_fits,
)
from Engineering.errors import CheckpointError


class TinyEngine(nn.Module):
    """Stands in for an engine: a network whose width is its architecture, plus the shape-flexible x_T."""

    def __init__(self, net_ch: int, latent_dim: int = 4, x_len: int = 2) -> None:
        super().__init__()
        self.net = nn.Linear(latent_dim, net_ch)
        self.register_buffer("x_T", torch.zeros(x_len))
        self.arch = {"net_ch": net_ch, "latent_dim": latent_dim, "net_ch_mult": (1, 2), "input_shape": [6, 32, 32]}

    def architecture(self) -> dict[str, Any]:
        return dict(self.arch)


def _checkpoint(path: Path, engine: TinyEngine, with_architecture: bool = True) -> Path:
    ckpt: dict[str, Any] = {"state_dict": engine.state_dict()}
    if with_architecture:
        StoreRunConfig({"script": "diffae"}).on_save_checkpoint(None, engine, ckpt)
    torch.save(ckpt, path)
    return path


def test_every_checkpoint_carries_plain_config_and_architecture(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "last.ckpt", TinyEngine(8))
    ckpt = torch.load(path, weights_only=True)  # plain data: no code is unpickled
    assert ckpt[CHECKPOINT_CONFIG_KEY] == {"script": "diffae"}
    assert ckpt[ARCHITECTURE_KEY] == {"net_ch": 8, "latent_dim": 4, "net_ch_mult": [1, 2], "input_shape": [6, 32, 32]}


def test_architecture_mismatch_names_setting_checkpoint_value_and_asked_value() -> None:
    stored = {"net_ch": 8, "latent_dim": 4, "net_ch_mult": [1, 2], "input_shape": [6, 32, 32]}
    assert (
        architecture_mismatch(stored, {**stored, "net_ch": 64})
        == "the checkpoint has net_ch 8, this command asks for 64"
    )
    both = architecture_mismatch(stored, {**stored, "net_ch_mult": (1, 1), "input_shape": [6, 64, 64], "new": 1})
    assert both == (
        "the checkpoint has net_ch_mult 1,2, this command asks for 1,1; "
        "the checkpoint has input_shape 6,32,32, this command asks for 6,64,64"
    )
    assert architecture_mismatch(stored, {**stored, "net_ch_mult": (1, 2)}) is None


def test_changed_network_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "last.ckpt", TinyEngine(8))
    with pytest.raises(CheckpointError) as err:
        check_checkpoint_fits(TinyEngine(64), path)
    assert (
        str(err.value)
        == f"checkpoint {path} does not fit this network: the checkpoint has net_ch 8, this command asks for 64"
    )


def test_old_checkpoint_gets_a_short_shape_message(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "old.ckpt", TinyEngine(8), with_architecture=False)
    with pytest.raises(CheckpointError) as err:
        check_checkpoint_fits(TinyEngine(64), path)
    assert str(err.value) == (
        f"checkpoint {path} does not fit this network: 2 tensors differ in shape, e.g. net.weight (8, 4) in the "
        "checkpoint vs (64, 4) here; 0 keys missing, 0 unexpected"
    )


def test_a_checkpoint_that_loads_passes_whatever_its_stored_values(tmp_path: Path) -> None:
    engine = TinyEngine(8, x_len=3)  # x_T is shape-flexible: another sample size still loads
    engine.arch["input_shape"] = [9, 32, 32]  # and an input shape that leaves the network unchanged
    check_checkpoint_fits(engine, _checkpoint(tmp_path / "last.ckpt", TinyEngine(8)))
