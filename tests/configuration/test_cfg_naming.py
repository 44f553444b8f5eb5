"""Run names and folders (the original's names, kept as they are)."""

from __future__ import annotations

from pathlib import Path

import pytest

from Engineering.configuration.naming import make_run_name, run_paths
from Engineering.configuration.resolve import resolve
from Engineering.configuration.run_config import RunConfig
from Engineering.errors import ConfigError


@pytest.fixture
def at_root(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(repo_root)
    return repo_root


@pytest.mark.parametrize(
    "script, name",
    [
        ("recon", "F20208_heart_1Ses_time2slc_MskCrop128_prova1fold0_prec32_pythaemodel-factor_vae"),
        ("diffae", "F20208_heart_1Ses_time2slc_MskCrop128_prova3D_diffAEfold0_prec16-mixed_DiffAE"),
        ("latentcls", "F20208_heart_1Ses_t2s_MskCrp128_3ph_provafp16_diffAEfold0_prec32-true_LtCls"),
    ],
)
def test_default_run_names(at_root: Path, script: str, name: str) -> None:
    train_id, run_name = make_run_name(resolve(script, []).cfg)
    assert run_name == name and name.endswith(train_id)


@pytest.mark.parametrize(
    "argv, train_id",
    [
        (["--modelID", "3"], "prova1fold0_prec32_model3"),
        (["--modelID", "-1"], "prova1fold0_prec32_pythaemodel-factor_vae"),  # the original's mislabel, kept
        (["--interp_fact", "0.5", "--foldID", "2"], "prova1fold2_prec32_pythaemodel-factor_vae_interp0.5"),
        (["--interp_fact", "2"], "prova1fold0_prec32_pythaemodel-factor_vae_interp2.0"),
        (["--json§run_prefix", ""], "prova1fold0_prec32_pythaemodel-factor_vae"),
    ],
)
def test_name_variants(at_root: Path, argv: list[str], train_id: str) -> None:
    cfg = resolve("recon", argv).cfg
    got_train_id, run_name = make_run_name(cfg)
    assert got_train_id == train_id
    assert run_name == (f"{cfg.data.run_prefix}_{train_id}" if cfg.data.run_prefix else train_id)


def test_fulltrainID_is_verbatim(at_root: Path) -> None:
    assert make_run_name(resolve("diffae", ["--fulltrainID", "MyRun"]).cfg) == ("MyRun", "MyRun")
    assert make_run_name(resolve("recon", ["--json§fulltrainID", "J"]).cfg) == ("J", "J")


def test_bad_task_is_refused_before_naming() -> None:
    with pytest.raises(ConfigError, match=r"--taskID 9: expected one of 0, 1, 2"):
        RunConfig.build("recon", {"taskID": 9}, {})


def test_run_paths_recon_and_suffix(at_root: Path) -> None:
    cfg = resolve("recon", ["--output_suffix", "fullDS"]).cfg
    _, name = make_run_name(cfg)
    paths = run_paths(cfg, name)
    assert paths.run_dir == Path("../Results") / name
    assert paths.checkpoints == paths.run_dir / "Checkpoints"
    assert paths.output == paths.run_dir / "Output_fullDS"
    assert paths.log_file == paths.run_dir / "CaptainsLog.log"
    assert paths.tb_dir == Path("../Out/TBLogs") / name
    assert paths.parent_train_path is None and paths.latent_file is None
    assert run_paths(resolve("recon", []).cfg, name).output == paths.run_dir / "Output"


def test_run_paths_latentcls(at_root: Path) -> None:
    cfg = resolve("latentcls", ["--parent_trainID", "parentRun"]).cfg
    _, name = make_run_name(cfg)
    paths = run_paths(cfg, name)
    assert paths.parent_train_path == Path("../Results/parentRun")
    assert paths.save_path == Path("../Results/parentRun/ClassifyLatent")
    assert paths.run_dir == Path("../Results/parentRun/ClassifyLatent") / name
    assert paths.latent_file == Path("../Results/parentRun/Output_fullDSV2/emb.h5")
