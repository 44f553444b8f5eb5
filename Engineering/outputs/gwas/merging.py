"""Aligning seeds column-to-column and merging them into one latent set (companion ``merge_latents`` and alternatives).

- Alignment: Hungarian matching (``scipy.optimize.linear_sum_assignment``) of each seed's columns to the first
  seed's on |cosine similarity| of the raw latents (scikit-learn), with the sign flipped where the cosine is
  negative. Aligned column ``A<k>_S<seed>`` is the seed's column matched to the reference's ``Z<k>``.
- Merge, on the subjects every seed has (others get NA), into as many components as one seed has columns:
  ``pca``: PCA of all seeds' standardised columns (scikit-learn); ``cca``: scikit-learn's two-view CCA, averaging
  the two views' canonical variates (exactly two seeds); ``mcca``: multiset CCA of all seeds (cca-zoo's ``MCCA``,
  Kettenring's SUMCOR generalised eigenproblem), averaging the views' canonical variates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from Engineering.errors import ConfigError, DataError
from Engineering.outputs.gwas.phenotypes import PhenotypeSet, id_columns

MERGES = ("pca", "cca", "mcca")


@dataclass
class Aligned:
    """Each seed's columns reordered and sign-flipped to match the reference (first) seed."""

    table: pd.DataFrame  # FID, IID, [visit,] A<k>_S<seed> …
    mapping: pd.DataFrame  # ref_column, seed, column, cosine
    views: dict[str, list[str]]  # run prefix → its aligned columns in reference order


def _seed_columns(phenotypes: PhenotypeSet) -> dict[str, list[str]]:
    columns = {r.prefix: [c for c, (o, _) in phenotypes.columns.items() if o is r] for r in phenotypes.runs}
    lengths = {p: len(c) for p, c in columns.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"latent lengths differ between runs ({lengths}); alignment and merging need one length")
    return columns


def complete_rows(phenotypes: PhenotypeSet) -> pd.Series:
    """Rows where every run has a value."""
    return phenotypes.table[phenotypes.latent].notna().all(axis=1)


def align_seeds(phenotypes: PhenotypeSet) -> Aligned:
    """Hungarian alignment of every seed to the first on |cosine| over the subjects all seeds have."""
    from sklearn.metrics.pairwise import cosine_similarity

    if len(phenotypes.runs) < 2:
        raise ConfigError("--align needs at least two runs")
    columns = _seed_columns(phenotypes)
    rows = complete_rows(phenotypes)
    table = phenotypes.table
    if int(rows.sum()) < 2:
        raise DataError(f"{int(rows.sum())} subject(s) have latents of every run; alignment needs at least 2")
    ref = phenotypes.runs[0]
    ref_columns = columns[ref.prefix]
    out = table[id_columns(table)].copy()
    mapping: list[tuple[str, int, str, float]] = []
    views: dict[str, list[str]] = {}
    for run in phenotypes.runs:
        own = columns[run.prefix]
        cosine = cosine_similarity(table.loc[rows, ref_columns].T.to_numpy(), table.loc[rows, own].T.to_numpy())
        ref_idx, own_idx = linear_sum_assignment(-np.abs(cosine))
        views[run.prefix] = []
        for k, m in zip(ref_idx, own_idx, strict=True):
            name = f"A{k}_{run.prefix}"
            out[name] = np.sign(cosine[k, m] or 1.0) * table[own[m]]
            views[run.prefix].append(name)
            mapping.append((ref_columns[k], run.seed, own[m], float(cosine[k, m])))
    return Aligned(out, pd.DataFrame(mapping, columns=["ref_column", "seed", "column", "cosine"]), views)


def _merge_views(views: list[Any], method: str) -> np.ndarray:
    n_components = views[0].shape[1]
    if method == "pca":
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        stacked = StandardScaler().fit_transform(np.hstack(views))
        return PCA(n_components=n_components, svd_solver="full").fit_transform(stacked)
    if method == "cca":
        from sklearn.cross_decomposition import CCA

        x_scores, y_scores = CCA(n_components=n_components, max_iter=2000).fit(*views).transform(*views)
        return (x_scores + y_scores) / 2
    from cca_zoo.linear import MCCA  # imported here: only this merge needs it

    scores = MCCA(n_components=n_components).fit_transform(views)
    return np.mean(scores, axis=0)


def merge_seeds(phenotypes: PhenotypeSet, aligned: Aligned, method: str) -> pd.DataFrame:
    """``FID, IID, [visit,] Z0…Z{L-1}`` merged by ``method`` (see the module docstring); NA where a seed is missing."""
    if method not in MERGES:
        raise ConfigError(f"--merge {method!r} is unknown; expected one of {', '.join(MERGES)}")
    if method == "cca" and len(phenotypes.runs) != 2:
        raise ConfigError(f"--merge cca merges exactly two runs ({len(phenotypes.runs)} given); use mcca or pca")
    rows = complete_rows(phenotypes)
    views = [aligned.table.loc[rows, cols].to_numpy(float) for cols in aligned.views.values()]
    n, length = int(rows.sum()), views[0].shape[1]
    if n <= length:
        raise DataError(
            f"{n} subject(s) have latents of every run; merging {length} columns needs more subjects than columns"
        )
    merged = _merge_views(views, method)
    out = aligned.table[id_columns(aligned.table)].copy()
    values = np.full((len(out), length), np.nan)
    values[rows.to_numpy()] = merged
    return pd.concat([out, pd.DataFrame(values, columns=[f"Z{k}" for k in range(length)], index=out.index)], axis=1)
