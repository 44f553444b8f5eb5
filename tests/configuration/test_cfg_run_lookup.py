"""A test or resume command naming a run folder that does not exist: the closest run folders and their options."""

from __future__ import annotations

from pathlib import Path

import pytest

from Engineering.configuration.run_lookup import (
    RunNameParts,
    missing_run_message,
    options_selecting,
    parse_run_name,
    require_run_folder,
)
from Engineering.errors import ConfigError


def _runs(save_path: Path, *names: str) -> None:
    for name in names:
        (save_path / name / "Checkpoints").mkdir(parents=True)


def test_parse_run_name_reads_every_part() -> None:
    assert parse_run_name("demo_tinyfold0_prec32_DiffAE", "demo") == RunNameParts("tiny", "0", "32", "_DiffAE", "")
    parts = parse_run_name("F_x_my_foldsfold3_prec16-mixed_pythaemodel-factor_vae_interp2.0", "F_x")
    assert parts == RunNameParts("my_folds", "3", "16-mixed", "_pythaemodel-factor_vae", "2.0")
    assert parse_run_name("other_tinyfold0_prec32_DiffAE", "demo") is None  # another data JSON's run
    assert parse_run_name("demo_notes", "demo") is None


def test_options_selecting_names_each_changed_option() -> None:
    mine = RunNameParts("tiny", "0", "16-mixed", "_pythaemodel-factor_vae", "")
    assert options_selecting(mine, RunNameParts("tiny", "0", "32", "_pythaemodel-factor_vae", "")) == [
        "--ampmode",
        "32",
    ]
    theirs = RunNameParts("big", "2", "16-mixed", "_model3", "0.5")
    assert options_selecting(mine, theirs) == [
        "--trainID",
        "big",
        "--foldID",
        "2",
        "--modelID",
        "3",
        "--interp_fact",
        "0.5",
    ]
    assert options_selecting(mine, RunNameParts("tiny", "0", "16-mixed", "_DiffAE", "")) is None  # another executor


def test_missing_run_lists_closest_folders_with_their_options(tmp_path: Path) -> None:
    _runs(tmp_path, "demo_tinyfold0_prec32_DiffAE", "demo_otherfold1_prec32_DiffAE", "demo_tinyfold0_prec16-mixed_Diff")
    (tmp_path / "demo_tinyfold0_prec32_DiffAE_copy").mkdir()  # no Checkpoints/: nothing to test or resume there
    wanted = tmp_path / "demo_tinyfold0_prec16-mixed_DiffAE"
    message = missing_run_message(wanted, "demo", "named by the options")
    assert "\n" not in message
    assert message.startswith(f"run folder {wanted} does not exist (named by the options); ")
    clauses = message.split("; ")[1:]
    assert clauses == [
        f"found demo_tinyfold0_prec32_DiffAE: add --ampmode 32, or pass --run_dir {tmp_path}/demo_tinyfold0_prec32_DiffAE",
        "found demo_otherfold1_prec32_DiffAE: add --trainID other --foldID 1 --ampmode 32, or pass --run_dir "
        f"{tmp_path}/demo_otherfold1_prec32_DiffAE",
        f"found demo_tinyfold0_prec16-mixed_Diff: pass --run_dir {tmp_path}/demo_tinyfold0_prec16-mixed_Diff",
    ]


def test_missing_run_without_any_run_folder(tmp_path: Path) -> None:
    wanted = tmp_path / "Results" / "demo_tinyfold0_prec32_DiffAE"
    with pytest.raises(ConfigError, match=r"holds no run folder with Checkpoints/; check --json§save_path or pass"):
        require_run_folder(wanted, "demo", "named by the options")
    _runs(tmp_path / "Results", "demo_tinyfold0_prec32_DiffAE")
    assert require_run_folder(wanted, "demo", "named by the options") == wanted
