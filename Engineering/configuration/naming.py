"""Run names and run folders, kept identical to the original for path compatibility (FAITHFUL).

``<run_prefix>_<trainID>fold<foldID>_prec<ampmode>_<tag>[_interp<f>]``: no separator before ``fold``; seed, lr and
batch size are not part of the name; modelID <= 0 in taskID 0 is tagged ``_pythaemodel-<name>``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from Engineering.errors import ConfigError


def _engine_tag(hparams: argparse.Namespace) -> str:
    task = hparams.taskID
    if task == 0:
        model_id = int(getattr(hparams, "modelID", 0))
        return f"_model{model_id}" if model_id > 0 else f"_pythaemodel-{hparams.pythae_model}"
    if task == 1:
        return "_DiffAE"
    if task == 2:
        return "_LtCls"
    raise ConfigError(f"--taskID {task!r}: expected 0 (pythae AE/VAE), 1 (DiffAE) or 2 (latent regressor)")


def make_run_name(hparams: argparse.Namespace) -> tuple[str, str]:
    """Return ``(trainID, run_name)`` of a run; a non-empty ``fulltrainID`` is used verbatim for both.

    With ``--run_dir`` the run name is that folder's name (the folder may have been renamed or moved).
    """
    train_id, run_name = _derived_run_name(hparams)
    pinned = getattr(hparams, "run_dir", "")
    return train_id, Path(str(pinned)).name if pinned else run_name


def _derived_run_name(hparams: argparse.Namespace) -> tuple[str, str]:
    full = getattr(hparams, "fulltrainID", "")
    if full:
        return str(full), str(full)
    train_id = f"{hparams.trainID}fold{hparams.foldID}_prec{hparams.ampmode}{_engine_tag(hparams)}"
    interp = getattr(hparams, "interp_fact", None)
    if interp is not None and interp != 1:
        train_id += f"_interp{float(interp)}"
    prefix = getattr(hparams, "run_prefix", "")
    run_name = f"{prefix}_{train_id}" if prefix else train_id
    return train_id, run_name


@dataclass(frozen=True)
class RunPaths:
    """Folders and files of one run (all relative to the CWD unless ``save_path`` is absolute).

    For taskID 2, ``save_path`` is ``<save_path>/<parent_trainID>/ClassifyLatent`` and ``latent_file`` is the
    parent run's ``<parent_outfolder>/emb.h5``.
    """

    save_path: Path
    run_dir: Path
    checkpoints: Path
    output: Path
    log_file: Path
    tb_dir: Path | None
    parent_train_path: Path | None = None
    latent_file: Path | None = None


def run_paths(hparams: argparse.Namespace, run_name: str) -> RunPaths:
    """Folders of the run ``run_name`` under the JSON's ``save_path`` (see the original's directory layout)."""
    save_path = Path(str(hparams.save_path))
    parent = latent = None
    if hparams.taskID == 2:
        parent = save_path / str(getattr(hparams, "parent_trainID", ""))
        save_path = parent / "ClassifyLatent"
        latent = parent / str(getattr(hparams, "parent_outfolder", "Output_fullDSV2")) / "emb.h5"
    pinned = getattr(hparams, "run_dir", "")
    run_dir = Path(str(pinned)) if pinned else save_path / run_name
    suffix = getattr(hparams, "output_suffix", "")
    tb_root = getattr(hparams, "tblog_path", None)
    return RunPaths(
        save_path=save_path,
        run_dir=run_dir,
        checkpoints=run_dir / "Checkpoints",
        output=run_dir / (f"Output_{suffix}" if suffix else "Output"),
        log_file=run_dir / "CaptainsLog.log",
        tb_dir=Path(str(tb_root)) / run_name if tb_root else None,
        parent_train_path=parent,
        latent_file=latent,
    )
