"""``summary.md``: one page on what went into the GWAS folder (subjects, visits, kept columns, correlations, gaps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from Engineering.outputs.gwas.covariates import Covariates
from Engineering.outputs.gwas.phenotypes import PhenotypeSet
from Engineering.outputs.gwas.reproducibility import Reproducibility

EXAMPLES = 10  # IDs listed inline before "…"


@dataclass
class Outcome:
    """What :func:`~Engineering.outputs.gwas.pipeline.prepare_gwas` produced, for the summary and the caller."""

    command: str
    phenotypes: PhenotypeSet
    visits: str
    naming: str
    selected: list[str] = field(default_factory=list)
    reproducibility: Reproducibility | None = None
    alignment: pd.DataFrame | None = None
    merge: str | None = None
    merged_rows: int = 0
    covariates: Covariates | None = None
    files: list[Path] = field(default_factory=list)


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:EXAMPLES])
    return shown + (", …" if len(ids) > EXAMPLES else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]


def _runs_section(outcome: Outcome) -> list[str]:
    pheno = outcome.phenotypes
    counts = pheno.series_per_visit
    visits = list(counts.columns)
    rows = []
    for run in pheno.runs:
        per_visit = [int(counts.loc[run.prefix, v]) if run.prefix in counts.index else 0 for v in visits]
        n_cols = sum(1 for o, _ in pheno.columns.values() if o is run)
        rows.append([run.index, run.seed, f"`{run.name}`", n_cols, *per_visit, len(pheno.missing[run.prefix])])
    header = ["n", "seed", "run", "latent columns", *[f"visit {v} series" for v in visits], "rows with NA"]
    return ["## Runs", "", *_table(header, rows), ""]


def _rows_section(outcome: Outcome) -> list[str]:
    pheno = outcome.phenotypes
    table = pheno.table
    per_visit = ", ".join(f"visit {v}: {n}" for v, n in pheno.rows_per_visit.items())
    if outcome.visits == "prefer2":
        text = (
            f"{len(table)} subjects, one row each ({per_visit}): the visit-2 row of every subject that has one, else "
            "its visit-3 row; other visits dropped. Visit-2 subjects come first, then the visit-3-only ones."
        )
    else:
        text = (
            f"{len(table)} rows of {table['IID'].nunique()} subjects ({per_visit}), every visit kept with a `visit` "
            "column. regenie needs one row per subject, so no regenie script was written (use `--visits prefer2`)."
        )
    lines = ["## Phenotype rows", "", text, ""]
    for run in pheno.runs:
        if pheno.missing[run.prefix]:
            missing = pheno.missing[run.prefix]
            lines.append(f"- {run.prefix} has no latents (NA) for {len(missing)} row(s): {_ids(missing)}")
    if pheno.excluded:
        lines.append(f"- removed by --exclude: {len(pheno.excluded)} subject(s): {_ids(pheno.excluded)}")
    if pheno.include_not_found:
        found = pheno.include_not_found
        lines.append(f"- in --include but in no run: {len(found)} subject(s): {_ids(found)}")
    if len(lines) == 4:
        lines.append("- every run has latents for every row; no subject was excluded")
    return [*lines, ""]


def _distribution(values: np.ndarray) -> str:
    q = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    return f"min {q[0]:.3f}, quartiles {q[1]:.3f} / {q[2]:.3f} / {q[3]:.3f}, max {q[4]:.3f}"


def _reproducibility_section(outcome: Outcome) -> list[str]:
    rep = outcome.reproducibility
    if rep is None:
        return [
            "## Cross-seed reproducibility",
            "",
            "One run only: no selection; every column is listed for regenie.",
            "",
        ]
    table = rep.per_column()
    rows = []
    for run in rep.runs:
        own = table[table["seed"] == run.seed]
        rows.append([run.prefix, len(own), int(own["selected"].sum()), f"{own['best_r'].median():.3f}"])
    shared = sorted(set(rep.n_common.values()))
    pairs = f"{shared[0]}" if len(shared) == 1 else f"{shared[0]}–{shared[-1]} per pair"
    bins = np.histogram(table["best_r"], bins=[0, 0.2, 0.4, 0.6, 0.8, 1.0 + 1e-12])[0]
    return [
        "## Cross-seed reproducibility",
        "",
        f"A column is kept when its best |Pearson r| with a column of another seed is above {rep.threshold:g} "
        f"(raw latents over the subjects both seeds have: {pairs}). Kept: **{int(table['selected'].sum())} of {len(table)}**.",
        "",
        *_table(["seed", "columns", "kept", "median best |r|"], rows),
        "",
        f"Best |r| per column: {_distribution(table['best_r'].to_numpy())}. Columns per bin "
        f"[0, .2, .4, .6, .8, 1]: {', '.join(str(int(b)) for b in bins)}.",
        "",
        "![seed-by-seed best-match correlations](seed_heatmap.png)",
        "",
        "![distribution of best-match correlations](best_r_distribution.png)",
        "",
    ]


def _merge_section(outcome: Outcome) -> list[str]:
    if outcome.alignment is None:
        return []
    cosine = outcome.alignment["cosine"].abs()
    others = outcome.alignment[outcome.alignment["seed"] != outcome.phenotypes.runs[0].seed]
    lines = [
        "## Alignment and merge",
        "",
        f"Hungarian alignment to {outcome.phenotypes.runs[0].prefix} on |cosine| (`alignment.tsv`, "
        f"`aligned_raw.tsv`): matched |cosine| {_distribution(others['cosine'].abs().to_numpy() if len(others) else cosine.to_numpy())}.",
    ]
    if outcome.merge:
        lines.append(
            f"Merged by {outcome.merge} into `merged_raw.tsv` / `merged_int.tsv` ({outcome.merged_rows} subjects "
            "with every seed; others NA)."
        )
    return [*lines, ""]


def _covariate_section(outcome: Outcome) -> list[str]:
    covariates = outcome.covariates
    if covariates is None:
        return []
    lines = [
        "## Covariates",
        "",
        f"`covariates.tsv`: quantitative {', '.join(covariates.quantitative) or '–'}; categorical "
        f"{', '.join(covariates.categorical) or '–'} (integer codes, `covariate_levels.tsv`).",
        f"Subjects without (complete) covariates: {len(covariates.without)}"
        + (
            f" (`subjects_without_covariates.txt`: {_ids(covariates.without)}); regenie drops them."
            if covariates.without
            else "."
        ),
    ]
    if covariates.constant:
        lines.append(
            f"Constant over the phenotype subjects (regenie will refuse them): {', '.join(covariates.constant)}."
        )
    return [*lines, ""]


def write_summary(outcome: Outcome, path: Path) -> Path:
    """Write ``summary.md`` for ``outcome`` at ``path``."""
    naming = "S<seed>_Z<k>" if outcome.naming == "seed" else "Z<k>_S<n> (n = position in --runs)"
    lines = [
        "# Latent GWAS phenotypes",
        "",
        *([f"`{outcome.command}`", ""] if outcome.command else []),
        *_runs_section(outcome),
        *_rows_section(outcome),
        *_reproducibility_section(outcome),
        *_merge_section(outcome),
        *_covariate_section(outcome),
        "## Files",
        "",
        f"Columns are named {naming} (`column_map.tsv` has both names). `phenotypes_raw.tsv` holds the raw latents, "
        "`phenotypes_int.tsv` their rank-based inverse-normal transform; both tab-separated with `FID IID` first and "
        f"`NA` for missing. {len(outcome.selected)} columns are listed in `pheno_columns.txt` for `--phenoColList`.",
        "",
        *[f"- `{f.name}`" for f in outcome.files],
        "- `summary.md`",
        "",
    ]
    path.write_text("\n".join(lines))
    return path
