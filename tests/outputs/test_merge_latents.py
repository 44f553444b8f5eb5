"""Multi-run joins by key, the emb.h5 union of incremental runs, and provenance root attributes."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from Engineering.errors import DataError
from Engineering.outputs import check_emb_h5, write_results_h5
from Engineering.outputs.latent_tables import (
    emb_table,
    merge_latents,
    merge_tables,
    run_prefixes,
    seed_of,
    union_emb_h5,
)
from Engineering.outputs.provenance import provenance_attrs, read_provenance

L = 3
TAG = "primary_LAX_4Ch_transverse_0"


def _dense(subjects: list[int], seed: int, instances=("2_0",)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"{s}/20208/{i}/{TAG}": rng.normal(size=(1, 1, 1, L)) for s in subjects for i in instances}


def _run(tmp_path: Path, name: str, dense: dict[str, np.ndarray], attrs=None) -> Path:
    path = tmp_path / name / "Output_fullDSV3" / "emb.h5"
    write_results_h5(path, dense, attrs=attrs)
    return path


def test_seed_and_prefix_derivation():
    assert seed_of("R/F20208_heart_mulseed_42_3D_128fold0_prec16-mixed_DiffAE/Output/emb.h5") == 42
    assert seed_of("R/x_seed1993_fold0/Output/emb.h5") == 1993
    assert seed_of("R/plain/Output/emb.h5") == 1701
    assert seed_of("S42/Output_fullDS") == 42 and seed_of("/res/S1993/Output_fullDS/emb.h5") == 1993
    assert seed_of("R/S42x/Output/emb.h5") == seed_of("R/run_S42/Output") == 1701  # a whole folder name only
    assert run_prefixes(["a_seed_1701/e.h5", "b_seed_42/e.h5"]) == ["S1701", "S42"]
    with pytest.raises(DataError, match=r"both get the prefix 'S1701'; give distinct --names"):
        run_prefixes(["a/e.h5", "b/e.h5"])
    with pytest.raises(DataError, match=r"--names has 1 value\(s\) for 2 input file\(s\)"):
        run_prefixes(["a/e.h5", "b/e.h5"], ["X"])


def test_merge_by_keys_ignores_row_order(tmp_path):
    a = _run(tmp_path, "m_seed_1701", _dense([1000001, 1000002, 1000003], 1))
    b = _run(tmp_path, "m_seed_42", _dense([1000001, 1000002, 1000003], 2))
    ta, tb = emb_table(a), emb_table(b)
    merged, report = merge_tables([ta, tb], ["S1701", "S42"])
    shuffled, _ = merge_tables([ta, tb.sample(frac=1, random_state=0).reset_index(drop=True)], ["S1701", "S42"])
    pd.testing.assert_frame_equal(merged, shuffled)
    assert [c for c in merged.columns if "_Z" in c] == [
        "S1701_Z0",
        "S1701_Z1",
        "S1701_Z2",
        "S42_Z0",
        "S42_Z1",
        "S42_Z2",
    ]
    row = merged[merged.subID == 1000002].iloc[0]
    assert row["S42_Z1"] == tb[tb.subID == 1000002].iloc[0]["Z1"]
    assert report.complete


def test_missing_subjects_are_reported(tmp_path):
    a = _run(tmp_path, "r_seed_1701", _dense([1000001, 1000002, 1000003], 1))
    b = _run(tmp_path, "r_seed_42", _dense([1000001, 1000003, 1000004], 2))
    merged, report = merge_latents([a, b], tmp_path / "m.tsv")
    assert merged.subID.tolist() == [1000001, 1000003]
    assert not report.complete
    assert report.missing_from["S42"] == [f"1000002/20208/2_0/{TAG}"]
    assert report.missing_from["S1701"] == [f"1000004/20208/2_0/{TAG}"]
    assert report.lines()[1].startswith("S42: lacks 1 series of 1 subject(s) present in another run (e.g. 1000002/")
    outer, _ = merge_latents([a, b], tmp_path / "o.csv", how="outer")
    assert len(outer) == 4 and outer["S42_Z0"].isna().sum() == 1


def test_merged_gwas_layout(tmp_path):
    a = _run(tmp_path, "g_seed_1701", _dense([1000002, 1000001], 1, ("2_0", "3_0")))
    b = _run(tmp_path, "g_seed_42", _dense([1000001, 1000002], 2, ("2_0", "3_0")))
    merge_latents([a, b], tmp_path / "processed.tsv", gwas=True)
    back = pd.read_csv(tmp_path / "processed.tsv", sep="\t")
    assert list(back.columns[:3]) == ["FID", "IID", "S1701_Z0"] and back.FID.tolist() == [1000001, 1000002]


def test_h5_union_of_halves_equals_full_run(tmp_path):
    attrs = provenance_attrs("run", None, 1701, L, "0.1.0")
    full = _dense([1000001, 1000002, 1000003, 1000004], 5, ("2_0", "3_0"))
    keys = sorted(full)
    first = _run(tmp_path, "old", {k: full[k] for k in keys[:5]}, attrs)
    second = _run(tmp_path, "new", {k: full[k] for k in keys[3:]}, attrs)  # overlap of 2 identical series
    full_path = _run(tmp_path, "full", full, attrs)
    out = tmp_path / "merged" / "emb.h5"
    counts = union_emb_h5([first, second], out)
    assert sum(counts.values()) == len(full)
    assert check_emb_h5(out, expected_keys=keys, latent_dim=L) == []
    with h5py.File(out, "r") as m, h5py.File(full_path, "r") as f:
        merged_keys, full_keys = [], []
        m.visititems(lambda n, o: merged_keys.append(n) if isinstance(o, h5py.Dataset) else None)
        f.visititems(lambda n, o: full_keys.append(n) if isinstance(o, h5py.Dataset) else None)
        assert merged_keys == full_keys
        for key in full_keys:
            assert m[key].dtype == f[key].dtype and m[key].shape == f[key].shape
            np.testing.assert_array_equal(m[key][()], f[key][()])
    assert read_provenance(out) == read_provenance(full_path)


def test_h5_union_conflict_names_key_and_files(tmp_path):
    a = _run(tmp_path, "a", _dense([1000001], 1))
    b = _run(tmp_path, "b", _dense([1000001], 2))
    with pytest.raises(
        DataError, match=rf"key '1000001/20208/2_0/{TAG}' differs between .*a.* and .*b.*expected identical"
    ):
        union_emb_h5([a, b], tmp_path / "u.h5")


def test_provenance_attrs_on_root(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights")
    attrs = provenance_attrs("F20208_seed_42_DiffAE", ckpt, 42, L, "0.1.0+gabc")
    assert attrs["imlatent_checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert attrs["imlatent_checkpoint"] == str(ckpt) and attrs["imlatent_seed"] == 42
    path = _run(tmp_path, "p", _dense([1000001], 1), attrs)
    assert check_emb_h5(path, latent_dim=L) == []
    assert read_provenance(path) == attrs
    assert emb_table(path).shape == (1, 4 + L)  # consumers see the same rows
    assert provenance_attrs("r", None, None, L, "v")["imlatent_seed"] == -1


def test_merge_executor_smoke(tmp_path, capsys):
    a = _run(tmp_path, "x_seed_1701", _dense([1000001, 1000002], 1))
    b = _run(tmp_path, "x_seed_42", _dense([1000001], 2))
    path = Path(__file__).resolve().parents[2] / "Executors" / "merge_latents.py"
    spec = importlib.util.spec_from_file_location("_exec_merge_latents", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--h5", str(a), str(b), "--out", str(tmp_path / "m.csv"), "--report", str(tmp_path / "r.csv"), "--strict"]
    assert module.main(args) == 3
    assert "S42: lacks 1 series" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "r.csv")["run"].tolist() == ["S42"]
    c = _run(tmp_path, "y", _dense([1000009], 3))
    assert module.main(["--h5-union", str(a), str(c), "--out", str(tmp_path / "u.h5")]) == 0
    assert len(emb_table(tmp_path / "u.h5")) == 3
