"""Crafted pickles never run: every reader refuses them with one line naming the file and the objects found.

Each file here would write a marker file when unpickled (:mod:`tests.reliability.crafted`); the first test shows the
payloads are live, the others that the marker never appears. End-to-end runs of the executors and of export_hf.py
as real subprocesses are at the bottom (slow).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from Engineering.engines.runner import main
from Engineering.errors import CheckpointError, run_guarded
from Engineering.hub import UnsafePickleError, deepspeed_state_dict, load_into, load_weights_into, read_state_dict
from Engineering.hub.checkpoints import checkpoint_problem, select_checkpoint
from Engineering.pickle_policy import TrustedFiles
from tests.reliability.conftest import common_args
from tests.reliability.crafted import (
    DEEPSPEED_FIXTURES,
    PAYLOAD_TYPES,
    deepspeed_folder_naming,
    evil_bin,
    evil_checkpoint,
    evil_deepspeed_folder,
    evil_model_folder,
    unsafe_load_creates_marker,
)

REPO = Path(__file__).resolve().parents[2]
REFUSED = r"refused because unpickling it could run code\. If you made this file yourself or trust its source, rerun "


def test_the_payloads_are_live(tmp_path):
    """Control: without the policy, each crafted file does create its marker (so the other tests can fail)."""
    for name, build in (("ckpt", evil_checkpoint), ("bin", evil_bin)):
        marker = tmp_path / f"{name}.marker"
        assert unsafe_load_creates_marker(build(tmp_path / f"x.{name}", marker), marker)
    marker = tmp_path / "ds.marker"
    folder = evil_deepspeed_folder(tmp_path / "ds", marker)
    assert unsafe_load_creates_marker(sorted(folder.glob("global_step1/*_model_states.pt"))[0], marker)


def test_resume_refuses_a_crafted_last_ckpt_without_falling_back(tmp_path):
    ckpts = tmp_path / "run" / "Checkpoints"
    marker = tmp_path / "marker"
    last = evil_checkpoint(ckpts / "last.ckpt", marker)
    torch.save({"state_dict": {"net.w": torch.zeros(2)}}, ckpts / "epoch=1-step=2.ckpt")  # a good fall-back
    with pytest.raises(UnsafePickleError) as caught:
        select_checkpoint(tmp_path / "run", load_best=False)
    assert str(caught.value) == (
        f"checkpoint {last} holds pickled objects beyond tensors and plain data ({PAYLOAD_TYPES}); refused because "
        f"unpickling it could run code. If you made this file yourself or trust its source, rerun with "
        f"--trust_checkpoint {last}"
    )
    assert not marker.exists()


def test_inspection_no_longer_rates_an_intact_zip_with_objects_as_fine(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hparams": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UnsafePickleError, match=r"\(argparse\.Namespace\); " + REFUSED):
        checkpoint_problem(path)
    assert checkpoint_problem(path, TrustedFiles.of(path)) is None  # the user vouches for it


@pytest.mark.parametrize("kind", ["bin", "folder", "sharded folder", "ckpt"])
def test_weight_files_and_model_folders_are_refused(tmp_path, kind):
    marker = tmp_path / "marker"
    if kind == "bin":
        source = evil_bin(tmp_path / "w" / "pytorch_model.bin", marker)
    elif kind == "ckpt":
        source = evil_checkpoint(tmp_path / "w" / "model.ckpt", marker)
    else:
        source = evil_model_folder(tmp_path / "w", marker, sharded=kind == "sharded folder")
    with pytest.raises(UnsafePickleError, match=r"^weight file .* holds pickled objects .*" + REFUSED) as caught:
        load_into(nn.Linear(2, 2), source)
    assert "\n" not in str(caught.value)
    with pytest.raises(UnsafePickleError):
        read_state_dict(source)
    assert not marker.exists()


@pytest.mark.parametrize("shard", ["model", "optim"])
def test_deepspeed_folders_with_a_payload_are_refused(tmp_path, shard):
    marker = tmp_path / "marker"
    folder = evil_deepspeed_folder(tmp_path / "Checkpoints" / "last.ckpt", marker, shard)
    pattern = r"^DeepSpeed file .*_" + shard + r"_states\.pt holds pickled objects beyond tensors and plain data \("
    for attempt in (
        lambda: checkpoint_problem(folder),
        lambda: select_checkpoint(tmp_path, load_best=False),
        lambda: deepspeed_state_dict(folder),
        lambda: load_weights_into(nn.Linear(2, 2), folder),
    ):
        with pytest.raises(UnsafePickleError, match=pattern + ".*" + REFUSED):
            attempt()
    assert not marker.exists()


def test_deepspeed_folder_naming_another_deepspeed_function_is_refused(tmp_path):
    """Only DeepSpeed's value holders are accepted, not anything under ``deepspeed.``: DeepSpeed's own loader (used
    to resume a DeepSpeed run) would call the named function."""
    folder = deepspeed_folder_naming(tmp_path / "last.ckpt", "deepspeed.launcher.runner", "main")
    with pytest.raises(UnsafePickleError, match=r"\(deepspeed\.launcher\.runner\.main\); " + REFUSED):
        checkpoint_problem(folder)
    with pytest.raises(UnsafePickleError, match=r"deepspeed\.launcher\.runner\.main"):
        deepspeed_state_dict(folder)


def test_a_trusted_file_is_the_only_exception(tmp_path):
    marker = tmp_path / "marker"
    path = evil_bin(tmp_path / "w.bin", marker)
    with pytest.raises(UnsafePickleError):
        read_state_dict(path, trust=TrustedFiles.of(tmp_path / "other.bin"))
    with pytest.raises(UnsafePickleError):
        read_state_dict(path, trust=TrustedFiles.of(tmp_path / "sub"))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"entry 'net\.b' is a int"):  # vouched for: unpickled in full
        read_state_dict(path, trust=TrustedFiles.of(path))
    assert marker.exists()


# ------------------------------------------------------------------------------------------ real subprocesses


def _run(repo: Path, script: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"Executors/{script}", *args], cwd=repo, capture_output=True, text=True, timeout=300
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("imlatent: error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, rel_demo):
    """A finished one-epoch recon run (Identity model) on the demo data: its arguments and its folder."""
    results = tmp_path_factory.mktemp("crafted") / "Results"
    args = common_args(rel_demo, results) + ["--modelID", "-1", "--num_epochs", "1"]
    proc = _run(REPO, "main_recon.py", [*args, "--run_mode", "0"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return args, run_dir


@pytest.mark.slow
def test_executor_and_export_refuse_crafted_checkpoints(trained_run, tmp_path, repo_root):
    args, run_dir = trained_run
    ckpts = run_dir / "Checkpoints"
    genuine = ckpts / "last.ckpt"
    good = _run(repo_root, "main_recon.py", [*args, "--resume", "--run_mode", "2"])  # our own checkpoint loads
    assert good.returncode == 0, good.stderr[-2000:]
    saved = genuine.read_bytes()
    marker = tmp_path / "marker"
    try:
        for name in [p.name for p in ckpts.iterdir() if p.name.startswith("epoch=")]:
            (ckpts / name).unlink()
        evil_checkpoint(genuine, marker)
        line = _one_error_line(_run(repo_root, "main_recon.py", [*args, "--resume", "--run_mode", "2"]))
        assert (
            line.startswith(f"imlatent: error: checkpoint {genuine} holds pickled objects")
            and "--trust_checkpoint" in line
        )
        line = _one_error_line(
            _run(repo_root, "export_hf.py", ["--run_dir", str(run_dir), "--out", str(tmp_path / "hf")])
        )
        assert f"checkpoint {genuine} holds pickled objects" in line and not (tmp_path / "hf").exists()
        genuine.unlink()
        evil_deepspeed_folder(genuine, marker)
        line = _one_error_line(_run(repo_root, "main_recon.py", [*args, "--resume", "--run_mode", "2"]))
        assert "DeepSpeed file" in line and "_model_states.pt holds pickled objects" in line
        assert not marker.exists()
    finally:
        if genuine.is_dir():
            shutil.rmtree(genuine)
        genuine.write_bytes(saved)


@pytest.mark.slow
def test_a_deepspeed_folder_does_not_resume_training_in_a_plain_run(trained_run, repo_root):
    args, run_dir = trained_run
    folder = run_dir / "Checkpoints" / "last-v9.ckpt"
    shutil.copytree(DEEPSPEED_FIXTURES / "zero2", folder)
    try:
        line = _one_error_line(_run(repo_root, "main_recon.py", [*args, "--resume", "--run_mode", "0"]))
        assert line == (
            f"imlatent: error: checkpoint {folder} is a DeepSpeed checkpoint folder: resuming training from it needs "
            "a DeepSpeed run (--training_strategy deepspeed_stage_N, got default); to test it on this machine, "
            "use --run_mode 2"
        )
    finally:
        shutil.rmtree(folder)


@pytest.mark.slow
def test_only_the_command_line_vouches_for_a_checkpoint(trained_run, capsys):
    """A checkpoint with a harmless object beyond tensors (a Namespace, as older Lightning runs stored hparams) is
    refused, also when a data JSON override names it; ``--trust_checkpoint`` on the command line lets it load."""
    args, run_dir = trained_run
    last = run_dir / "Checkpoints" / "last.ckpt"
    saved = last.read_bytes()
    checkpoint = torch.load(last, weights_only=True)
    torch.save({**checkpoint, "old_hparams": argparse.Namespace(lr=1e-4)}, last)
    run = [*args, "--resume", "--run_mode", "2"]
    try:
        assert run_guarded(lambda a: main("recon", a), [*run, f"--json§trust_checkpoint={last}"]) == 2
        assert "(argparse.Namespace); refused because unpickling" in capsys.readouterr().err
        assert run_guarded(lambda a: main("recon", a), [*run, "--trust_checkpoint", str(last)]) == 0
    finally:
        last.write_bytes(saved)
