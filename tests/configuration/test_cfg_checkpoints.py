"""Checkpoint choice for --resume / --load_best / --load_model_4test (a fallback where the original raised)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.configuration.sections import RunControl
from Engineering.errors import CheckpointError
from Engineering.hub.checkpoints import resume_checkpoint, select_checkpoint


def _run(tmp_path: Path, *names: str) -> Path:
    ckpts = tmp_path / "run" / "Checkpoints"
    ckpts.mkdir(parents=True)
    for name in names:
        _write_ckpt(ckpts / name)
    return tmp_path / "run"


def _write_ckpt(path: Path) -> None:
    """A minimal checkpoint that passes select_checkpoint's corruption check."""
    torch.save({"state_dict": {}}, path)


def test_acceptance_check(tmp_path: Path) -> None:
    run = _run(tmp_path, "epoch=3-step=40.ckpt", "epoch=7-step=80.ckpt", "last.ckpt", "last-v2.ckpt")
    assert select_checkpoint(run, load_best=True) == run / "Checkpoints" / "epoch=7-step=80.ckpt"
    assert select_checkpoint(run, load_best=False) == run / "Checkpoints" / "last-v2.ckpt"
    # the Checkpoints folder itself is accepted too
    assert select_checkpoint(run / "Checkpoints", load_best=False).name == "last-v2.ckpt"


def test_ties_and_versions(tmp_path: Path) -> None:
    run = _run(tmp_path, "epoch=7-step=80.ckpt", "epoch=7-step=90.ckpt", "epoch=7-step=90-v1.ckpt", "last-v10.ckpt",
               "last-v9.ckpt", "last.ckpt")  # fmt: skip
    assert select_checkpoint(run, load_best=True).name == "epoch=7-step=90-v1.ckpt"
    assert select_checkpoint(run, load_best=False).name == "last-v10.ckpt"


def test_best_falls_back_to_last(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = _run(tmp_path, "last.ckpt")
    with caplog.at_level(logging.WARNING, logger="imlatent"):
        assert select_checkpoint(run, load_best=True).name == "last.ckpt"
    assert "no epoch=<E> (best) checkpoint in" in caplog.text and "falling back to the last" in caplog.text


def test_nothing_to_load(tmp_path: Path) -> None:
    run = _run(tmp_path, "notes.txt")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*Checkpoints: looked for 'epoch=<E>-step=<S>\.ckpt'"):
        select_checkpoint(run, load_best=True)
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*Checkpoints: looked for 'last\*\.ckpt'$"):
        select_checkpoint(run, load_best=False)
    with pytest.raises(CheckpointError, match=r"checkpoint folder .*missing does not exist \(expected a run folder"):
        select_checkpoint(tmp_path / "missing", load_best=False)


def test_resume_checkpoint(tmp_path: Path) -> None:
    run = _run(tmp_path, "epoch=1-step=2.ckpt", "last.ckpt")
    other = tmp_path / "other"
    (other / "Checkpoints").mkdir(parents=True)
    _write_ckpt(other / "Checkpoints" / "last-v1.ckpt")

    def control(**options: object) -> RunControl:
        return RunConfig.build("recon", options, {}).run

    assert resume_checkpoint(control(), run) is None
    assert resume_checkpoint(control(resume=True, load_best=True), run).name == "epoch=1-step=2.ckpt"
    # load_model_4test implies resume and replaces this run's folder
    found = resume_checkpoint(control(load_model_4test=str(other)), run)
    assert found == other / "Checkpoints" / "last-v1.ckpt"


def test_a_deepspeed_checkpoint_folder_is_a_valid_candidate(tmp_path):
    from Engineering.hub.checkpoints import checkpoint_problem, select_checkpoint

    folder = tmp_path / "Checkpoints" / "last.ckpt"
    shutil.copytree(Path(__file__).parents[1] / "hub" / "deepspeed_zero" / "zero2", folder)
    assert checkpoint_problem(folder) is None
    (folder / "latest").write_text("global_step9")
    assert "the tag folder 'global_step9' named by 'latest' is missing" in checkpoint_problem(folder)
    (folder / "latest").write_text("global_step1")
    assert select_checkpoint(tmp_path, load_best=False) == folder
    plain = tmp_path / "other"
    plain.mkdir()
    assert checkpoint_problem(plain) == "a folder that is not a DeepSpeed checkpoint"
