"""H5SeriesDataset: selection, indexing, worked cases, cache, handles, masks, phenotypes."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

import Engineering.data.h5dataset as h5mod
from Engineering.data import index as index_mod
from Engineering.data.demo import write_series_file
from Engineering.data.h5dataset import H5SeriesDataset
from Engineering.data.options import DatasetOptions
from Engineering.errors import ConfigError, DataError
from Engineering.transforms import TransformOptions, build_transforms

H, W = 16, 16
SHIPPED = dict(
    every_primary=False,
    selected_primaries=["LAX_4Ch_transverse"],
    sanity_filters={"dim1": 6},
    multi_channel=False,
    split_volume=False,
    split_time=False,
    channel_dim=0,
    slice_dim=1,
)


def _arr(shape, seed=0, dtype=np.uint16):
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


def _file(tmp_path, series, name="data.h5", **kw):
    return write_series_file(tmp_path / name, series, **kw)


def _ds(path, ids=None, **opts):
    return H5SeriesDataset(path, ids, DatasetOptions(**opts), use_cache=False)


def test_shipped_options_time_as_depth(tmp_path):
    cine = _arr((1, 6, 1, H, W))
    path = _file(
        tmp_path,
        {
            "1000011/20208/2_0/primary_LAX_4Ch_transverse_0": cine,
            "1000011/20208/2_0/primary_LAX_4Ch_transverse_1": cine,
            "1000022/20208/2_0/primary_LAX_4Ch_transverse_0": _arr((1, 5, 1, H, W)),
        },
    )
    train, _ = build_transforms(TransformOptions(norm_type="minmaxvol", input_shape=(6, 20, 20), p_augment=0))
    ds = H5SeriesDataset(path, None, DatasetOptions(**SHIPPED), train, use_cache=False)
    assert ds.entries == [("1000011/20208/2_0/primary_LAX_4Ch_transverse_0", (0, 0, 0))]
    raw = ds.fetch(0)["inp"]["data"]
    assert raw.dtype == np.float32 and raw.shape == (6, H, W)
    np.testing.assert_array_equal(raw, cine[0, :, 0])
    item = ds[0]
    assert item["inp"]["data"].shape == (1, 6, 20, 20)
    assert item["key"] == "1000011/20208/2_0/primary_LAX_4Ch_transverse_0" and item["indices"] == (0, 0, 0)
    assert item["inp"]["volmin"] == float(cine.min()) and isinstance(item["inp"]["volmax"], float)


@pytest.mark.parametrize(
    ("raw_shape", "opts", "n_items", "sample_shape"),
    [
        ((1, 6, 1, H, W), {}, 6, (H, W)),  # defaults: one 2D frame per item
        ((1, 1, 4, H, W), {"split_volume": False}, 1, (4, H, W)),  # 3D stack
        ((3, 1, 4, H, W), {}, 4, (3, H, W)),  # multi-echo as channels, one item per slice
        ((1, 6, 1, H, W), {"split_time": False}, 1, (6, H, W)),  # time as channels
        ((3, 1, 1, H, W), {"multi_channel": False}, 3, (H, W)),  # one item per channel
        ((1, 3, 1, H, W), {"multi_channel": False, "channel_dim": 1}, 3, (H, W)),  # time axis used as channels
        ((1, 1, 1, H, W), {"squeeze_slice": False}, 1, (1, H, W)),  # split axes dropped, C kept
    ],
)
def test_worked_cases(tmp_path, raw_shape, opts, n_items, sample_shape):
    path = _file(tmp_path, {"1/20208/2_0/primary": _arr(raw_shape)})
    ds = _ds(path, **opts)
    assert len(ds) == n_items
    assert ds.fetch(n_items - 1)["inp"]["data"].shape == sample_shape


def test_index_entries_and_values_follow_permutation(tmp_path):
    raw = _arr((2, 3, 4, H, W))
    path = _file(tmp_path, {"1/f/i/primary": raw})
    ds = _ds(path, multi_channel=False, slice_dim=1, split_volume=True, split_time=False)
    # permuted shape (C=2, T=4, S=3): i over 2 channels, k over 3 "slices" (the raw time axis)
    assert [e[1] for e in ds.entries] == [(i, 0, k) for i in range(2) for k in range(3)]
    np.testing.assert_array_equal(ds.fetch(4)["inp"]["data"], raw[1, 1].astype(np.float32))  # (i=1, k=1) → (S, H, W)


def test_selection_rules(tmp_path):
    names = ["primary_LAX", "primary_LAX_0", "primary_LAX_1", "primary_SAX_0", "auxiliary_T1_0", "meta_mask"]
    path = _file(tmp_path, {f"1/f/i/{n}": _arr((1, 1, 1, 4, 4)) for n in names})

    def kept(**opts):
        return [p.rsplit("/", 1)[1] for p, _ in _ds(path, **opts).entries]

    assert kept(every_primary=False, selected_primaries=["LAX"]) == ["primary_LAX", "primary_LAX_0"]
    assert kept(every_primary=False, selected_primaries=["primary_LAX_1"]) == ["primary_LAX_1"]
    assert kept() == ["primary_LAX", "primary_LAX_0", "primary_LAX_1", "primary_SAX_0"]
    assert kept(include_repeatAcq=False) == ["primary_LAX", "primary_LAX_0", "primary_SAX_0"]
    assert kept(every_primary=False, selected_primaries=["SAX"], selected_auxiliaries=["T1"]) == [
        "auxiliary_T1_0",
        "primary_SAX_0",
    ]


def test_sanity_filters_use_raw_shape(tmp_path):
    path = _file(tmp_path, {"1/f/i/primary_a": _arr((1, 6, 1, 4, 4)), "1/f/i/primary_b": _arr((1, 5, 1, 4, 4))})
    ds = _ds(path, sanity_filters={"dim1": 6}, slice_dim=1, split_volume=False, split_time=False)
    assert [p for p, _ in ds.entries] == ["1/f/i/primary_a"]


def test_patient_selection_exact(tmp_path):
    path = _file(tmp_path, {"1234567/f/i/primary": _arr((1, 1, 1, 4, 4)), "123/f/i/primary": _arr((1, 1, 1, 4, 4))})
    assert [p for p, _ in _ds(path, ["123"]).entries] == ["123/f/i/primary"]


def test_complex_data_is_complex64(tmp_path):
    z = (np.ones((1, 1, 1, 4, 4)) * (1 + 2j)).astype(np.complex128)
    path = _file(tmp_path, {"1/f/i/primary": z})
    item = _ds(path)[0]
    assert item["inp"]["data"].dtype.is_complex and item["inp"]["volmax"] == pytest.approx(np.sqrt(5))


def test_no_minmax_when_attrs_missing_or_disabled(tmp_path):
    path = _file(tmp_path, {"1/f/i/primary": _arr((1, 1, 1, 4, 4))}, minmax_attrs=False)
    assert "volmax" not in _ds(path)[0]["inp"]
    path2 = _file(tmp_path, {"1/f/i/primary": _arr((1, 1, 1, 4, 4))}, name="b.h5")
    assert "volmax" not in _ds(path2, fetchMinMax=False)[0]["inp"]


@pytest.mark.parametrize(
    ("series", "opts", "message"),
    [
        (
            {"1/f/primary": _arr((1, 1, 1, 4, 4))},
            {},
            r"series 1/f/primary is at depth 3; expected series only at patient/field/instance/series",
        ),
        ({"1/f/i/primary": _arr((6, 4, 4))}, {}, r"series 1/f/i/primary has shape \(6, 4, 4\); expected a 5-D array"),
        (
            {"1/f/i/primary_SAX_0": _arr((1, 1, 1, 4, 4))},
            {"every_primary": False, "selected_primaries": ["LAX"]},
            r"DS_selected_primaries entry 'primary_LAX' matches no series in the file; series names present: primary_SAX_0",
        ),
        (
            {"1/f/i/primary": _arr((1, 5, 1, 4, 4))},
            {"sanity_filters": {"dim1": 50}},
            r"no samples selected from .*data.h5 for the all split \(1 patient IDs\)",
        ),
    ],
)
def test_bad_files(tmp_path, series, opts, message):
    path = _file(tmp_path, series)
    with pytest.raises(DataError, match=message):
        _ds(path, **opts)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match=r"data file .*absent.h5 does not exist; expected an HDF5 file"):
        _ds(tmp_path / "absent.h5")


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"bogus": 1}, r"test: unknown dataset option\(s\) bogus; valid: fetchMinMax, every_primary"),
        ({"channel_dim": 7}, r"DS_channel_dim=7 is invalid; expected an axis 0..4"),
        ({"sanity_filters": {"dim9": 1}}, r"DS_sanity_filters entry 'dim9': 1 is invalid"),
        ({"combine_acquisitions": True}, r"DS_combine_acquisitions=True is not implemented"),
    ],
)
def test_bad_options(opts, message):
    with pytest.raises(ConfigError, match=message):
        DatasetOptions.from_mapping(opts, "test")


def test_handle_opened_once_per_process(tmp_path, monkeypatch):
    path = _file(tmp_path, {"1/f/i/primary": _arr((1, 6, 1, 4, 4))})
    ds = _ds(path)
    opens = []
    real_open = h5mod.open_h5
    monkeypatch.setattr(h5mod, "open_h5", lambda p: opens.append(p) or real_open(p))
    for n in range(len(ds)):
        ds[n]
    assert len(opens) == 1
    monkeypatch.setattr(h5mod.os, "getpid", lambda: -42)  # as in a forked worker
    ds[0]
    assert len(opens) == 2
    clone = pickle.loads(pickle.dumps(ds))  # spawn workers get a handle-free copy
    assert clone._file is None and len(clone) == 6
    clone[1]
    assert len(opens) == 3


def test_cache_written_reused_and_invalidated(tmp_path, monkeypatch):
    folder = tmp_path / "x.h5"  # only the file suffix is replaced
    folder.mkdir()
    path = _file(folder, {"1/f/i/primary": _arr((1, 2, 1, 4, 4))})
    first = H5SeriesDataset(path, None, DatasetOptions())
    caches = list((folder / "data_processedmeta").glob("DSPaths_mulChan_splitVol_splitTime_MD5*_SHA3*.json"))
    assert len(caches) == 1 and first.entries == [("1/f/i/primary", (0, 0, 0)), ("1/f/i/primary", (0, 1, 0))]
    calls = []
    real_scan = index_mod.scan_file
    monkeypatch.setattr(index_mod, "scan_file", lambda *a: calls.append(a) or real_scan(*a))
    assert H5SeriesDataset(path, None, DatasetOptions()).entries == first.entries and not calls
    _file(folder, {"1/f/i/primary": _arr((1, 3, 1, 4, 4))})
    assert len(H5SeriesDataset(path, None, DatasetOptions())) == 3 and len(calls) == 1


def test_cached_index_repeats_the_scan_warnings(tmp_path, caplog):
    path = _file(tmp_path, {"1/f/i/primary": _arr((1, 2, 1, 4, 4))})
    with h5py.File(path, "a") as f:
        f.create_group("1/f/i/primary_group")  # a series stored as a group: a warning, not an error
    for _ in range(2):  # the scan, then the cached index
        caplog.clear()
        with caplog.at_level("WARNING", logger="imlatent"):
            assert len(H5SeriesDataset(path, None, DatasetOptions())) == 2
        assert [r.getMessage() for r in caplog.records if "primary_group" in r.getMessage()], "warning not repeated"
    (kept,) = (tmp_path / "data_processedmeta").glob("warnings_DSPaths_*.json")
    assert "primary_group" in kept.read_text()


def test_unwritable_cache_is_skipped(tmp_path):
    path = _file(tmp_path, {"1/f/i/primary": _arr((1, 1, 1, 4, 4))})
    (tmp_path / "data_processedmeta").write_text("not a folder")
    assert len(H5SeriesDataset(path, None, DatasetOptions())) == 1


def _mask():
    m = np.zeros((1, 1, 1, H, W), dtype=np.int8)
    m[..., 4:12, 4:12] = 1
    return m


@pytest.mark.parametrize("where", ["sidecar", "infile"])
def test_mask_modes(tmp_path, where):
    key = "1/f/2_0/primary_LAX_0"
    data = _arr((1, 6, 1, H, W)) + 1
    series = {key: data}
    if where == "infile":
        series["1/f/2_0/meta_mask_0"] = _mask()
    else:
        write_series_file(tmp_path / "meta_mask.h5", {key: _mask()})
    path = _file(tmp_path, series)
    opts = dict(SHIPPED, selected_primaries=["LAX"])
    multiplied = _ds(path, data_mask_mode=1, **opts).fetch(0)["inp"]["data"]
    assert multiplied[:, 0, 0].sum() == 0 and (multiplied[:, 5, 5] > 0).all()
    _, evaluate = build_transforms(TransformOptions(norm_type="minmax", input_shape=(6, 10, 10)))
    ds = H5SeriesDataset(path, None, DatasetOptions(data_mask_mode=2, **opts), evaluate, use_cache=False)
    item = ds[0]
    assert item["inp"]["mask"].shape == item["inp"]["data"].shape == (1, 6, 10, 10)  # cropped with the data
    assert item["inp"]["mask"].dtype == np.float32 or str(item["inp"]["mask"].dtype) == "torch.float32"


def test_mask_missing(tmp_path):
    path = _file(tmp_path, {"1/f/i/primary": _arr((1, 1, 1, 4, 4))})
    with pytest.raises(DataError, match=r"DS_data_mask_mode=2 needs a mask: neither meta_mask_0/meta_mask in group"):
        _ds(path, data_mask_mode=2)


def test_phenotypes_and_confounders(tmp_path):
    path = _file(tmp_path, {f"{p}/f/i/primary": _arr((1, 1, 1, 4, 4)) for p in ("1001", "1002", "1003")})
    (tmp_path / "ph.tsv").write_text("f.eid\tLV\tRV\n1001\t1\t10\n1002\t3\t10\n")
    (tmp_path / "cf.tsv").write_text("FID\tAge\tSex\tCentre\n1001\t50\tM\tA\n1002\t70\tF\tB\n")
    ds = _ds(
        path,
        fetch_phenotypes=True,
        phenotypes={"path": str(tmp_path / "ph.tsv"), "cols": "LV,RV"},
        fetch_confounders=True,
        confounders={
            "path": str(tmp_path / "cf.tsv"),
            "cols": "Age,Sex,Centre",
            "bincat_cols": "Sex",
            "mulcat_cols": "Centre",
        },
    )
    assert ds.patient_ids == ["1001", "1002"]  # 1003 has no row
    item = ds[1]
    np.testing.assert_allclose(item["phenotypes"], [1.0, 0.0])
    assert item["phenotypes"].dtype == np.float32 and item["confounders_continuous"] == pytest.approx(1.0)
    assert item["confounders_binary"] == 0 and item["confounders_multicat"] == 1
    assert ds.side.counts == {
        "n_phenotypes": 2,
        "n_confounders": 3,
        "n_confounders_bincat": 1,
        "n_confounders_mulcat": 1,
        "n_confounders_cont": 1,
    }


def test_h5_file_is_not_modified(tmp_path):
    path = _file(tmp_path, {"1/f/i/primary": _arr((1, 1, 1, 4, 4))})
    _ds(path)[0]
    with h5py.File(path, "r") as f:
        assert list(f["1/f/i"].keys()) == ["primary"]
