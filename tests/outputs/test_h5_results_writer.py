"""write_results_h5 (layout, atomic replace, bad keys) and check_emb_h5 (every contract violation it reports)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from Engineering.errors import DataError
from Engineering.outputs import ResultHolder, check_emb_h5, write_results_h5

KEY = "1000001/20208/2_0/primary_LAX_4Ch_transverse_0"
L = 8


def _dense(*keys: str) -> dict[str, np.ndarray]:
    return {k: np.full((1, 1, 1, L), float(n)) for n, k in enumerate(keys)}


def test_layout_dtype_storage_and_no_attributes(tmp_path: Path) -> None:
    holder = ResultHolder()
    holder.add([KEY], ([0], [0], [0]), np.arange(L, dtype=np.float32)[None])
    path = tmp_path / "Output" / "emb.h5"
    write_results_h5(path, holder.to_dense())
    with h5py.File(path, "r", swmr=True) as f:
        ds = f[KEY]
        assert isinstance(f["1000001/20208/2_0"], h5py.Group)
        assert ds.shape == (1, 1, 1, L) and ds.dtype == np.float64
        assert ds.compression is None and ds.chunks is None
        assert len(ds.attrs) == 0 and len(f.attrs) == 0
    assert check_emb_h5(path, expected_keys={KEY}, latent_dim=L) == []
    assert [p.name for p in path.parent.iterdir()] == ["emb.h5"]  # no temp file left


def test_existing_file_is_replaced_and_root_attrs_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "emb.h5"
    write_results_h5(path, _dense(KEY, "1000002/20208/2_0/x"))
    write_results_h5(path, _dense(KEY), attrs={"imlatent_version": "0.1.0"})
    with h5py.File(path, "r") as f:
        assert list(f) == ["1000001"] and f.attrs["imlatent_version"] == "0.1.0"
    assert check_emb_h5(path, latent_dim=L) == []  # root attributes are allowed: no consumer reads them


def test_empty_mapping_gives_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "recon.h5"
    write_results_h5(path, {})
    with h5py.File(path, "r") as f:
        assert len(f) == 0


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "emb.h5"
    write_results_h5(path, _dense(KEY))
    with pytest.raises(DataError, match=r"holds dtype object; expected a numeric array"):
        write_results_h5(path, {KEY: np.array([None])})
    with pytest.raises(TypeError):  # h5py cannot store it; raised while writing the temp file
        write_results_h5(path, {KEY: np.zeros(2)}, attrs={"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.h5"]
    with h5py.File(path, "r") as f:
        assert f[KEY].shape == (1, 1, 1, L)


@pytest.mark.parametrize("key", ["1000001/20208/2_0", "1000001/20208/2_0/a/b", "1000001//2_0/a", "/1000001/20208/2_0"])
def test_keys_must_have_four_components(tmp_path: Path, key: str) -> None:
    with pytest.raises(DataError, match=r"expected exactly 4 non-empty ones: <subID>/<fieldID>/<instanceID>/<series>"):
        write_results_h5(tmp_path / "emb.h5", {key: np.zeros((1, 1, 1, 2))})
    assert not list(tmp_path.iterdir())


def test_check_reports_structure_violations(tmp_path: Path) -> None:
    path = tmp_path / "emb.h5"
    with h5py.File(path, "w") as f:
        f["1000001/20208/2_0/good"] = np.zeros((1, 1, 1, L))
        f["index"] = np.arange(3)  # dataset at depth 1
        f["1000002/20208/2_0/deep/x"] = np.zeros((1, 1, 1, L))  # group at depth 4
        f.create_group("1000003/20208")  # empty group
        f["1000004"] = h5py.SoftLink("/1000001")
    problems = check_emb_h5(path, latent_dim=L)
    assert any("index: dataset at depth 1; expected depth 4 only" in p for p in problems)
    assert any("1000002/20208/2_0/deep: group at depth 4" in p for p in problems)
    assert any("1000003/20208: empty group at depth 2" in p for p in problems)
    assert any("1000004: SoftLink; expected no soft or external links" in p for p in problems)
    assert len(problems) == 4


def test_check_reports_dataset_violations(tmp_path: Path) -> None:
    path = tmp_path / "emb.h5"
    with h5py.File(path, "w") as f:
        f["1000001/20208/2_0/cplx"] = np.zeros((1, 1, 1, L), np.complex64)
        f["1000002/20208/2_0/flat"] = np.zeros(L)
        f["1000003/20208/2_0/short"] = np.zeros((1, 1, 1, L - 1))
        f["1000004/20208/2_0/nan"] = np.full((1, 1, 1, L), np.nan)
        f["1000005/20208/2_0/attr"] = np.zeros((1, 1, 1, L))
        f["1000005/20208/2_0/attr"].attrs["note"] = 1
        f["abc/20208/visit2/int"] = np.zeros((1, 1, 1, L), np.int32)
    text = "\n".join(check_emb_h5(path, expected_keys={"1000001/20208/2_0/cplx", "9/9/2_0/gone"}, latent_dim=L))
    assert "cplx: dtype complex64; expected float32/float64" in text
    assert "flat: shape (8,); expected (nI, nJ, nK, L)" in text
    assert "short: latent length 7; expected 8" in text
    assert "nan: holds NaN or inf; expected finite values everywhere" in text
    assert "attr: dataset attributes note; expected none" in text
    assert "int: dtype int32" in text
    assert "subID 'abc' is not a decimal integer" in text
    assert "instanceID 'visit2'; expected '<visit>_<array>'" in text
    assert "1 expected dataset(s) missing: 9/9/2_0/gone" in text
    assert "5 unexpected dataset(s)" in text
    assert "latent lengths [7, 8] differ" in text
    assert "cplx: dtype" not in "\n".join(check_emb_h5(path, allow_complex=True))


def test_check_missing_and_unreadable_files(tmp_path: Path) -> None:
    assert check_emb_h5(tmp_path / "emb.h5") == [f"{tmp_path / 'emb.h5'}: no such file; expected the result H5 file"]
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert "cannot be opened with h5py swmr=True" in check_emb_h5(bad)[0]
