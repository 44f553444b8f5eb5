"""H5DataModule: option merging, splits, loaders, recon subjects, batch format and the golden DiffAE input."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.data.datamodule import H5DataModule, choose_recon_subjects, merge_dataset_options
from Engineering.data.demo import write_demo_dataset, write_series_file
from Engineering.errors import ConfigError

YAML = {
    "data": {
        "dataset": {
            "every_primary": False,
            "include_repeatAcq": True,
            "combine_acquisitions": False,
            "data_mask_mode": 0,
            "fetch_confounders": False,
            "fetch_phenotypes": False,
        },
        "complex_mode": 1,
    }
}
FRAMES, SIZE = 6, 16


def _hparams(datadir, **overrides) -> RunConfig:
    values = dict(
        datadir=str(datadir),
        datafile="data.h5",
        foldCSV="folds.csv",
        foldID=0,
        run_prefix="demo",
        DS_selected_primaries=["LAX_4Ch_transverse"],
        DS_sanity_filters={"dim1": FRAMES},
        DS_multi_channel=False,
        DS_split_volume=False,
        DS_split_time=False,
        DS_channel_dim=0,
        DS_slice_dim=1,
        batch_size=2,
        num_workers=0,
        nbatch_prefetch=2,
        norm_type="zscore",
        zscore_mean="0.5",
        zscore_std="0.5",
        zscore_prenorm="minmaxvol",
        interp_fact=1,
        input_shape=f"{FRAMES},20,20",
        croppad=True,
        is3D=1,
        grey2RGB=-1,
        is_complexDS=False,
        p_augment=1,
        p_aug_horflip=0.5,
        n_save_recon_subs=13,
        save_recon_subs="",
        taskID=1,
    )
    values.update(overrides)
    return RunConfig.build("diffae", values, {**YAML, "model": {"latent_dim": 8}})


@pytest.fixture
def demo(tmp_path):
    return write_demo_dataset(tmp_path / "demo", n_patients=10, frames=FRAMES, size=SIZE, n_folds=2)


def test_shipped_config_batches(demo):
    dm = H5DataModule.from_config(_hparams(demo.datadir), merge_train_val=False)
    dm.setup("fit")
    assert dm.dataset_options.fetchMinMax and not dm.dataset_options.every_primary
    train_ids = set(dm.fold.train)
    assert {k.split("/")[0] for k, _ in dm.train_ds.entries} <= train_ids
    batch = next(iter(dm.train_dataloader()))
    assert batch["inp"]["data"].shape == (2, 1, FRAMES, 20, 20) and batch["inp"]["data"].dtype == torch.float32
    assert batch["inp"]["volmin"].dtype == torch.float64
    assert isinstance(batch["key"], list) and all(k.endswith("/primary_LAX_4Ch_transverse_0") for k in batch["key"])
    assert len(batch["indices"]) == 3 and batch["indices"][0].tolist() == [0, 0]
    x = batch["inp"]["data"]
    assert torch.allclose(x.amin(dim=(1, 2, 3, 4)), torch.tensor(-1.0)) and x.max() <= 1


def test_merge_order_and_unknown_keys():
    opts = merge_dataset_options("divbymaxvol", "", YAML["data"]["dataset"], {"every_primary": True})
    assert opts.every_primary and opts.fetchMinMax
    assert not merge_dataset_options("zscore", "255", None, {}).fetchMinMax
    assert not merge_dataset_options("minmaxvol", "", None, {"fetchMinMax": False}).fetchMinMax
    with pytest.raises(
        ConfigError, match=r"dataNpath JSON: unknown dataset option\(s\) DS_bogus; valid: DS_fetchMinMax"
    ):
        merge_dataset_options("zscore", "", None, {"bogus": 1})
    with pytest.raises(ConfigError, match=r"YAML data.dataset: unknown dataset option\(s\) nope; valid: fetchMinMax"):
        merge_dataset_options("zscore", "", {"nope": 1}, {})


@pytest.mark.parametrize("falsy", [0, "", False, "0"])
def test_no_folds_uses_whole_file(demo, falsy):
    dm = H5DataModule.from_config(_hparams(demo.datadir, foldCSV=falsy), merge_train_val=False)
    dm.setup("fit")
    assert dm.fold is None and dm.train_ds.entries == dm.val_ds.entries
    assert [k for k, _ in dm.train_ds.entries] == demo.expected_keys


def test_merge_train_val(demo):
    dm = H5DataModule.from_config(_hparams(demo.datadir), merge_train_val=True)
    dm.setup("fit")
    assert dm.val_ds is None and dm.val_dataloader() == []
    assert set(dm.train_ds.patient_ids) == set(dm.fold.train) | set(dm.fold.val)


def test_loader_settings(demo, caplog):
    dm = H5DataModule.from_config(_hparams(demo.datadir, foldCSV=0, batch_size=3), merge_train_val=False)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.drop_last and val.drop_last is False and train.prefetch_factor is None
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert sum(b["inp"]["data"].shape[0] for b in val) == len(dm.val_ds)
    small = H5DataModule.from_config(_hparams(demo.datadir, foldCSV=0, batch_size=64), merge_train_val=False)
    small.setup("fit")
    with caplog.at_level(logging.WARNING, logger="imlatent.data"):
        assert small.train_dataloader().drop_last is False
    assert "smaller than batch_size 64" in caplog.text


@pytest.mark.parametrize(
    "options, expected",
    [({}, 2), ({"test_emb_only": True}, 8), ({"test_emb_only": True, "batch_size": 12}, 12),
     ({"test_emb_only": True, "test_batch_size": 3}, 3), ({"test_batch_size": 5}, 5)],
)  # fmt: skip
def test_test_loader_batch_size(demo, options, expected):
    """Latents only: a larger test batch by default (fewer per-batch costs); --test_batch_size sets it."""
    hp = _hparams(demo.datadir, foldCSV=0, **options)
    dm = H5DataModule.from_config(hp, merge_train_val=False)
    dm.setup("test")
    assert dm.test_dataloader().batch_size == expected and dm.batch_size == hp.run.batch_size


def test_worker_process_loader(demo):
    dm = H5DataModule.from_config(_hparams(demo.datadir, foldCSV=0, num_workers=1, p_augment=0), False)
    dm.setup("test")
    keys = [k for b in dm.test_dataloader() for k in b["key"]]
    assert keys == demo.expected_keys


def test_recon_subjects(demo):
    dm = H5DataModule.from_config(_hparams(demo.datadir, save_recon_subs=" 1000011,1000022"), False)
    dm.setup("test")
    assert dm.recon_subjects == {"1000011", "1000022"}
    ids = [str(n) for n in range(10)]
    assert choose_recon_subjects(ids, 1, "") == set(ids) and choose_recon_subjects(ids, 0, "") == set()
    random.seed(3)
    first = choose_recon_subjects(ids, 0.3, "")
    random.seed(3)
    assert choose_recon_subjects(ids, 0.3, "") == first and len(first) == 3
    assert len(choose_recon_subjects(ids, 13, "")) == 10 and len(choose_recon_subjects(ids, 4, "")) == 4
    whole = H5DataModule.from_config(_hparams(demo.datadir, foldCSV="", n_save_recon_subs=1), False)
    whole.setup("test")
    assert whole.recon_subjects == set(demo.patient_ids)


def test_test_stage_drops_phenotypes(demo, tmp_path):
    tsv = tmp_path / "ph.tsv"
    tsv.write_text("FID\tLV\n" + "".join(f"{p}\t{n}\n" for n, p in enumerate(demo.patient_ids)))
    hp = _hparams(demo.datadir, foldCSV=0, DS_fetch_phenotypes=True, DS_phenotypes={"path": str(tsv), "cols": "LV"})
    dm = H5DataModule.from_config(hp, merge_train_val=True)
    dm.setup("fit")
    dm.setup("test")
    assert "phenotypes" in dm.train_ds[0] and "phenotypes" not in dm.test_ds[0]
    assert dm.dataset_options.fetch_phenotypes and dm.side_counts == {"n_phenotypes": 1}


@pytest.mark.parametrize("case", ["diffae_3d_small", "diffae_2d_small"])
def test_golden_diffae_input_bit_exact(tmp_path, golden_dir, case):
    safetensors = pytest.importorskip("safetensors.numpy")
    tensors = safetensors.load_file(str(golden_dir / case / "io.safetensors"))
    config = json.loads((golden_dir / case / "config.json").read_text())
    raw_shape = config["hdf5"]["raw_dataset_shape"]
    series = {
        key: tensors["x_raw"][b].reshape(raw_shape).astype(np.uint16)
        for b, key in enumerate(config["hdf5"]["dataset_keys"])
    }
    write_series_file(tmp_path / "data.h5", series)
    cli = config["cli"]
    shape = cli[cli.index("--input_shape") + 1]
    hp = _hparams(
        tmp_path,
        foldCSV=0,
        input_shape=shape,
        is3D=int(cli[cli.index("--is3D") + 1]),
        DS_sanity_filters=config["hdf5"]["DS_params_used"]["sanity_filters"],
    )
    dm = H5DataModule.from_config(hp, merge_train_val=False)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["key"] == config["hdf5"]["dataset_keys"]
    assert torch.equal(batch["inp"]["data"], torch.from_numpy(tensors["x_norm"]))
