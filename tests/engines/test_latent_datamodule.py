"""LatentDataModule: emb.h5 ⋈ phenotype TSV, exact-ID folds, train-split normalisation, whole-file mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Engineering.configuration.run_config import RunConfig
from Engineering.data.folds import Fold
from Engineering.data.latent_datamodule import LatentDataModule
from Engineering.errors import ConfigError, DataError
from Engineering.outputs import write_results_h5

L = 4
TAG = "primary_LAX_4Ch_transverse_0"
TRAIN, VAL, TEST = [1000001, 1000002, 1000003, 1000004], [1000005, 1000006], [1000007, 1000008]


def make_latent_run(root: Path, ids: list[int], shift: dict[int, float] | None = None, id_col: str = "FID") -> Path:
    """emb.h5 under <root>/parent/Output_fullDSV2 and phenotypes.tsv in <root>; returns the emb.h5 path."""
    rng = np.random.default_rng(0)
    dense, rows = {}, []
    for sub in ids:
        z = rng.normal(size=L) + (shift or {}).get(sub, 0.0)
        dense[f"{sub}/20208/2_0/{TAG}"] = z.reshape(1, 1, 1, L)
        rows.append({id_col: sub, "y1": 3 * z[0] + 10, "y2": z[1] - z[2], "cls": "yes" if z[3] > 0 else "no"})
    path = root / "parent" / "Output_fullDSV2" / "emb.h5"
    write_results_h5(path, dense)
    pd.DataFrame(rows).to_csv(root / "phenotypes.tsv", sep="\t", index=False)
    return path


def pheno(root: Path, cols: str = "y1,y2") -> dict:
    return {"path": str(root / "phenotypes.tsv"), "cols": cols}


FOLD = Fold([str(i) for i in TRAIN], [str(i) for i in VAL], [str(i) for i in TEST])


def test_join_and_item_layout(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN + VAL + TEST)
    dm = LatentDataModule(emb, pheno(tmp_path), FOLD, batch_size=2)
    dm.setup("fit")
    item = dm.datasets["train"][0]
    assert item["latent"].shape == (L,) and item["phenotypes"].shape == (2,)
    assert (item["fieldID"], item["instanceID"], item["dsID"]) == ("20208", "2_0", TAG)
    assert sorted(dm.datasets["train"].frame.subID) == TRAIN and sorted(dm.datasets["val"].frame.subID) == VAL
    assert dm.engine_hparams()["latent_targets"] == ["y1", "y2"]


def test_train_statistics_are_applied_to_test(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN + VAL + TEST, shift={i: 5.0 for i in TEST})
    dm = LatentDataModule(emb, pheno(tmp_path), FOLD)
    raw = dm.table.set_index("subID")
    train_raw = raw.loc[TRAIN, [f"Z{i}" for i in range(L)]].to_numpy()
    assert dm.normaliser.latent_mean == pytest.approx(train_raw.mean())
    assert dm.normaliser.latent_std == pytest.approx(train_raw.std())
    dm.setup("test")
    test = dm.datasets["test"]
    expected = (raw.loc[test.frame.subID, [f"Z{i}" for i in range(L)]].to_numpy() - train_raw.mean()) / train_raw.std()
    np.testing.assert_allclose(test.latents.numpy(), expected, rtol=1e-5)
    assert test.latents.mean() > 3  # shifted test latents are not re-centred by their own statistics
    y = raw.loc[test.frame.subID, ["y1", "y2"]].to_numpy()
    y_train = raw.loc[TRAIN, ["y1", "y2"]].to_numpy()
    np.testing.assert_allclose(test.targets.numpy(), (y - y_train.mean(0)) / y_train.std(0), rtol=1e-5)


def test_merged_train_val_and_whole_file_modes(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN + VAL + TEST)
    merged = LatentDataModule(emb, pheno(tmp_path), FOLD, merge_train_val=True, batch_size=2)
    merged.setup("fit")
    assert sorted(merged.datasets["train"].frame.subID) == TRAIN + VAL and merged.val_dataloader() == []
    whole = LatentDataModule(emb, pheno(tmp_path), None)
    whole.setup(None)
    for split in ("train", "val", "test"):
        assert len(whole.datasets[split]) == 8
    assert len(next(iter(whole.test_dataloader()))["subID"]) == 8


def test_fold_membership_is_exact(tmp_path):
    emb = make_latent_run(tmp_path, [1000001, 100000, 1000002])
    dm = LatentDataModule(emb, pheno(tmp_path), Fold(["100000", "1000002"], [], ["1000001"]))
    dm.setup("test")
    assert dm.datasets["test"].frame.subID.tolist() == [1000001]


def test_classification_targets_and_feid_fallback(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN + VAL + TEST, id_col="f.eid")
    dm = LatentDataModule(emb, pheno(tmp_path, "cls"), FOLD, task="classification")
    dm.setup("test")
    assert dm.targets.classes == ("no", "yes") and dm.targets.n_outputs == 2
    assert dm.datasets["test"][0]["phenotypes"].dtype.is_floating_point is False


def _hp(tmp_path: Path, **kw) -> RunConfig:
    base = dict(DS_phenotypes=pheno(tmp_path), datadir=str(tmp_path), foldCSV="", foldID=0, batch_size=2, in_channels=L)
    base.update(kw)
    return RunConfig.build("latentcls", base, {})


def test_from_config_errors_name_the_value(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN)
    with pytest.raises(
        ConfigError, match=r"--in_channels 128 does not match latent length L=4 of .*emb.h5; set --in_channels 4"
    ):
        LatentDataModule.from_config(_hp(tmp_path, in_channels=128), emb, False)
    with pytest.raises(ConfigError, match=r"DS_phenotypes in .* is None; taskID 2 expects \{'path'"):
        LatentDataModule.from_config(_hp(tmp_path, DS_phenotypes=None), emb, False)
    with pytest.raises(ConfigError, match=r"latent_task classification takes one DS_phenotypes column; got 2: y1,y2"):
        LatentDataModule.from_config(_hp(tmp_path, latent_task="classification"), emb, False)
    with pytest.raises(ConfigError, match=r"latent_task = 'cluster': expected one of regression, classification"):
        LatentDataModule.from_config(_hp(tmp_path, latent_task="cluster"), emb, False)
    with pytest.raises(DataError, match=r"latent file .*missing.h5 does not exist"):
        LatentDataModule.from_config(_hp(tmp_path), tmp_path / "missing.h5", False)


def test_from_config_reads_fold_csv(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN + VAL + TEST)
    pd.DataFrame([{"train": repr(FOLD.train), "val": repr(FOLD.val), "test": repr(FOLD.test)}]).to_csv(
        tmp_path / "folds.csv", index=False
    )
    dm = LatentDataModule.from_config(_hp(tmp_path, foldCSV="folds.csv"), emb, merge_train_val=False)
    assert dm.split_ids("test") == set(TEST)


def test_empty_split_message(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN)
    dm = LatentDataModule(emb, pheno(tmp_path), Fold([str(i) for i in TRAIN], ["2000000"], []), fold_csv=Path("f.csv"))
    with pytest.raises(DataError, match=r"the val split of fold CSV f.csv has no subject with both a latent"):
        dm.setup("fit")


def test_no_overlap_message(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN)
    pd.DataFrame({"FID": [9], "y1": [1.0], "y2": [2.0]}).to_csv(tmp_path / "phenotypes.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"no subject of .*emb.h5 has phenotypes in .*phenotypes.tsv"):
        LatentDataModule(emb, pheno(tmp_path), None)


def test_non_numeric_regression_column_message(tmp_path):
    emb = make_latent_run(tmp_path, TRAIN)
    with pytest.raises(DataError, match=r"column cls holds '(yes|no)'; regression expects numbers"):
        LatentDataModule(emb, pheno(tmp_path, "cls"), None)
