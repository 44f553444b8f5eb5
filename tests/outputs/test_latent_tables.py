"""emb.h5 → long table, visit rule, GWAS layout, writers and the export executor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from Engineering.errors import DataError
from Engineering.outputs import write_results_h5
from Engineering.outputs.latent_tables import (
    apply_visit_rule,
    emb_table,
    export_latents,
    gwas_table,
    read_id_list,
    write_table,
)

L = 4
TAG = "primary_LAX_4Ch_transverse_0"


def _latent(sub: int, inst: str, tag: str = TAG) -> np.ndarray:
    seed = sub * 10 + int(inst[0]) + len(tag)
    return np.random.default_rng(seed).normal(size=(1, 1, 1, L))


def write_emb(path: Path, keys: list[tuple[int, str, str]]) -> dict[str, np.ndarray]:
    dense = {f"{s}/20208/{i}/{t}": _latent(s, i, t) for s, i, t in keys}
    write_results_h5(path, dense)
    return dense


KEYS = [
    (1000002, "2_0", TAG),
    (1000001, "3_0", TAG),
    (1000001, "2_0", TAG),
    (1000003, "3_0", TAG),
    (1000004, "1_0", TAG),
]


def test_long_table_has_one_row_per_series(tmp_path):
    dense = write_emb(tmp_path / "emb.h5", KEYS)
    table = emb_table(tmp_path / "emb.h5")
    assert list(table.columns) == ["subID", "fieldID", "instanceID", "data_tag"] + [f"Z{i}" for i in range(L)]
    assert len(table) == len(KEYS)
    assert table["subID"].dtype == np.int64
    row = table[(table.subID == 1000002) & (table.instanceID == "2_0")].iloc[0]
    np.testing.assert_array_equal(
        row[[f"Z{i}" for i in range(L)]].to_numpy(float), dense[f"1000002/20208/2_0/{TAG}"].ravel()
    )


def test_filters_are_exact(tmp_path):
    write_emb(tmp_path / "emb.h5", [(1000001, "2_0", TAG), (100000, "2_0", TAG), (1000001, "2_0", TAG + "0")])
    table = emb_table(tmp_path / "emb.h5", subjects=[100000], data_tags=[TAG])
    assert table[["subID", "data_tag"]].values.tolist() == [[100000, TAG]]


def test_visit_rule_prefers_visit_2_then_3(tmp_path):
    write_emb(tmp_path / "emb.h5", KEYS)
    kept = apply_visit_rule(emb_table(tmp_path / "emb.h5"))
    assert sorted(zip(kept.subID, kept.instanceID, strict=True)) == [
        (1000001, "2_0"),
        (1000002, "2_0"),
        (1000003, "3_0"),
    ]


def test_gwas_layout_is_tab_separated_fid_iid_z(tmp_path):
    write_emb(tmp_path / "emb.h5", KEYS)
    table = export_latents(tmp_path / "emb.h5", tmp_path / "processed_raw.tsv", gwas=True)
    lines = (tmp_path / "processed_raw.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["FID", "IID"] + [f"Z{i}" for i in range(L)]
    assert [line.split("\t")[:2] for line in lines[1:]] == [
        ["1000001", "1000001"],
        ["1000002", "1000002"],
        ["1000003", "1000003"],
    ]
    back = pd.read_csv(tmp_path / "processed_raw.tsv", sep=r"\s+")
    np.testing.assert_array_equal(back.to_numpy(float), table.to_numpy(float))  # full float precision
    np.testing.assert_array_equal(back.iloc[0, 2:].to_numpy(float), _latent(1000001, "2_0").ravel())


def test_gwas_rows_are_visit_2_then_visit_3_only_and_missing_values_are_na(tmp_path):
    write_emb(tmp_path / "emb.h5", [(1000001, "3_0", TAG), (1000002, "2_0", TAG), (1000003, "2_0", TAG)])
    table = apply_visit_rule(emb_table(tmp_path / "emb.h5"))
    assert gwas_table(table)["FID"].tolist() == [1000002, 1000003, 1000001]  # the companion's order, not by ID
    table.loc[0, "Z1"] = np.nan
    write_table(gwas_table(table), tmp_path / "pheno.tsv", gwas=True)
    assert (tmp_path / "pheno.tsv").read_text().splitlines()[3].split("\t")[3] == "NA"


def test_gwas_rejects_duplicate_subjects_with_a_clear_message(tmp_path):
    write_emb(tmp_path / "emb.h5", [(1000001, "2_0", TAG), (1000001, "2_1", TAG)])
    with pytest.raises(DataError, match=r"subject 1000001 has 2 rows \(2_0/.*, 2_1/.*\).*one row per subject"):
        gwas_table(apply_visit_rule(emb_table(tmp_path / "emb.h5")))


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet"])
def test_write_table_by_extension(tmp_path, ext):
    write_emb(tmp_path / "emb.h5", KEYS)
    table = emb_table(tmp_path / "emb.h5")
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    path = write_table(table, tmp_path / f"t{ext}")
    back = (
        pd.read_parquet(path)
        if ext == ".parquet"
        else pd.read_csv(path, sep="," if ext == ".csv" else "\t", dtype={"fieldID": str})
    )
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_unknown_extension_message(tmp_path):
    with pytest.raises(DataError, match=r"extension '.xlsx' is unknown; expected .csv, .tsv or .parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.xlsx")


def test_split_mode_latents_are_refused(tmp_path):
    write_results_h5(tmp_path / "emb.h5", {f"1000001/20208/2_0/{TAG}": np.zeros((1, 2, 1, L))})
    with pytest.raises(DataError, match=r"has shape \(1, 2, 1, 4\); expected one latent vector \(1, 1, 1, L\)"):
        emb_table(tmp_path / "emb.h5")


def test_dataset_at_wrong_depth_is_refused(tmp_path):
    with h5py.File(tmp_path / "emb.h5", "w") as f:
        f.create_dataset("1000001/20208/x", data=np.zeros((1, 1, 1, L)))
    with pytest.raises(DataError, match=r"dataset '1000001/20208/x' is not at depth 4"):
        emb_table(tmp_path / "emb.h5")


def test_missing_file_message(tmp_path):
    with pytest.raises(DataError, match=r"latent file .*nope.h5 does not exist"):
        emb_table(tmp_path / "nope.h5")


def test_id_list_message(tmp_path):
    (tmp_path / "ids.txt").write_text("1000001\n# comment\n\nabc\n")
    with pytest.raises(DataError, match=r"ids.txt: line 4 is 'abc'; expected an integer subject ID"):
        read_id_list(tmp_path / "ids.txt")


def _executor(name: str):
    path = Path(__file__).resolve().parents[2] / "Executors" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_exec_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_executor_smoke(tmp_path, capsys):
    write_emb(tmp_path / "emb.h5", KEYS)
    (tmp_path / "ids.txt").write_text("1000001\n1000003\n")
    args = [
        "--h5",
        str(tmp_path / "emb.h5"),
        "--out",
        str(tmp_path / "g.txt"),
        "--gwas",
        "--subjects",
        str(tmp_path / "ids.txt"),
    ]
    assert _executor("export_latents").main(args) == 0
    assert "2 rows" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "g.txt", sep="\t")["FID"].tolist() == [1000001, 1000003]


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet"])
def test_table_round_trip_gives_back_the_same_emb_h5(tmp_path, ext):
    pytest.importorskip("pyarrow") if ext == ".parquet" else None
    import h5py

    from Engineering.outputs.latent_tables import export_latents, table_to_emb_h5

    rng = np.random.default_rng(3)
    dense = {
        f"{1000000 + i}/20208/{v}/primary_LAX_4Ch_transverse_0": rng.normal(size=(1, 1, 1, 5))
        for i in range(4)
        for v in ("2_0", "3_0")
    }
    write_results_h5(tmp_path / "emb.h5", dense)
    export_latents(tmp_path / "emb.h5", tmp_path / f"t{ext}")
    assert table_to_emb_h5(tmp_path / f"t{ext}", tmp_path / "back.h5") == len(dense)
    with h5py.File(tmp_path / "back.h5", "r") as f:
        for key, value in dense.items():
            np.testing.assert_array_equal(f[key][()], value)
            assert f[key].dtype == np.float64
