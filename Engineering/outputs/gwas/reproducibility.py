"""Cross-seed reproducibility of latent columns and the selection of the reproducible ones.

For every pair of seeds, |Pearson r| between all their columns over the subjects both have (raw latents, the rows
of the phenotype table). A column's best match in another seed is the column with the largest |r|.

- ``latents_similarity.tsv`` follows the companion's ``select_latents``: for every column of a seed, its best match
  in each *later* seed (``tID_ref, col_ref, tID_best_match, col_best_match, best_similarity``, columns ``Z<k>`` of
  the runs named ``tID``); ``latents_similarity_filtered.tsv`` keeps the rows with ``best_similarity`` above the
  threshold.
- The selection keeps a column when its best |r| with **any** other seed is above the threshold ("each latent column
  was kept only if a column of another seed correlated with it at |r| > 0.8"). Both members of every filtered pair
  are therefore kept; a column whose partner prefers a third column is kept too (the companion dropped it).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from Engineering.errors import ConfigError, DataError
from Engineering.outputs.gwas.phenotypes import PhenotypeSet, Run

SIMILARITY_COLUMNS = ("tID_ref", "col_ref", "tID_best_match", "col_best_match", "best_similarity")
MIN_SUBJECTS = 3  # fewer common subjects give no meaningful correlation


def abs_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Pearson r| between the columns of ``a`` (n × p) and ``b`` (n × q); a constant column correlates 0."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: NaN, replaced below
        r = np.corrcoef(a, b, rowvar=False)[: a.shape[1], a.shape[1] :]
    return np.nan_to_num(np.abs(r), nan=0.0)


@dataclass
class Reproducibility:
    """Pairwise best-match correlations of the seeds and the resulting selection."""

    runs: list[Run]
    columns: dict[str, list[str]]  # run prefix → its phenotype columns, in order
    abs_r: dict[tuple[str, str], np.ndarray]  # (prefix a, prefix b), a before b → |r| (columns of a × columns of b)
    n_common: dict[tuple[str, str], int]  # subjects each pair was correlated over
    threshold: float

    def matrix(self, a: str, b: str) -> np.ndarray:
        """|r| between the columns of run ``a`` (rows) and run ``b`` (columns)."""
        return self.abs_r[(a, b)] if (a, b) in self.abs_r else self.abs_r[(b, a)].T

    def per_column(self) -> pd.DataFrame:
        """``column, seed, best_r_S<b>, best_match_S<b>`` for every other seed b, ``best_r`` (max) and ``selected``."""
        frames = []
        for run in self.runs:
            own = self.columns[run.prefix]
            frame = pd.DataFrame({"column": own, "seed": run.seed})
            for other in self.runs:
                if other is run:
                    continue
                r = self.matrix(run.prefix, other.prefix)
                frame[f"best_r_{other.prefix}"] = r.max(axis=1)
                frame[f"best_match_{other.prefix}"] = [self.columns[other.prefix][i] for i in r.argmax(axis=1)]
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        table["best_r"] = table.filter(like="best_r_").max(axis=1)
        table["selected"] = table["best_r"] > self.threshold
        return table

    @property
    def selected(self) -> list[str]:
        table = self.per_column()
        return table.loc[table["selected"], "column"].tolist()

    def similarity(self) -> pd.DataFrame:
        """The companion's ``latents_similarity.tsv``: every column's best match in each later seed."""
        rows = []
        for ref, other in itertools.combinations(self.runs, 2):
            r = self.matrix(ref.prefix, other.prefix)
            best = r.argmax(axis=1)
            for i, column in enumerate(self.columns[ref.prefix]):
                match = self.columns[other.prefix][best[i]]
                rows.append((ref.name, _latent(column), other.name, _latent(match), float(r[i, best[i]])))
        return pd.DataFrame(rows, columns=list(SIMILARITY_COLUMNS))

    def filtered(self) -> pd.DataFrame:
        """``latents_similarity_filtered.tsv``: the pairs above the threshold."""
        table = self.similarity()
        return table[table["best_similarity"] > self.threshold].reset_index(drop=True)


def _latent(column: str) -> str:
    """``S1701_Z3`` → ``Z3``, the column name inside the run's own table."""
    return column.split("_", 1)[1]


