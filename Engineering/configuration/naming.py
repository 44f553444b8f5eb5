"""Run names and run folders, kept identical to the original for path compatibility.

``<run_prefix>_<trainID>fold<foldID>_prec<ampmode>_<tag>[_interp<f>]``: no separator before ``fold``; seed, lr and
batch size are not part of the name; modelID <= 0 in taskID 0 is tagged ``_pythaemodel-<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from Engineering.configuration.run_config import RunConfig


def _engine_tag(cfg: RunConfig) -> str:
    task = cfg.run.taskID
    if task == 0:
        model_id = cfg.model.modelID
        return f"_model{model_id}" if model_id > 0 else f"_pythaemodel-{cfg.pythae.pythae_model}"
    return "_DiffAE" if task == 1 else "_LtCls"


def make_run_name(cfg: RunConfig) -> tuple[str, str]:
    """Return ``(trainID, run_name)`` of a run; a non-empty ``fulltrainID`` is used verbatim for both.

    With ``--run_dir`` the run name is that folder's name (the folder may have been renamed or moved).
    """
    train_id, run_name = _derived_run_name(cfg)
    pinned = cfg.run.run_dir
    return train_id, Path(pinned).name if pinned else run_name


def _derived_run_name(cfg: RunConfig) -> tuple[str, str]:
    """``_interp<f>`` is added only where the setting exists (an option of the script, or a data-JSON key)."""
    run = cfg.run
    if run.fulltrainID:
        return run.fulltrainID, run.fulltrainID
    train_id = f"{run.trainID}fold{cfg.data.foldID}_prec{run.ampmode}{_engine_tag(cfg)}"
    if "interp_fact" in cfg.hparams and cfg.data.interp_fact != 1:
        train_id += f"_interp{float(cfg.data.interp_fact)}"
    prefix = cfg.data.run_prefix
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


def run_paths(cfg: RunConfig, run_name: str) -> RunPaths:
    """Folders of the run ``run_name`` under the JSON's ``save_path`` (see the original's directory layout)."""
    save_path = Path(cfg.data.save_path)
    parent = latent = None
    if cfg.run.taskID == 2:
        parent = save_path / cfg.latent.parent_trainID
        save_path = parent / "ClassifyLatent"
        latent = parent / cfg.latent.parent_outfolder / "emb.h5"
    run_dir = Path(cfg.run.run_dir) if cfg.run.run_dir else save_path / run_name
    suffix = cfg.outputs.output_suffix
    tb_root = cfg.data.tblog_path
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
