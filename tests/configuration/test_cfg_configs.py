"""The shipped YAML configs and data JSONs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

V1 = {
    "seed": 1701,
    "model": {
        "latent_dim": 128,
        "pythae": {
            "n_features": 16,
            "nn": "convnet",
            "reconstruction_loss": "l1",
            "custom_loss_class": "Engineering.Science.losses.masked_loss.MaskedReconLoss",
            "custom_loss_params": {"loss_fn": "l1", "mode": "1"},
            "wrappers": {"lstm": {"im_encode_factor": 4, "num_layers": 1, "dropout": 0.1, "bidirectional": True,
                                  "connect_encdec": True, "decode_last_hidden": True}},
            "models": {
                "ultra_factor_vae": {"anti_confounders_strategy": 0, "n_anti_confounder_layers": 2,
                                     "lambda_conf_corr_loss": 1.0, "learn_phenotypes": True,
                                     "n_phenotype_layers": 2, "lambda_phenotype_loss": 1.0},
                "ultra_vae": {"p_do": 0.0, "anti_confounders_strategy": 0, "n_anti_confounder_layers": 2,
                              "lambda_conf_corr_loss": 1.0, "learn_phenotypes": True, "n_phenotype_layers": 2,
                              "lambda_phenotype_loss": 1.0},
                "ultra_cevae": {"ce_factor": 1.0, "recon_factor": 1.0, "vae_factor": 1.0, "square_size_factor": 2,
                                "min_n_squares": 1, "max_n_squares": 3, "anti_confounders_strategy": 0,
                                "n_anti_confounder_layers": 2, "lambda_conf_corr_loss": 1.0,
                                "learn_phenotypes": True, "n_phenotype_layers": 2, "lambda_phenotype_loss": 1.0},
                "ivaes": {"ivae_mode": "CI-iVAE", "beta": 0.001, "alpha_step": 0.025, "hidden_nodes_label_prior": 256,
                          "hidden_nodes_label_decoder": 256, "M": 100, "predict_reparameterised": False,
                          "orig_recon_loss": True},
            },
        },
        "DiffAE": {"net_ch": 32, "sample_every_batches": 1000, "sample_size": 4},
    },
    "training": {
        "log_freq": 50,
        "im_log_freq": 100,
        "save_recon": True,
        "LRDecay": {"type1": {"decay_nepoch": 25, "decay_rate": 0.1},
                    "type2": {"decay_rate": 0.1, "patience": 10, "threshold": 0.0001, "cooldown": 0, "min_lr": 0}},
        "augmentations": {"p": 0.0},
    },
    "eval": {"norm4diff": True, "store_fullscale_evals": False, "n_calc_processes": 8,
             "metrics2use": {"ssim": True, "msssim": False, "nrmse": True, "psnr": True, "uqi": False,
                             "sddiff": False}},
    "data": {"dataset": {"every_primary": False, "include_repeatAcq": True, "combine_acquisitions": False,
                         "data_mask_mode": 0, "fetch_confounders": False, "fetch_phenotypes": False},
             "complex_mode": 1},
}  # fmt: skip

TIME2SLC = {
    "is_complexDS": False,
    "DS_selected_primaries": ["LAX_4Ch_transverse"],
    "DS_sanity_filters": {"dim1": 50},
    "DS_multi_channel": False,
    "DS_split_volume": False,
    "DS_split_time": False,
    "DS_channel_dim": 0,
    "DS_slice_dim": 1,
}


def _yaml(repo_root: Path, name: str) -> dict:
    return yaml.safe_load((repo_root / "Configs" / name).read_text(encoding="utf-8"))


def _json(repo_root: Path, name: str) -> dict:
    return json.loads((repo_root / "Configs" / name).read_text(encoding="utf-8"))


def test_config_v1(repo_root: Path) -> None:
    cfg = _yaml(repo_root, "config_v1.yaml")
    assert cfg == V1
    assert type(cfg["model"]["pythae"]["models"]["ultra_factor_vae"]["lambda_conf_corr_loss"]) is float


def test_config_v0(repo_root: Path) -> None:
    cfg = _yaml(repo_root, "config_v0.yaml")
    expected = json.loads(json.dumps(V1))
    expected["model"]["latent_dim"] = 10
    expected["model"]["pythae"].update(n_features=64, reconstruction_loss="mse")
    del expected["model"]["pythae"]["models"]
    expected["data"]["dataset"]["every_primary"] = True
    del expected["data"]["dataset"]["fetch_confounders"], expected["data"]["dataset"]["fetch_phenotypes"]
    assert cfg == expected


def test_config_v1cv(repo_root: Path) -> None:
    cfg = _yaml(repo_root, "config_v1CV.yaml")
    expected = json.loads(json.dumps(V1))
    expected["model"]["pythae"].update(nn="cvconvnet", reconstruction_loss="crecon")
    del expected["model"]["pythae"]["models"]["ivaes"]
    expected["data"]["complex_mode"] = 0
    assert cfg == expected


def test_data_jsons(repo_root: Path) -> None:
    main = _json(repo_root, "UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128.json")
    assert main == {
        "run_prefix": "F20208_heart_1Ses_time2slc_MskCrop128",
        "datadir": "../datasets/ukbbH5s/F20208_Long_axis_heart_images_DICOM_H5v1_LAX_4Ch_transverse_cropped_128_128",
        "foldCSV": "5folds_1Ses_100DS_60Trn_10Val_30Tst_1701seed.csv",
        "tblog_path": "../Out/TBLogs",
        "save_path": "../Results",
        **TIME2SLC,
    }
    pheno = _json(repo_root, "UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128_conf_3pheno.json")
    assert pheno["run_prefix"] == "F20208_heart_1Ses_t2s_MskCrp128_3ph"
    assert {k: pheno[k] for k in TIME2SLC} == TIME2SLC
    assert pheno["DS_confounders"]["cols"] == "Gender,Age,MRI_Date,BMI,MRI_Centre,BSA,MRI_Visit"
    assert pheno["DS_confounders"]["bincat_cols"] == "Gender,MRI_Visit"
    assert pheno["DS_confounders"]["mulcat_cols"] == "MRI_Date,MRI_Centre"
    assert pheno["DS_phenotypes"]["cols"] == "LV_endDiastolicVol,LV_endSystolicVol,LV_StrokeVol"
    assert set(pheno) == set(main) | {"DS_confounders", "DS_phenotypes"}


def test_demo_json(repo_root: Path) -> None:
    assert _json(repo_root, "demo/dataNpath_demo.json") == {
        "run_prefix": "demo",
        "datadir": "demo_data",
        "datafile": "data.h5",
        "foldCSV": "folds.csv",
        "tblog_path": "demo_run/TBLogs",
        "save_path": "demo_run/Results",
        **TIME2SLC,
        "DS_phenotypes": {"path": "demo_data/phenotypes.tsv", "cols": "Age,Sex"},  # for the latent regressor demo
    }