def compute_reproducibility(phenotypes: PhenotypeSet, threshold: float = 0.8) -> Reproducibility:
    """|r| of every seed pair over their common subjects; see the module docstring."""
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"--threshold {threshold} is out of range; expected 0 ≤ threshold < 1")
    if len(phenotypes.runs) < 2:
        raise ConfigError("cross-seed reproducibility needs at least two runs; give more --runs")
    table = phenotypes.table
    columns = {r.prefix: [c for c, (o, _) in phenotypes.columns.items() if o is r] for r in phenotypes.runs}
    abs_r, n_common = {}, {}
    for a, b in itertools.combinations(phenotypes.runs, 2):
        both = table[columns[a.prefix] + columns[b.prefix]].notna().all(axis=1)
        n = int(both.sum())
        if n < MIN_SUBJECTS:
            raise DataError(
                f"runs {a.emb} and {b.emb} share {n} subject(s) in the phenotype table; expected at least "
                f"{MIN_SUBJECTS} to correlate their latents"
            )
        abs_r[(a.prefix, b.prefix)] = abs_correlations(
            table.loc[both, columns[a.prefix]].to_numpy(float), table.loc[both, columns[b.prefix]].to_numpy(float)
        )
        n_common[(a.prefix, b.prefix)] = n
    return Reproducibility(list(phenotypes.runs), columns, abs_r, n_common, threshold)


def seed_matrix(rep: Reproducibility) -> tuple[np.ndarray, np.ndarray]:
    """Seed × seed: median best-match |r| of the row seed's columns in the column seed, and how many exceed the
    threshold (NaN / 0 on the diagonal)."""
    k = len(rep.runs)
    median, count = np.full((k, k), np.nan), np.zeros((k, k), dtype=int)
    for i, a in enumerate(rep.runs):
        for j, b in enumerate(rep.runs):
            if i != j:
                best = rep.matrix(a.prefix, b.prefix).max(axis=1)
                median[i, j], count[i, j] = np.median(best), int((best > rep.threshold).sum())
    return median, count


def plot_seed_heatmap(rep: Reproducibility, path: Path) -> Path:
    """A heat map of :func:`seed_matrix`, each cell annotated with the median and the count above threshold."""
    median, count = seed_matrix(rep)
    labels = [r.prefix for r in rep.runs]
    side = 2.2 + 1.1 * len(labels)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(median), vmin=0, vmax=1, cmap="viridis")
    ax.set_facecolor("0.85")
    for i, j in itertools.product(range(len(labels)), repeat=2):
        if i != j:
            n = len(rep.columns[labels[i]])
            colour = "black" if median[i, j] > 0.6 else "white"
            text = f"{median[i, j]:.2f}\n{count[i, j]}/{n}"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
        else:
            ax.text(j, i, "–", ha="center", va="center", color="0.4")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("best match searched in seed")
    ax.set_ylabel("latent columns of seed")
    ax.set_title(f"Median best-match |r|; n = columns with |r| > {rep.threshold:g}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="median best-match |r|")
    fig.savefig(path, dpi=120)
    return path


def plot_distribution(rep: Reproducibility, path: Path) -> Path:
    """Histogram of each column's best |r| with any other seed, stacked by seed, with the threshold marked."""
    table = rep.per_column()
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    groups = [table.loc[table["seed"] == r.seed, "best_r"].to_numpy() for r in rep.runs]
    ax.hist(groups, bins=[k / 20 for k in range(21)], stacked=True, label=[r.prefix for r in rep.runs])
    ax.axvline(rep.threshold, color="black", linestyle="--", label=f"threshold {rep.threshold:g}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("best |Pearson r| of a latent column with any other seed")
    ax.set_ylabel("latent columns")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{int(table['selected'].sum())} of {len(table)} columns kept", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path
