"""The option table of the three executors against the original's documented options."""

from __future__ import annotations

import argparse
import math

import pytest

from Engineering.configuration.cli import build_parser, optimiser_id, option_defaults
from Engineering.errors import ConfigError

A = "absent"
B = "bool"
J1 = "Configs/UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128.json"
J3 = "Configs/UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128_conf_3pheno.json"

# dest: (type, recon default, diffae default, latentcls default)
EXPECTED = {
    "taskID": (int, 0, 1, 2),
    "trainID": (str, "prova1", "prova3D_diffAE", "provafp16_diffAE"),
    "resume": (B, False, False, False),
    "load_best": (B, False, False, False),
    "load_model_4test": (str, "", "", ""),
    "num_workers": (int, 8, 8, 8),
    "num_threads": (int, 0, 0, 0),
    "use_concurrent_dataloader": (B, False, False, False),
    "batch_size": (int, 32, 2, 100),
    "effective_batch_size": (int, 96, 2, 100),
    "auto_optim": (B, False, True, True),
    "n_train_batches": (float, 0.25, 0.25, 1.0),
    "n_val_batches": (float, 0.25, 0.025, 1.0),
    "nbatch_prefetch": (int, 2, 20, 20),
    "configyml_path": (str, "Configs/config_v1.yaml", "Configs/config_v1.yaml", "Configs/config_v1.yaml"),
    "datajson_path": (str, J1, J1, J3),
    "foldID": (int, 0, 0, 0),
    "output_suffix": (str, "", "", ""),
    "accelerator": (str, "auto", "auto", "auto"),
    "ampmode": (str, "32", "16-mixed", "32-true"),
    "fulltrainID": (str, A, "", A),
    "matmul_precision": (str, "highest", "highest", "highest"),
    "run_mode": (int, 4, 4, 4),
    "dev_run": (int, 0, 0, 0),
    "non_deter": (B, False, False, False),
    "norm_type": (str, "divbymaxvol", "zscore", "zscore"),
    "zscore_mean": (str, "", "0.5", "0.5"),
    "zscore_std": (str, "", "0.5", "0.5"),
    "zscore_prenorm": (str, "", "minmaxvol", "minmaxvol"),
    "test_ema": (B, A, True, A),
    "test_with_TEval": (B, A, True, A),
    "test_emb_only": (B, A, False, A),
    "test_batch_size": (int, 0, 0, A),
    "ema_decay": (float, A, A, 0.9999),
    "parent_trainID": (str, A, A, ""),
    "parent_outfolder": (str, A, A, "Output_fullDSV2"),
    "load_hf": (str, "", "", ""),
    "training_strategy": (str, "", "", ""),
    "ndevices": (int, 0, 0, 0),
    "nnodes": (int, 1, 1, 1),
    "sync_batchnorm": (B, False, False, False),
    "num_epochs": (int, 50, 200, 500),
    "lr": (float, 1e-4, 1e-4, 1e-3),
    "lossID": (int, 0, 0, 1),
    "optimiserID": (optimiser_id, 0, 0, 0),
    "n_optimisers": (int, -1, -1, -1),
    "ploss_model": (str, "med1ch3D.UNetMSSDS6", "med1ch3D.UNetMSSDS6", "med1ch3D.UNetMSSDS6"),
    "ploss_level": (int, math.inf, math.inf, math.inf),
    "ploss_type": (str, "L1", "L1", "L1"),
    "ploss_weights": (str, "", "", ""),  # not in the original: where the --lossID -1 weights are
    "grad_clip_algo": (str, "norm", "norm", "norm"),
    "grad_clip_val": (float, 1, 1, 1),
    "lr_decay_type": (int, 0, 0, 0),
    "early_stopping_patience": (int, -1, -1, -1),
    "interp_fact": (float, 1, 1, A),
    "input_shape": (str, "56,128,128", "50,128,128", A),
    "croppad": (B, True, True, A),
    "n_save_recon_subs": (float, 13, 13, A),
    "save_recon_subs": (str, "", "", A),
    "p_augment": (float, 1, 1, 1),
    "p_aug_horflip": (float, 0.5, 0.5, 0.5),
    "grey2RGB": (float, -1, -1, -1),
    "modelID": (int, 0, 0, 0),
    "pythae_model": (str, "factor_vae", "factor_vae", A),
    "pythae_wrapper_mode": (int, 0, 0, A),
    "pythae_config": (str, "", "", A),
    "preweights_path": (str, "", "", ""),
    "is3D": (int, 1, 1, 0),
    "in_channels": (int, 1, 1, 128),
    "out_channels": (int, 1, 1, A),
    "compile_model": (B, False, False, False),
    "check_anomalies": (B, False, False, False),
    "auto_bs": (B, False, False, False),
    "auto_lr": (B, False, False, False),
    "profiler": (str, "", "", ""),
    "tbactive": (B, True, True, True),
    "wnbactive": (B, False, False, False),
    "wnbproject": (str, None, None, "UKBBCardiacImLatent"),
    "wnbentity": (str, None, None, "ukbb_img_latent"),
    "wnbgroup": (str, None, None, "latentClsDiffAE"),
    "wnbprefix": (str, "", "", ""),
    "wnbmodellog": (str, None, None, None),
    "wnbmodelfreq": (int, 100, 100, 100),
    "trust_checkpoint": (str, "", "", ""),
    "debug": (B, False, False, False),
    "resolved_config": (str, "", "", ""),
    "run_dir": (str, "", "", ""),
}
SCRIPTS = ("recon", "diffae", "latentcls")
SHORT = {"-tba": "tbactive", "-wnba": "wnbactive", "-wnbp": "wnbproject", "-wnbe": "wnbentity",
         "-wnbg": "wnbgroup", "-wnbpf": "wnbprefix", "-wnbml": "wnbmodellog", "-wnbmf": "wnbmodelfreq"}  # fmt: skip


