"""DeepSpeed (ZeRO) checkpoint folders are consolidated weights-only, exactly as DeepSpeed's own converter does.

The fixtures under ``deepspeed_zero/`` are real checkpoints written by DeepSpeed 0.19.8 on two CPU ranks
(``make_fixtures.py``: a Linear-BatchNorm-Linear net with a frozen first weight), with the state dict DeepSpeed's
``get_fp32_state_dict_from_zero_checkpoint`` gives for them saved as ``reference.safetensors``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from Engineering.errors import CheckpointError
from Engineering.hub import deepspeed_state_dict, is_deepspeed_checkpoint, load_weights_into, read_state_dict
from Engineering.pickle_policy import DeepSpeedPlaceholder, load_deepspeed_part

FIXTURES = Path(__file__).parent / "deepspeed_zero"


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_consolidation_equals_deepspeeds_converter(stage):
    folder = FIXTURES / stage
    reference = load_file(str(folder / "reference.safetensors"))
    state = deepspeed_state_dict(folder)
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key
    assert state["0.weight"].shape == (5, 3)  # the frozen parameter is there too


def test_a_deepspeed_folder_loads_into_a_module_like_any_weight_file(tmp_path):
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    shutil.copytree(FIXTURES / "zero3", tmp_path / "last.ckpt")
    assert is_deepspeed_checkpoint(tmp_path / "last.ckpt")
    load_weights_into(net, tmp_path / "last.ckpt")
    reference = load_file(str(FIXTURES / "zero3" / "reference.safetensors"))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in reference.items())
    assert set(read_state_dict(tmp_path / "last.ckpt")) == set(reference)


def test_deepspeed_objects_are_inert_placeholders():
    optim = sorted((FIXTURES / "zero2" / "global_step1").glob("*_optim_states.pt"))[0]
    state = load_deepspeed_part(optim)["optimizer_state_dict"]
    assert isinstance(state["zero_stage"], DeepSpeedPlaceholder) and int(state["zero_stage"]) == 2
    assert type(state["loss_scaler"]).__mro__[1] is DeepSpeedPlaceholder
    assert "deepspeed.runtime" not in str(type(state["loss_scaler"]).__module__)


@pytest.mark.parametrize("tag", ["../../etc", "/abs", "a/b", ""])
def test_latest_must_name_a_folder_inside(tmp_path, tag):
    folder = tmp_path / "last.ckpt"
    shutil.copytree(FIXTURES / "zero2", folder)
    (folder / "latest").write_text(tag)
    with pytest.raises(CheckpointError, match=r"'latest' names .*; expected a folder name such as global_step10"):
        deepspeed_state_dict(folder)


def test_a_missing_rank_shard_is_named(tmp_path):
    folder = tmp_path / "last.ckpt"
    shutil.copytree(FIXTURES / "zero2", folder)
    sorted((folder / "global_step1").glob("*_optim_states.pt"))[-1].unlink()
    with pytest.raises(CheckpointError, match=r"1 \*_optim_states\.pt files for 2 ranks"):
        deepspeed_state_dict(folder)
