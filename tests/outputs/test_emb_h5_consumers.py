"""The emb.h5 of a real tiny training run (tests/outputs/conftest.py) passes the
structural checks and the re-stated consumer behaviours (per-scan table, legacy emb.npy, GWAS phenotype TSV,
multi-seed merge, incremental-run merge, 4-way key split, recon/metrics siblings), and our own export equals them
The consumers are re-stated from the original's documentation."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from Engineering.data.demo import FIELD, SERIES
from Engineering.outputs import check_emb_h5
from Engineering.outputs.latent_tables import export_latents
from tests.outputs.conftest import LATENT as L
from tests.outputs.conftest import TinyRuns, infer

pytestmark = pytest.mark.slow  # every test reads the latents of the session's tiny training runs


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", swmr=True) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _process_embs(path: Path, prep_zs: bool) -> pd.DataFrame:
    """Re-statement of traverse_embH5.process_embs: visititems, name split on '/', full array as data."""
    rows: list[list] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            parts = name.split("/")
            rows.append([parts[0], parts[1], parts[2], parts[-1], obj[()]])

    with h5py.File(path, "r", swmr=True) as f:
        f.visititems(visit)
    df = pd.DataFrame(rows, columns=["subID", "fieldID", "instanceID", "data_tag", "data"])
    if prep_zs:
        zs = np.stack([np.squeeze(d) for d in df.pop("data")])
        df = pd.concat([df, pd.DataFrame(zs, columns=[f"Z{i}" for i in range(zs.shape[1])])], axis=1)
    return df


def _finalise(npy: Path, out_dir: Path) -> pd.DataFrame:
    """Re-statement of prep_latents.finalise_latentDFs with the quantile transform on."""
    from sklearn.preprocessing import QuantileTransformer as qt

    df = pd.DataFrame(np.load(npy, allow_pickle=True), columns=["id", "dataset", "MRIvisit", "data_tag", "Zs"])
    df["id"] = df["id"].astype(int)
    df["MRIvisit"] = df["MRIvisit"].map(lambda s: int(s[0]))
    v2 = df[df.MRIvisit == 2]
    v3 = df[(df.MRIvisit == 3) & ~df.id.isin(v2.id)]
    kept = pd.concat([v2, v3])
    zs = np.stack([np.squeeze(z) for z in kept.Zs])
    raw = pd.DataFrame({"FID": kept.id.values, "IID": kept.id.values})
    raw = pd.concat([raw, pd.DataFrame(zs, columns=[f"Z{i}" for i in range(L)])], axis=1)
    raw.to_csv(out_dir / "processed_raw.tsv", sep="\t", index=False)
    norm = raw.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_quantiles > n_samples
        norm.iloc[:, 2:] = qt(output_distribution="normal").fit_transform(raw.iloc[:, 2:])
    norm.to_csv(out_dir / "processed.tsv", sep="\t", index=False)
    return raw


@pytest.fixture(scope="module")
def emb_path(tiny_runs: TinyRuns) -> Path:
    return tiny_runs.output(1701) / "emb.h5"


@pytest.fixture(scope="module")
def halves(tiny_runs: TinyRuns, tmp_path_factory) -> list[Path]:
    """Two inference runs of seed 1701 with batch size 1, on files holding half of the patients each."""
    outs = []
    for n, patients in enumerate((tiny_runs.patients[:4], tiny_runs.patients[4:])):
        datadir = tmp_path_factory.mktemp(f"half{n}")
        with h5py.File(tiny_runs.datadir / "data.h5", "r") as src, h5py.File(datadir / "data.h5", "w") as dst:
            for pid in patients:
                src.copy(src[pid], dst, name=pid)
        shutil.copy(tiny_runs.datadir / "folds.csv", datadir / "folds.csv")
        outs.append(infer(tiny_runs, 1701, f"half{n}", "--batch_size", "1", datadir=datadir))
    return outs


def test_checks_1_to_5_structure_ids_dtype(tiny_runs: TinyRuns, emb_path: Path) -> None:
    assert emb_path.name == "emb.h5" and emb_path.parent.name == "Output_fullDS"
    assert check_emb_h5(emb_path, expected_keys=tiny_runs.expected_keys, latent_dim=L) == []
    for key, value in _datasets(emb_path).items():
        sub, field, inst, tag = key.split("/")
        assert re.fullmatch(r"\d{7}", sub) and re.fullmatch(r"[23]_\d+", inst) and field == FIELD and tag == SERIES
        assert value.shape == (1, 1, 1, L) and value.dtype == np.float64 and np.isfinite(value).all()
    with h5py.File(emb_path, "r") as f:
        assert int(f.attrs["imlatent_seed"]) == 1701


def test_check_6_batch_size_and_other_subjects_do_not_change_latents(emb_path: Path, halves: list[Path]) -> None:
    full = _datasets(emb_path)
    for half in halves:
        for key, value in _datasets(half).items():
            np.testing.assert_allclose(value, full[key], rtol=0, atol=1e-5)


def test_checks_7_8_per_scan_table_and_legacy_npy(tmp_path: Path, emb_path: Path) -> None:
    table = _process_embs(emb_path, prep_zs=True)
    assert list(table.columns) == ["subID", "fieldID", "instanceID", "data_tag", *[f"Z{i}" for i in range(L)]]
    full = _datasets(emb_path)
    assert len(table) == len(full)
    for _, row in table.iterrows():
        key = f"{row.subID}/{row.fieldID}/{row.instanceID}/{row.data_tag}"
        np.testing.assert_array_equal(row.iloc[4:].to_numpy(float), full[key].ravel())
    npy = tmp_path / "emb.npy"
    np.save(npy, _process_embs(emb_path, prep_zs=False).values)
    loaded = np.load(npy, allow_pickle=True)
    assert loaded.shape == (len(full), 5) and all(z.shape == (1, 1, 1, L) for z in loaded[:, 4])


def _gwas_reference(emb_path: Path, out_dir: Path) -> pd.DataFrame:
    npy = out_dir / "emb.npy"
    np.save(npy, _process_embs(emb_path, prep_zs=False).values)
    return _finalise(npy, out_dir)


def test_check_9_gwas_phenotype_tsv(tmp_path: Path, tiny_runs: TinyRuns, emb_path: Path) -> None:
    raw = _gwas_reference(emb_path, tmp_path)
    header = ["FID", "IID", *[f"Z{i}" for i in range(L)]]
    for name in ("processed_raw.tsv", "processed.tsv"):
        assert (tmp_path / name).read_text().splitlines()[0].split("\t") == header
    assert (raw.FID == raw.IID).all() and raw.FID.is_unique
    visit2 = sorted({int(k.split("/")[0]) for k in tiny_runs.expected_keys if "/2_0/" in k})
    assert raw.FID.tolist() == visit2 + [int(tiny_runs.visit3_only)]  # visit 2, then visit-3-only
    full = _datasets(emb_path)
    for sub in tiny_runs.both_visits:  # once, with the visit-2 latent
        np.testing.assert_array_equal(raw[raw.FID == int(sub)].iloc[0, 2:].to_numpy(float),
                                      full[f"{sub}/{FIELD}/2_0/{SERIES}"].ravel())  # fmt: skip
    norm = pd.read_csv(tmp_path / "processed.tsv", sep="\t")
    for col in header[2:]:
        assert abs(norm[col].mean()) < 0.2
        order = np.argsort(raw[col].to_numpy())
        assert np.all(np.diff(norm[col].to_numpy()[order]) >= 0)


def test_check_10_multi_seed_merge_by_position(tmp_path: Path, tiny_runs: TinyRuns) -> None:
    tables = {}
    for seed in (1701, 42):
        path = tiny_runs.output(seed) / "emb.h5"
        assert int(re.search(r"seed_(\d+)", str(path)).group(1)) == seed
        out = tmp_path / f"S{seed}"
        out.mkdir()
        tables[seed] = _gwas_reference(path, out)
    assert set(_datasets(tiny_runs.output(1701) / "emb.h5")) == set(_datasets(tiny_runs.output(42) / "emb.h5"))
    assert tables[1701].FID.tolist() == tables[42].FID.tolist()
    parts = [t.iloc[:, 2:].add_prefix(f"S{s}_") for s, t in tables.items()]
    merged = pd.concat([tables[1701][["FID", "IID"]], *parts], axis=1)
    assert list(merged.columns[:4]) == ["FID", "IID", "S1701_Z0", "S1701_Z1"] and merged.shape[1] == 2 + 2 * L
    for t in tables.values():
        assert (t.FID == merged.FID).all()
    r = [np.corrcoef(merged[f"S1701_Z{i}"], merged[f"S42_Z{i}"])[0, 1] for i in range(L)]
    assert np.isfinite(r).all()
    assert not np.allclose(merged.filter(like="S1701_").to_numpy(), merged.filter(like="S42_").to_numpy())


def _union(dst: h5py.Group, src: h5py.Group) -> None:
    for name, obj in src.items():
        if isinstance(obj, h5py.Group):
            _union(dst.require_group(name), obj)
        else:
            dst.copy(obj, name if name not in dst else f"{name}_new")


def test_check_11_incremental_runs_merge_by_group_union(
    tmp_path: Path, tiny_runs: TinyRuns, emb_path: Path, halves: list[Path]
) -> None:
    merged = tmp_path / "merged.h5"
    with h5py.File(merged, "w") as out:
        for part in halves:
            with h5py.File(part, "r") as src:
                _union(out, src)
    assert check_emb_h5(merged, expected_keys=tiny_runs.expected_keys, latent_dim=L) == []
    full = _datasets(emb_path)
    union = _datasets(merged)
    assert set(union) == set(full)  # no _new keys
    for key, value in union.items():
        np.testing.assert_allclose(value, full[key], rtol=0, atol=1e-5)


def test_check_12_four_way_split_recon_subset_and_metrics_columns(emb_path: Path) -> None:
    out_dir = emb_path.parent
    names = {stem: list(_datasets(out_dir / f"{stem}.h5")) for stem in ("emb", "recon")}
    for name in names["emb"] + names["recon"]:
        sub, field, inst, key = name.split("/")  # H5_to_DF unpacks exactly 4 parts
    assert names["recon"] and set(names["recon"]) <= set(names["emb"])
    assert len({n.split("/")[0] for n in names["recon"]}) == 2  # --n_save_recon_subs 2
    metrics = pd.read_csv(out_dir / "metrics.csv", dtype={"SubID": str})
    assert {"SubID", "FieldID", "InstanceID", "Acq", "SSIM", "PSNR"} <= set(metrics.columns)
    assert set(metrics.SubID) <= {n.split("/")[0] for n in names["emb"]}


def test_check_13_own_export_equals_the_consumers_tables(tmp_path: Path, emb_path: Path) -> None:
    reference = _process_embs(emb_path, prep_zs=True)
    reference.to_csv(tmp_path / "reference_long.tsv", sep="\t", index=False)
    export_latents(emb_path, tmp_path / "long.tsv")
    ids = {c: str for c in ("subID", "fieldID", "instanceID", "data_tag")}
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "long.tsv", sep="\t", dtype=ids),
        pd.read_csv(tmp_path / "reference_long.tsv", sep="\t", dtype=ids),
        check_exact=True,
    )
    _gwas_reference(emb_path, tmp_path)
    export_latents(emb_path, tmp_path / "gwas.tsv", gwas=True)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "gwas.tsv", sep="\t"),
        pd.read_csv(tmp_path / "processed_raw.tsv", sep="\t"),
        check_exact=True,
    )