def _actions(script: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in build_parser(script)._actions if a.dest != "help"}


@pytest.mark.parametrize("column, script", list(enumerate(SCRIPTS, start=1)))
def test_every_option_default_type_and_presence(column: int, script: str) -> None:
    actions = _actions(script)
    expected = {dest: row for dest, row in EXPECTED.items() if row[column] != A}
    assert set(actions) == set(expected)
    assert option_defaults(script) == {dest: row[column] for dest, row in expected.items()}
    for dest, row in expected.items():
        action = actions[dest]
        assert action.default == row[column], dest
        if row[0] == B:
            assert isinstance(action, argparse.BooleanOptionalAction), dest
        else:
            assert action.type is row[0], dest


@pytest.mark.parametrize("script", SCRIPTS)
def test_short_aliases_and_bool_negation(script: str) -> None:
    actions = _actions(script)
    for short, dest in SHORT.items():
        assert short in actions[dest].option_strings
    args = build_parser(script).parse_args(["-tba", "--no-tbactive", "-wnba", "-wnbp", "proj", "-wnbmf", "7"])
    assert (args.tbactive, args.wnbactive, args.wnbproject, args.wnbmodelfreq) == (False, True, "proj", 7)


def test_unknown_script_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown script 'pythae': expected one of recon, diffae, latentcls"):
        build_parser("pythae")


def test_prefix_abbreviations_are_not_accepted() -> None:
    args, unknown = build_parser("recon").parse_known_args(["--training", "foo", "--data", "x"])
    assert args.training_strategy == "" and args.datajson_path == J1
    assert unknown == ["--training", "foo", "--data", "x"]
    args, unknown = build_parser("diffae").parse_known_args(["--test", "1"])
    assert unknown == ["--test", "1"]


@pytest.mark.parametrize("given, expected", [("3", 3), ("-1", -1), (" 100 ", 100), ("lamb", "lamb")])
def test_optimiser_id_parses_ints_and_keeps_names(given: str, expected: int | str) -> None:
    assert build_parser("recon").parse_args(["--optimiserID", given]).optimiserID == expected


def test_unknown_tokens_keep_their_order() -> None:
    argv = ["--model§latent_dim", "64", "--seed", "7", "--training§x", "-5", "--no-training§save_recon"]
    args, unknown = build_parser("diffae").parse_known_args(["--batch_size", "4", *argv])
    assert args.batch_size == 4 and unknown == argv


def test_help_texts_are_specific() -> None:
    actions = _actions("latentcls")
    assert "best" in actions["load_best"].help and "--resume" in actions["load_best"].help
    assert "latents" in actions["parent_trainID"].help
    assert "emb.h5" in actions["parent_outfolder"].help
    assert "subjects" in _actions("recon")["n_save_recon_subs"].help
    assert "100 DeepSpeedCPUAdam, 200 FusedAdam" in actions["optimiserID"].help
    text = build_parser("diffae").format_help()
    assert "default taskID 1" in text and "--a§b§c VALUE" in text
