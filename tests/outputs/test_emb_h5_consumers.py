"""outputs_and_consumers.md §3.2: a tiny emb.h5 written by our writer passes the structural checks and the
re-stated consumer behaviours (per-scan table, legacy emb.npy, GWAS phenotype TSV, multi-seed merge,
incremental-run merge, 4-way key split, recon/metrics siblings). The consumers are re-stated from the spec."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from Engineering.outputs import ResultHolder, check_emb_h5, write_metrics, write_results_h5
from Engineering.science.metrics import Evaluator

L = 8
FIELD = "20208"
TAG = "primary_LAX_4Ch_transverse_0"
# fixture of §3.3 after selection: 8 subjects 2_0 only, 2 with 2_0 and 3_0, 1 with 3_0 only
SCANS = [(f"{1000000 + n}", "2_0") for n in range(1, 11)] + [("1000009", "3_0"), ("1000010", "3_0"), ("1000011", "3_0")]
KEYS = sorted(f"{sub}/{FIELD}/{inst}/{TAG}" for sub, inst in SCANS)


def _latent(key: str, seed: int) -> np.ndarray:
    """A stand-in encoder: a deterministic latent per (scan, seed)."""
    rng = np.random.default_rng([seed, *(int(c) for c in re.findall(r"\d+", key))])
    return rng.standard_normal(L).astype(np.float32)


def _run_inference(out_dir: Path, seed: int, keys: list[str] = KEYS, batch: int = 4) -> Path:
    holder = ResultHolder()
    for s in range(0, len(keys), batch):
        chunk = keys[s : s + batch]
        zeros = [0] * len(chunk)
        holder.add(chunk, (zeros, zeros, zeros), np.stack([_latent(k, seed) for k in chunk]))
    path = out_dir / "emb.h5"
    write_results_h5(path, holder.to_dense())
    return path


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
    qt = pytest.importorskip("sklearn.preprocessing").QuantileTransformer
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


@pytest.fixture
def emb_path(tmp_path: Path) -> Path:
    return _run_inference(tmp_path / "run_seed_1701" / "Output_fullDS", seed=1701)


def test_checks_1_to_5_structure_ids_dtype(emb_path: Path) -> None:
    assert emb_path.name == "emb.h5" and emb_path.parent.name == "Output_fullDS"
    assert check_emb_h5(emb_path, expected_keys=KEYS, latent_dim=L) == []
    with h5py.File(emb_path, "r", swmr=True) as f:
        for key in KEYS:
            sub, field, inst, tag = key.split("/")
            assert re.fullmatch(r"\d{7}", sub) and re.fullmatch(r"[23]_\d+", inst) and tag == TAG
            assert f[key].shape == (1, 1, 1, L) and f[key].dtype == np.float64
            assert np.isfinite(f[key][()]).all()
            np.testing.assert_array_equal(f[key][0, 0, 0], _latent(key, 1701))


def test_check_6_batch_size_and_order_do_not_change_latents(tmp_path: Path, emb_path: Path) -> None:
    other = _run_inference(tmp_path / "b1", seed=1701, keys=KEYS[::-1], batch=1)
    with h5py.File(emb_path, "r") as a, h5py.File(other, "r") as b:
        for key in KEYS:
            np.testing.assert_array_equal(a[key][()], b[key][()])


def test_checks_7_8_per_scan_table_and_legacy_npy(tmp_path: Path, emb_path: Path) -> None:
    table = _process_embs(emb_path, prep_zs=True)
    assert list(table.columns) == ["subID", "fieldID", "instanceID", "data_tag", *[f"Z{i}" for i in range(L)]]
    assert len(table) == len(KEYS)
    for _, row in table.iterrows():
        key = f"{row.subID}/{row.fieldID}/{row.instanceID}/{row.data_tag}"
        np.testing.assert_array_equal(row.iloc[4:].to_numpy(float), _latent(key, 1701))
    npy = tmp_path / "emb.npy"
    np.save(npy, _process_embs(emb_path, prep_zs=False).values)
    loaded = np.load(npy, allow_pickle=True)
    assert loaded.shape == (len(KEYS), 5) and all(z.shape == (1, 1, 1, L) for z in loaded[:, 4])


def test_check_9_gwas_phenotype_tsv(tmp_path: Path, emb_path: Path) -> None:
    npy = tmp_path / "emb.npy"
    np.save(npy, _process_embs(emb_path, prep_zs=False).values)
    raw = _finalise(npy, tmp_path)
    header = ["FID", "IID", *[f"Z{i}" for i in range(L)]]
    for name in ("processed_raw.tsv", "processed.tsv"):
        assert (tmp_path / name).read_text().splitlines()[0].split("\t") == header
    assert (raw.FID == raw.IID).all() and raw.FID.is_unique
    assert raw.FID.tolist() == [1000000 + n for n in range(1, 11)] + [1000011]  # visit 2, then visit-3-only
    both = raw[raw.FID == 1000009].iloc[0, 2:].to_numpy(float)
    np.testing.assert_array_equal(both, _latent(f"1000009/{FIELD}/2_0/{TAG}", 1701))
    norm = pd.read_csv(tmp_path / "processed.tsv", sep="\t")
    for col in header[2:]:
        assert abs(norm[col].mean()) < 0.2
        order = np.argsort(raw[col].to_numpy())
        assert np.all(np.diff(norm[col].to_numpy()[order]) >= 0)


def test_check_10_multi_seed_merge_by_position(tmp_path: Path, emb_path: Path) -> None:
    seeds = {1701: emb_path, 42: _run_inference(tmp_path / "run_seed_42" / "Output_fullDS", seed=42)}
    tables = {}
    for seed, path in seeds.items():
        assert int(re.search(r"seed_(\d+)", str(path)).group(1)) == seed
        npy = path.parent / f"S{seed}_emb.npy"
        np.save(npy, _process_embs(path, prep_zs=False).values)
        tables[seed] = _finalise(npy, path.parent)
    assert tables[1701].FID.tolist() == tables[42].FID.tolist()
    parts = [t.iloc[:, 2:].add_prefix(f"S{s}_") for s, t in tables.items()]
    merged = pd.concat([tables[1701][["FID", "IID"]], *parts], axis=1)
    assert list(merged.columns[:4]) == ["FID", "IID", "S1701_Z0", "S1701_Z1"] and merged.shape[1] == 2 + 2 * L
    for t in tables.values():
        assert (t.FID == merged.FID).all()
    r = [np.corrcoef(merged[f"S1701_Z{i}"], merged[f"S42_Z{i}"])[0, 1] for i in range(L)]
    assert np.isfinite(r).all()


def _union(dst: h5py.Group, src: h5py.Group) -> None:
    for name, obj in src.items():
        if isinstance(obj, h5py.Group):
            _union(dst.require_group(name), obj)
        else:
            dst.copy(obj, name if name not in dst else f"{name}_new")


def test_check_11_incremental_runs_merge_by_group_union(tmp_path: Path, emb_path: Path) -> None:
    first = _run_inference(tmp_path / "v1", seed=1701, keys=KEYS[:6])
    second = _run_inference(tmp_path / "v2", seed=1701, keys=KEYS[6:])
    merged = tmp_path / "merged.h5"
    with h5py.File(merged, "w") as out:
        for part in (first, second):
            with h5py.File(part, "r") as src:
                _union(out, src)
    assert check_emb_h5(merged, expected_keys=KEYS, latent_dim=L) == []
    with h5py.File(merged, "r") as m, h5py.File(emb_path, "r") as full:
        for key in KEYS:
            np.testing.assert_array_equal(m[key][()], full[key][()])


def test_check_12_four_way_split_recon_subset_and_metrics_columns(tmp_path: Path, emb_path: Path) -> None:
    out_dir = emb_path.parent
    recon = ResultHolder()
    chosen = {"1000002", "1000009"}
    keys = KEYS[:4]
    gt = np.random.default_rng(0).random((4, 1, 2, 16, 16))
    recon.add(keys, ([0] * 4,) * 3, gt[:, 0] * 0.9, only_subjects=chosen)
    write_results_h5(out_dir / "recon.h5", recon.to_dense())
    write_metrics(out_dir, Evaluator().evaluate(gt, gt * 0.9, keys))
    names: dict[str, list[str]] = {}
    for stem in ("emb", "recon"):
        with h5py.File(out_dir / f"{stem}.h5", "r") as f:
            names[stem] = []
            f.visititems(lambda n, o, s=stem: names[s].append(n) if isinstance(o, h5py.Dataset) else None)
    for name in names["emb"] + names["recon"]:
        sub, field, inst, key = name.split("/")  # H5_to_DF unpacks exactly 4 parts
    assert set(names["recon"]) <= set(names["emb"]) and {n.split("/")[0] for n in names["recon"]} == {"1000002"}
    with h5py.File(out_dir / "recon.h5", "r") as f:
        assert f[names["recon"][0]].shape == (1, 1, 1, 2, 16, 16)
    metrics = pd.read_csv(out_dir / "metrics.csv", dtype={"SubID": str})
    assert {"SubID", "FieldID", "InstanceID", "Acq", "SSIM", "PSNR"} <= set(metrics.columns)
    assert sorted(set(metrics.SubID)) == sorted(k.split("/")[0] for k in keys)
