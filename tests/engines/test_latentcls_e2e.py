"""main_latentcls.py end to end: a parent run's emb.h5 + a phenotype TSV -> trained regressor -> score files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from Engineering.engines.runner import main
from Engineering.outputs import write_results_h5

L = 6


def _parent_run(root, n=40):
    import numpy as np

    rng = np.random.default_rng(0)
    dense, rows = {}, []
    for i in range(n):
        sub = 1000000 + i
        z = rng.normal(size=L)
        dense[f"{sub}/20208/2_0/primary_LAX_4Ch_transverse_0"] = z.reshape(1, 1, 1, L)
        rows.append({"FID": sub, "y1": 2 * z[0] - z[1] + 0.01 * rng.normal()})
    write_results_h5(root / "Results" / "parent" / "Output_fullDSV2" / "emb.h5", dense)
    pd.DataFrame(rows).to_csv(root / "pheno.tsv", sep="\t", index=False)


@pytest.mark.slow
@pytest.mark.parametrize("run_mode", [4, 3])
def test_latent_regressor_learns_a_linear_phenotype(tmp_path, monkeypatch, repo_root, run_mode):
    monkeypatch.chdir(repo_root)
    _parent_run(tmp_path)
    args = [
        f"--json§save_path={tmp_path / 'Results'}",
        "--json§foldCSV=0",
        f"--json§datadir={tmp_path}",
        f"--json§DS_phenotypes={{'path': '{tmp_path / 'pheno.tsv'}', 'cols': 'y1'}}",
        "--parent_trainID",
        "parent",
        "--in_channels",
        str(L),
        "--accelerator",
        "cpu",
        "--num_workers",
        "0",
        "--num_epochs",
        "60",
        "--batch_size",
        "8",
        "--effective_batch_size",
        "8",
        "--lr",
        "0.05",
        "--no-tbactive",
        "--run_mode",
        str(run_mode),
        "--ema_decay",
        "0.5",
    ]
    assert main("latentcls", args) == 0
    (run_dir,) = (tmp_path / "Results" / "parent" / "ClassifyLatent").iterdir()
    scores = json.loads((run_dir / "Output" / "latent_scores.json").read_text())
    r2 = [v for k, v in _flatten(scores) if "r2" in k.lower()]
    assert r2 and max(r2) > 0.9, scores
    assert (run_dir / "Output" / "latent_predictions.csv").is_file()


def _flatten(d, prefix=""):
    for k, v in d.items() if isinstance(d, dict) else enumerate(d):
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            yield from _flatten(v, key + ".")
        elif isinstance(v, (int, float)):
            yield key, float(v)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_latentcls_runs_on_the_demo_data_json(tmp_path, monkeypatch, repo_root, task):
    """README's demo commands: the demo's phenotype table and data JSON feed the regressor and the classifier."""
    import numpy as np

    from Engineering.data.demo import write_demo_dataset

    monkeypatch.chdir(repo_root)
    demo = write_demo_dataset(tmp_path / "demo_data", n_patients=12, frames=4, size=8, n_folds=2, seed=5)
    rng = np.random.default_rng(0)
    parent = tmp_path / "Results" / "demo_demofold0_prec32_DiffAE"
    write_results_h5(
        parent / "Output_fullDS" / "emb.h5", {k: rng.normal(size=(1, 1, 1, L)) for k in demo.expected_keys}
    )
    args = [
        "--datajson_path", "Configs/demo/dataNpath_demo.json", f"--json§datadir={tmp_path / 'demo_data'}",
        f"--json§save_path={tmp_path / 'Results'}", f"--json§DS_phenotypes§path={demo.phenotypes_tsv}",
        "--parent_trainID", parent.name, "--parent_outfolder", "Output_fullDS", "--in_channels", str(L),
        "--accelerator", "cpu", "--num_workers", "0", "--num_epochs", "2", "--no-tbactive",
    ]  # fmt: skip
    if task == "classification":
        args += ["--json§latent_task", "classification", "--json§DS_phenotypes§cols", "Sex"]
    assert main("latentcls", args) == 0
    (run_dir,) = (parent / "ClassifyLatent").iterdir()
    assert {"latent_predictions.csv", "latent_scores.json"} <= {p.name for p in (run_dir / "Output").iterdir()}
