"""The Zarr variant: the same patient/field/instance layout in a Zarr v3 store (local or fsspec), read by the same
dataset class as HDF5, gives the same index, samples and batches."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

from Engineering.data.datamodule import H5DataModule
from Engineering.data.demo import write_demo_dataset
from Engineering.data.h5dataset import H5SeriesDataset
from Engineering.data.store import copy_h5_to_zarr, is_zarr, location_exists
from Engineering.errors import DataError
from tests.data.test_datamodule import FRAMES, SIZE, _hparams


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The demo HDF5 file and two Zarr copies: a local folder and an fsspec memory:// store."""
    demo = write_demo_dataset(tmp_path_factory.mktemp("zarr") / "demo", n_patients=4, frames=FRAMES, size=SIZE)
    h5 = demo.datadir / "data.h5"
    local = demo.datadir / "data.zarr"
    memory = f"memory://{uuid.uuid4().hex}/data.zarr"
    n_local, n_memory = copy_h5_to_zarr(h5, local), copy_h5_to_zarr(h5, memory)
    assert n_local == n_memory > 0
    return demo, h5, local, memory


def _options(demo):
    return H5DataModule.from_config(_hparams(demo.datadir), merge_train_val=False).dataset_options


@pytest.mark.parametrize("which", ["local", "memory"])
def test_same_index_and_samples_as_hdf5(stores, which):
    demo, h5, local, memory = stores
    store = local if which == "local" else memory
    assert is_zarr(store) and location_exists(store)
    reference = H5SeriesDataset(h5, None, _options(demo), use_cache=False)
    zarr_ds = H5SeriesDataset(store, None, _options(demo))
    assert zarr_ds.entries == reference.entries and len(zarr_ds) > 0
    for i in range(len(reference)):
        a, b = reference.fetch(i), zarr_ds.fetch(i)
        assert a["key"] == b["key"] and a["indices"] == b["indices"]
        np.testing.assert_array_equal(a["inp"]["data"], b["inp"]["data"])
        assert (a["inp"]["volmin"], a["inp"]["volmax"]) == (b["inp"]["volmin"], b["inp"]["volmax"])


def test_datamodule_reads_an_fsspec_store_given_as_datafile(stores):
    demo, _, _, memory = stores
    batches = []
    for datafile in ("data.h5", memory):  # a URL datafile is used as is; folds stay in datadir
        dm = H5DataModule.from_config(_hparams(demo.datadir, datafile=datafile), merge_train_val=False)
        dm.setup("fit")
        torch.manual_seed(0)
        batches.append(next(iter(dm.train_dataloader())))
    assert batches[0]["key"] == batches[1]["key"]
    torch.testing.assert_close(batches[0]["inp"]["data"], batches[1]["inp"]["data"])


def test_missing_store_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"data file .*nothing\.zarr does not exist; expected an HDF5 file or a \.zarr"):
        H5SeriesDataset(tmp_path / "nothing.zarr", None, _options_for(tmp_path))


def test_a_folder_that_is_not_a_zarr_store_is_one_line(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DataError, match=r"cannot be opened as a Zarr v3 group"):
        H5SeriesDataset(tmp_path / "empty.zarr", None, _options_for(tmp_path))


def _options_for(tmp_path):
    demo = write_demo_dataset(tmp_path / "demo", n_patients=2, frames=FRAMES, size=SIZE)
    return _options(demo)
