"""Per-subject latent phenotype tables of several seeds (as the companion's ``prep_latents``).

The runs' ``emb.h5`` files are joined **by key** (subject, field, instance, data tag), never by row position; a
run that lacks a series gets ``NA`` there. The visit policy is then applied to the union of keys, so every column of
a row describes the same scan: ``prefer2`` keeps the visit-2 row of each subject, else its visit-3 row (the
companion's rule; other visits are dropped); ``all`` keeps every visit and adds a ``visit`` column.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from Engineering.errors import ConfigError, DataError
from Engineering.outputs.latent_tables import (
    VISIT_COLUMN,
    apply_visit_rule,
    emb_table,
    gwas_table,
    latent_columns,
    merge_tables,
    prefixed,
    seed_of,
    visit_of,
)

VISIT_POLICIES = ("prefer2", "all")
NAMINGS = ("seed", "index")  # S<seed>_Z<k> (as the paper's GWAS ran), Z<k>_S<n> (its remapped, published IDs)
TIES = ("random", "average")
BLOM_OFFSET = 3.0 / 8.0  # rank → (rank - c) / (n - 2c + 1), Blom's rank-based inverse-normal transform


@dataclass(frozen=True)
class Run:
    """One seed's inference output: its emb.h5, seed, run name (``tID`` in the similarity files) and position."""

    emb: Path
    seed: int
    name: str
    index: int  # 1-based position on the command line: the n of the published Z<k>_S<n>

    @property
    def prefix(self) -> str:
        return f"S{self.seed}"


def resolve_runs(paths: Sequence[str | Path], seeds: Sequence[int] | None = None) -> list[Run]:
    """Runs from ``Output*`` folders (or their ``emb.h5``); seeds from ``seeds`` or parsed from each path."""
    if not paths:
        raise ConfigError("--runs is empty; expected one or more Output folders holding emb.h5")
    if seeds is not None and len(seeds) != len(paths):
        raise ConfigError(f"--seeds has {len(seeds)} value(s) for {len(paths)} run(s); expected one per run")
    runs: list[Run] = []
    for n, item in enumerate(paths):
        path = Path(item)
        emb = path if path.suffix == ".h5" else path / "emb.h5"
        if not emb.is_file():
            raise DataError(f"run {path}: {emb} does not exist; expected an Output folder (or emb.h5) of a test run")
        out_dir = emb.parent
        name = out_dir.parent.name if out_dir.name.startswith("Output") else out_dir.name
        seed = int(seeds[n]) if seeds is not None else seed_of(name)  # the run name, not folders above it
        runs.append(Run(emb, seed, name, n + 1))
    seen: dict[int, Run] = {}
    for run in runs:
        if run.seed in seen:
            raise ConfigError(
                f"runs {seen[run.seed].emb} and {run.emb} both have seed {run.seed}; give each run its seed with --seeds"
            )
        seen[run.seed] = run
    return runs


@dataclass
class PhenotypeSet:
    """The raw phenotype table and what the summary reports about how it was built."""

    table: pd.DataFrame  # FID, IID, [visit,] S<seed>_Z<k> …, NaN where a run lacks the series
    runs: list[Run]
    columns: dict[str, tuple[Run, str]]  # S<seed>_Z<k> → (run, Z<k>)
    series_per_visit: pd.DataFrame  # run × visit → number of series (after include/exclude, before the policy)
    rows_per_visit: dict[int, int] = field(default_factory=dict)  # visit → phenotype rows taken from it
    missing: dict[str, list[int]] = field(default_factory=dict)  # run prefix → table subjects it has no value for
    include_not_found: list[int] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)  # excluded subjects that were present in some run

    @property
    def latent(self) -> list[str]:
        return list(self.columns)


def _series_per_visit(tables: Sequence[pd.DataFrame], runs: Sequence[Run]) -> pd.DataFrame:
    counts = {run.prefix: visit_of(t["instanceID"]).value_counts() for t, run in zip(tables, runs, strict=True)}
    frame = pd.DataFrame(counts).T.fillna(0).astype(int)
    return frame.reindex(columns=sorted(frame.columns))


