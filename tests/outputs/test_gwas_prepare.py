"""Executors/gwas_prepare.py and Engineering/outputs/gwas on synthetic seeds with known structure.

Every seed's first SHARED columns are noisy copies of the same subject factors (permuted and sign-flipped per
seed); the remaining columns are independent noise. The selection must keep exactly the shared columns.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Engineering.errors import ConfigError, DataError
from Engineering.outputs import write_results_h5
from Engineering.outputs.gwas import GwasOptions, prepare_gwas
from Engineering.outputs.gwas.merging import align_seeds, merge_seeds
from Engineering.outputs.gwas.phenotypes import build_phenotypes, inverse_normal, resolve_runs

L, SHARED, N = 6, 3, 120
TAG = "primary_LAX_4Ch_transverse_0"
SUBJECTS = [1000001 + n for n in range(N)]
BOTH = SUBJECTS[:20]  # visit 2 and visit 3
V3_ONLY = SUBJECTS[-10:]  # visit 3 only; the IDs are the largest, so a plain FID sort would not reorder them
V1_ONLY = [999999]  # another visit only: dropped by the GWAS rule (6-digit ID: also checks integer IDs)
SEEDS = (1701, 42, 1993)


def _keys() -> list[tuple[int, str]]:
    keys = [(s, "2_0") for s in SUBJECTS if s not in V3_ONLY]
    return keys + [(s, "3_0") for s in BOTH + V3_ONLY] + [(s, "1_0") for s in V1_ONLY]


def write_seeds(root: Path, seeds=SEEDS, drop: dict[int, list[int]] | None = None) -> list[Path]:
    """One Output_fullDS/emb.h5 per seed; ``drop`` removes subjects from a seed."""
    keys = _keys()
    factors = np.random.default_rng(0).standard_normal((len(keys), SHARED))
    outs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        shared = factors[:, rng.permutation(SHARED)] * rng.choice([-1.0, 1.0], SHARED) * rng.uniform(0.5, 2, SHARED)
        latents = np.hstack(
            [shared + 0.15 * rng.standard_normal(shared.shape), rng.standard_normal((len(keys), L - SHARED))]
        )
        dense = {
            f"{sub}/20208/{inst}/{TAG}": z.reshape(1, 1, 1, L)
            for (sub, inst), z in zip(keys, latents, strict=True)
            if sub not in (drop or {}).get(seed, [])
        }
        out = root / f"F20208_heart_mulseed_{seed}_3Dfold0_prec32_DiffAE" / "Output_fullDS"
        write_results_h5(out / "emb.h5", dense)
        outs.append(out)
    return outs


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory) -> list[Path]:
    return write_seeds(tmp_path_factory.mktemp("seeds"))


def _prepare(runs: list[Path], out: Path, **kwargs):
    return prepare_gwas(GwasOptions(runs=tuple(runs), out=out, **kwargs))


def _read(path: Path) -> pd.DataFrame:
    """As regenie and PLINK2 read it: whitespace-separated, header line, NA for missing."""
    return pd.read_csv(path, sep=r"\s+", na_values=["NA"], keep_default_na=False)


def _write_covariates(path: Path) -> Path:
    """Age, Sex (M/F) and Batch (12 levels) for every subject but the first three."""
    rows = [f"{s},{60 + s % 7},{'MF'[s % 2]},batch{s % 12}" for s in SUBJECTS[3:]]
    path.write_text("eid,Age,Sex,Batch\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def prepared(seeds_dir, tmp_path_factory) -> Path:
    """The folder of one full call: three seeds, covariates, alignment and a PCA merge."""
    out = tmp_path_factory.mktemp("gwas") / "out"
    covars = _write_covariates(out.parent / "covars.csv")
    _prepare(seeds_dir, out, covariates=covars, cat_covars=("Sex", "Batch"), merge="pca")
    return out


def test_shared_columns_are_selected_and_noise_columns_are_not(prepared):
    table = pd.read_csv(prepared / "reproducibility.tsv", sep="\t")
    shared = table["column"].str.extract(r"_Z(\d+)$")[0].astype(int) < SHARED
    assert table.loc[shared, "best_r"].min() > 0.9 and table.loc[~shared, "best_r"].max() < 0.4
    assert table["selected"].tolist() == shared.tolist()
    expected = [f"S{s}_Z{k}" for s in SEEDS for k in range(SHARED)]
    assert (prepared / "pheno_columns.txt").read_text().strip().split(",") == expected
    filtered = pd.read_csv(prepared / "latents_similarity_filtered.tsv", sep="\t")
    assert list(filtered.columns) == ["tID_ref", "col_ref", "tID_best_match", "col_best_match", "best_similarity"]
    assert len(filtered) == SHARED * 3  # every shared column of a seed, matched in each later seed
    assert (filtered["best_similarity"] > 0.8).all() and filtered["tID_ref"].str.contains("mulseed_1701").any()
    assert set(filtered["col_ref"]) <= {f"Z{k}" for k in range(SHARED)}
    everything = pd.read_csv(prepared / "latents_similarity.tsv", sep="\t")
    assert len(everything) == L * 3  # seed pairs (1701, 42), (1701, 1993), (42, 1993)


def test_phenotype_files_read_as_regenie_reads_them(prepared):
    for name in ("phenotypes_raw.tsv", "phenotypes_int.tsv"):
        lines = (prepared / name).read_text().splitlines()
        header = lines[0].split("\t")
        assert header == ["FID", "IID", *[f"S{s}_Z{k}" for s in SEEDS for k in range(L)]]
        assert all(len(line.split("\t")) == len(header) for line in lines)
        table = _read(prepared / name)
        assert table["FID"].dtype == np.int64 and (table["FID"] == table["IID"]).all() and table["FID"].is_unique
        assert table.iloc[:, 2:].notna().all().all()


def test_row_order_and_values_follow_the_visit_policy(prepared, seeds_dir):
    raw = _read(prepared / "phenotypes_raw.tsv")
    visit2 = [s for s in SUBJECTS if s not in V3_ONLY]
    assert raw["FID"].tolist() == visit2 + V3_ONLY  # visit-2 subjects, then the visit-3-only ones
    import h5py

    with h5py.File(seeds_dir[1] / "emb.h5", "r") as f:
        both = f[f"{BOTH[0]}/20208/2_0/{TAG}"][()].ravel()
        only3 = f[f"{V3_ONLY[0]}/20208/3_0/{TAG}"][()].ravel()
    row = raw.set_index("FID")
    np.testing.assert_array_equal(row.loc[BOTH[0], [f"S42_Z{k}" for k in range(L)]].to_numpy(float), both)
    np.testing.assert_array_equal(row.loc[V3_ONLY[0], [f"S42_Z{k}" for k in range(L)]].to_numpy(float), only3)


def test_all_visits_policy_keeps_a_visit_column(seeds_dir, tmp_path):
    _prepare(seeds_dir[:2], tmp_path / "out", visits="all")
    raw = _read(tmp_path / "out" / "phenotypes_raw.tsv")
    assert list(raw.columns[:3]) == ["FID", "IID", "visit"]
    assert raw[["visit", "FID"]].values.tolist() == sorted([v, s] for s, v in ((s, int(i[0])) for s, i in _keys()))
    assert not (tmp_path / "out" / "run_regenie.sh").exists()  # regenie needs one row per subject
    assert "no regenie script was written" in (tmp_path / "out" / "summary.md").read_text()


def test_inverse_normal_is_standard_normal_with_ties_handled():
    values = np.repeat(np.arange(50.0), 20)  # 1000 values, every one tied 20 times
    values[::97] = np.nan
    z = inverse_normal(values)
    ok = ~np.isnan(values)
    assert np.isnan(z[~ok]).all() and abs(np.nanmean(z)) < 1e-9 and abs(np.nanstd(z) - 1) < 0.02
    assert len(np.unique(z[ok])) == ok.sum()  # ties broken ...
    np.testing.assert_array_equal(z, inverse_normal(values))  # ... reproducibly
    assert not np.array_equal(z, inverse_normal(values, random_state=7), equal_nan=True)
    groups = pd.DataFrame({"raw": values[ok], "z": z[ok]}).groupby("raw")["z"]
    assert (groups.min().to_numpy()[1:] > groups.max().to_numpy()[:-1]).all()  # monotone in the raw value
    avg = inverse_normal(values, ties="average")
    assert len(np.unique(avg[ok])) == 50 and abs(np.nanmean(avg)) < 1e-3 and abs(np.nanstd(avg) - 1) < 0.05


def test_transformed_columns_are_normal_and_monotone(prepared):
    raw, norm = _read(prepared / "phenotypes_raw.tsv"), _read(prepared / "phenotypes_int.tsv")
    for column in raw.columns[2:]:
        assert abs(norm[column].mean()) < 1e-9 and abs(norm[column].std(ddof=0) - 1) < 0.02
        assert (np.diff(norm[column].to_numpy()[np.argsort(raw[column].to_numpy())]) > 0).all()


def test_missing_subjects_are_na_and_lists_are_integers(tmp_path):
    runs = write_seeds(tmp_path / "seeds", seeds=SEEDS[:2], drop={42: SUBJECTS[5:8]})
    (tmp_path / "exclude.txt").write_text(f"{SUBJECTS[0]}\n# an outlier\n{SUBJECTS[1]}\n")
    (tmp_path / "include.txt").write_text("\n".join(str(s) for s in [*SUBJECTS[:100], 100000]) + "\n")
    outcome = _prepare(
        runs, tmp_path / "out", include=tmp_path / "include.txt", exclude=tmp_path / "exclude.txt", naming="index"
    )
    raw = _read(tmp_path / "out" / "phenotypes_raw.tsv")
    assert raw["FID"].tolist() == SUBJECTS[2:100]  # 100000 is no prefix of 1000001: exact integer matching
    assert list(raw.columns[2:4]) == ["Z0_S1", "Z1_S1"] and "Z5_S2" in raw.columns
    lacking = raw[raw["FID"].isin(SUBJECTS[5:8])]
    assert lacking.filter(like="_S2").isna().all().all() and lacking.filter(like="_S1").notna().all().all()
    assert "\tNA\t" in (tmp_path / "out" / "phenotypes_int.tsv").read_text()
    assert outcome.phenotypes.include_not_found == [100000] and outcome.phenotypes.excluded == SUBJECTS[:2]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "S42 has no latents (NA) for 3 row(s)" in summary and "removed by --exclude: 2 subject(s)" in summary
    assert set((tmp_path / "out" / "pheno_columns.txt").read_text().strip().split(",")) <= set(raw.columns)


def test_alignment_and_merges(prepared, seeds_dir):
    mapping = pd.read_csv(prepared / "alignment.tsv", sep="\t")
    shared = mapping[mapping["ref_column"].str.extract(r"Z(\d+)")[0].astype(int) < SHARED]
    assert (shared["cosine"].abs() > 0.9).all() and len(mapping) == L * len(SEEDS)
    aligned = _read(prepared / "aligned_raw.tsv")
    for k in range(SHARED):  # sign-flipped to agree with the reference
        assert np.corrcoef(aligned[f"A{k}_S1701"], aligned[f"A{k}_S1993"])[0, 1] > 0.9
    merged = _read(prepared / "merged_raw.tsv")
    assert list(merged.columns) == ["FID", "IID", *[f"Z{k}" for k in range(L)]] and merged.notna().all().all()
    assert abs(_read(prepared / "merged_int.tsv")["Z0"].std(ddof=0) - 1) < 0.05
    runs = resolve_runs(seeds_dir)
    ref = _read(prepared / "phenotypes_raw.tsv")[[f"S1701_Z{k}" for k in range(SHARED)]].to_numpy()
    basis = np.hstack([ref, np.ones((len(ref), 1))])
    for method, n_runs in (("pca", 3), ("cca", 2), ("mcca", 3)):
        pheno = build_phenotypes(runs[:n_runs])
        first = merge_seeds(pheno, align_seeds(pheno), method)["Z0"].to_numpy()
        residual = first - basis @ np.linalg.lstsq(basis, first, rcond=None)[0]
        assert residual.var() < 0.1 * first.var(), method  # the first merged component lies in the shared factors
    with pytest.raises(ConfigError, match=r"--merge cca merges exactly two runs \(3 given\)"):
        merge_seeds(pheno, align_seeds(pheno), "cca")


def test_covariates_join_codes_and_report(prepared, seeds_dir, tmp_path):
    covars = _read(prepared / "covariates.tsv")
    pheno = _read(prepared / "phenotypes_int.tsv")
    assert list(covars.columns) == ["FID", "IID", "Age", "Sex", "Batch"]
    assert covars["IID"].tolist() == pheno["IID"].tolist()
    assert covars.loc[covars["IID"].isin(SUBJECTS[:3]), ["Age", "Sex", "Batch"]].isna().all().all()
    assert set(covars["Sex"].dropna()) == {0, 1} and covars["Batch"].max() == 11
    levels = pd.read_csv(prepared / "covariate_levels.tsv", sep="\t")
    assert levels[levels.covariate == "Sex"][["level", "code"]].values.tolist() == [["F", 0], ["M", 1]]
    missing = (prepared / "subjects_without_covariates.txt").read_text().split()
    assert [int(s) for s in missing] == SUBJECTS[:3]
    assert "Subjects without (complete) covariates: 3" in (prepared / "summary.md").read_text()
    script = (prepared / "run_regenie.sh").read_text()
    assert "--covarColList Age --catCovarList Sex,Batch --maxCatLevels 12" in script
    with pytest.raises(DataError, match=r"covars.csv: column 'Sex' has the non-numeric value '[MF]'.*--cat-covars"):
        _prepare(seeds_dir, tmp_path / "bad", covariates=prepared.parent / "covars.csv")
    assert not (tmp_path / "bad").exists()  # nothing half-written


def test_regenie_script_runs_both_steps(prepared, tmp_path):
    fake = tmp_path / "bin" / "regenie"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "$@" >> "$REGENIE_LOG"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "REGENIE_LOG": str(tmp_path / "log")}
    env.update(STEP1_BED="/g/array", STEP2_BGEN="/g/imp_chr@.bgen", CHROMS="21 22", OUT=str(tmp_path / "res"))
    subprocess.run(["bash", str(prepared / "run_regenie.sh")], env=env, check=True, timeout=60)
    calls = (tmp_path / "log").read_text().splitlines()
    assert len(calls) == 3 and calls[0].startswith("--step 1 --bed /g/array")
    columns = ",".join(f"S{s}_Z{k}" for s in SEEDS for k in range(SHARED))
    assert all(f"--phenoFile {prepared}/phenotypes_int.tsv --phenoColList {columns} --qt" in c for c in calls)
    assert "--bgen /g/imp_chr22.bgen --sample /g/imp_chr22.sample" in calls[2] and "--minINFO 0.3" in calls[2]
    assert f"--pred {tmp_path}/res/step1_pred.list" in calls[1]
    env.pop("STEP1_BED")
    proc = subprocess.run(["bash", str(prepared / "run_regenie.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "set STEP1_BED" in proc.stderr


def test_summary_and_plots(prepared):
    summary = (prepared / "summary.md").read_text()
    assert f"Kept: **{SHARED * len(SEEDS)} of {L * len(SEEDS)}**" in summary
    assert f"{N} subjects, one row each (visit 2: {N - len(V3_ONLY)}, visit 3: {len(V3_ONLY)})" in summary
    for png in ("seed_heatmap.png", "best_r_distribution.png"):
        assert (prepared / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({png})" in summary


def test_bad_inputs_are_one_line_errors(seeds_dir, tmp_path):
    with pytest.raises(DataError, match=r"run .*nowhere: .*emb.h5 does not exist"):
        _prepare([tmp_path / "nowhere"], tmp_path / "out")
    with pytest.raises(ConfigError, match=r"both have seed 1701; give each run its seed with --seeds"):
        _prepare([seeds_dir[0], seeds_dir[0]], tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"is not empty; choose a new folder or pass --overwrite"):
        _prepare(seeds_dir, tmp_path / "full")
    (tmp_path / "full" / "merged_raw.tsv").write_text("from an earlier call")
    _prepare(seeds_dir[:1], tmp_path / "full", overwrite=True)  # one run: no reproducibility files
    assert (tmp_path / "full" / "keep.txt").exists() and not (tmp_path / "full" / "merged_raw.tsv").exists()
    assert (tmp_path / "full" / "phenotypes_int.tsv").exists() and not (tmp_path / "full" / "seed_heatmap.png").exists()
    assert "One run only" in (tmp_path / "full" / "summary.md").read_text()
    with pytest.raises(ConfigError, match=r"--threshold 1.5 is out of range"):
        _prepare(seeds_dir, tmp_path / "out", threshold=1.5)


def _executor():
    path = Path(__file__).resolve().parents[2] / "Executors" / "gwas_prepare.py"
    spec = importlib.util.spec_from_file_location("_exec_gwas_prepare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_executor_with_seed_overrides(seeds_dir, tmp_path, capsys):
    args = ["--runs", *map(str, seeds_dir[:2]), "--seeds", "1", "2", "--out", str(tmp_path / "out")]
    assert _executor().main(args) == 0
    assert f"{N} rows, {2 * SHARED} of {2 * L} columns selected" in capsys.readouterr().out
    assert _read(tmp_path / "out" / "phenotypes_raw.tsv").columns[2] == "S1_Z0"


@pytest.mark.slow
def test_end_to_end_on_two_tiny_trained_seeds(tiny_runs, tmp_path):
    """Two tiny DiffAE seeds trained on the demo data (tests/outputs/conftest.py), then the command on their outputs."""
    runs = [str(tiny_runs.output(seed)) for seed in (1701, 42)]
    (tmp_path / "exclude.txt").write_text(f"{tiny_runs.both_visits[0]}\n")
    args = ["--runs", *runs, "--out", str(tmp_path / "gwas"), "--exclude", str(tmp_path / "exclude.txt"), "--align"]
    assert _executor().main(args) == 0
    raw = _read(tmp_path / "gwas" / "phenotypes_raw.tsv")
    visit2 = sorted({int(k.split("/")[0]) for k in tiny_runs.expected_keys if "/2_0/" in k})
    expected = [s for s in visit2 if s != int(tiny_runs.both_visits[0])] + [int(tiny_runs.visit3_only)]
    assert raw["FID"].tolist() == expected and raw.shape[1] == 2 + 2 * 8
    assert raw.columns[2] == "S1701_Z0" and raw.columns[-1] == "S42_Z7" and raw.notna().all().all()
    similarity = pd.read_csv(tmp_path / "gwas" / "latents_similarity.tsv", sep="\t")
    assert set(similarity["tID_ref"]) == {"demo_mulseed_1701_tinyfold0_prec32_DiffAE"} and len(similarity) == 8
    listed = (tmp_path / "gwas" / "pheno_columns.txt").read_text().strip()
    kept = pd.read_csv(tmp_path / "gwas" / "reproducibility.tsv", sep="\t").query("selected")["column"].tolist()
    assert listed.split(",") == kept if kept else listed == ""
    summary = (tmp_path / "gwas" / "summary.md").read_text()
    assert "removed by --exclude: 1 subject(s)" in summary and "(visit 2: 6, visit 3: 1)" in summary