def build_phenotypes(
    runs: Sequence[Run],
    include: Collection[int] | None = None,
    exclude: Collection[int] = (),
    data_tags: Collection[str] | None = None,
    visits: str = "prefer2",
) -> PhenotypeSet:
    """Join the runs by key and apply the visit policy; see the module docstring."""
    if visits not in VISIT_POLICIES:
        raise ConfigError(f"visit policy {visits!r} is unknown; expected one of {', '.join(VISIT_POLICIES)}")
    drop = {int(s) for s in exclude}
    tables = []
    present: set[int] = set()
    for run in runs:
        table = emb_table(run.emb, include, data_tags)
        present |= set(table["subID"])
        tables.append(table[~table["subID"].isin(drop)].reset_index(drop=True))
    if all(t.empty for t in tables):
        raise DataError(f"no series left in {', '.join(str(r.emb) for r in runs)} after the subject/data-tag filters")
    prefixes = [r.prefix for r in runs]
    long = merge_tables(tables, prefixes, how="outer")[0] if len(runs) > 1 else prefixed(tables[0], prefixes[0])
    if visits == "prefer2":
        long = apply_visit_rule(long)
        if long.empty:
            raise DataError("no visit-2 or visit-3 series in the runs; use --visits all to keep other visits")
    table = gwas_table(long, visit_column=visits == "all")
    columns = {f"{r.prefix}_{c}": (r, c) for r, t in zip(runs, tables, strict=True) for c in latent_columns(t)}
    missing = {
        r.prefix: table.loc[table[[c for c, (o, _) in columns.items() if o is r]].isna().all(axis=1), "IID"].tolist()
        for r in runs
    }
    return PhenotypeSet(
        table=table,
        runs=list(runs),
        columns=columns,
        series_per_visit=_series_per_visit(tables, runs),
        rows_per_visit={int(v): int(n) for v, n in visit_of(long["instanceID"]).value_counts().sort_index().items()},
        missing=missing,
        include_not_found=sorted(set(include or ()) - present),
        excluded=sorted(drop & present),
    )


def id_columns(table: pd.DataFrame) -> list[str]:
    """``FID, IID`` and, when present, ``visit``."""
    return [c for c in table.columns if c in ("FID", "IID", VISIT_COLUMN)]


def inverse_normal(values: np.ndarray, ties: str = "random", random_state: int = 1701) -> np.ndarray:
    """Rank-based inverse-normal transform of one column; NaN stays NaN.

    Ranks r of the n finite values map to Φ⁻¹((r − 3/8) / (n + 1/4)) (Blom). ``random`` breaks ties in an order drawn
    from ``random_state``, so tied values get distinct, reproducible scores and the output is exactly the normal
    quantile grid (mean 0); ``average`` gives tied values their mean rank, hence one shared score.
    """
    if ties not in TIES:
        raise ConfigError(f"ties {ties!r} is unknown; expected one of {', '.join(TIES)}")
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    x = values[ok]
    if x.size == 0:
        return out
    if ties == "random":
        order = np.random.default_rng(random_state).permutation(x.size)
        ranks = np.empty(x.size)
        ranks[order] = stats.rankdata(x[order], method="ordinal")  # ties: first in the drawn order ranks lower
    else:
        ranks = stats.rankdata(x, method="average")
    out[ok] = stats.norm.ppf((ranks - BLOM_OFFSET) / (x.size - 2 * BLOM_OFFSET + 1))
    return out


def inverse_normal_table(table: pd.DataFrame, ties: str = "random", random_state: int = 1701) -> pd.DataFrame:
    """``table`` with every latent column rank-inverse-normal transformed (each column on its own rows)."""
    out = table.copy()
    for column in latent_columns(table):
        out[column] = inverse_normal(table[column].to_numpy(), ties, random_state)
    return out


def column_names(phenotypes: PhenotypeSet, naming: str = "seed") -> dict[str, str]:
    """``S<seed>_Z<k>`` → the name written in the phenotype files: itself, or ``Z<k>_S<n>`` with ``index``."""
    if naming not in NAMINGS:
        raise ConfigError(f"naming {naming!r} is unknown; expected one of {', '.join(NAMINGS)}")
    if naming == "seed":
        return {c: c for c in phenotypes.columns}
    return {c: f"{z}_S{run.index}" for c, (run, z) in phenotypes.columns.items()}


def column_map(phenotypes: PhenotypeSet, selected: Collection[str]) -> pd.DataFrame:
    """One row per latent column: both names, its run and whether the reproducibility selection kept it."""
    rows = [
        (c, f"{z}_S{run.index}", run.seed, run.index, run.name, z, c in selected)
        for c, (run, z) in phenotypes.columns.items()
    ]
    return pd.DataFrame(rows, columns=["column", "remapped", "seed", "seed_index", "run", "latent", "selected"])
