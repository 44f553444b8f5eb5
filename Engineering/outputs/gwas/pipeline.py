"""emb.h5 of several seeds → a GWAS-ready folder in one call; see :func:`prepare_gwas`.

Everything is computed and written into a hidden staging folder next to ``out`` first, then moved in: a failure leaves
``out`` as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from Engineering.errors import ConfigError
from Engineering.outputs.gwas import covariates as cov
from Engineering.outputs.gwas import merging, phenotypes, regenie, report, reproducibility
from Engineering.outputs.latent_tables import read_id_list

PHENO_RAW, PHENO_INT = "phenotypes_raw.tsv", "phenotypes_int.tsv"
COVARIATES = "covariates.tsv"
# every file this module may write: with --overwrite, those a new call does not write are removed, so a folder
# never mixes two calls (e.g. an old merged_raw.tsv next to new phenotypes)
OUTPUT_NAMES = frozenset(
    {PHENO_RAW, PHENO_INT, COVARIATES, "covariate_levels.tsv", "subjects_without_covariates.txt", "column_map.tsv"}
    | {"latents_similarity.tsv", "latents_similarity_filtered.tsv", "reproducibility.tsv"}
    | {"seed_heatmap.png", "best_r_distribution.png", "alignment.tsv", "aligned_raw.tsv"}
    | {"merged_raw.tsv", "merged_int.tsv", regenie.PHENO_LIST, regenie.SCRIPT, "summary.md"}
)


@dataclass(frozen=True)
class GwasOptions:
    """What :func:`prepare_gwas` reads and how; the executor's options one to one."""

    runs: tuple[Path, ...]
    out: Path
    seeds: tuple[int, ...] | None = None
    data_tags: tuple[str, ...] | None = None
    visits: str = "prefer2"
    include: Path | None = None
    exclude: Path | None = None
    threshold: float = 0.8
    naming: str = "seed"
    ties: str = "random"
    random_state: int = 1701
    align: bool = False
    merge: str | None = None
    covariates: Path | None = None
    covar_cols: tuple[str, ...] | None = None
    cat_covars: tuple[str, ...] = ()
    covar_id: str | None = None
    overwrite: bool = False
    command: str = field(default="", compare=False)  # the command line, for summary.md

    def __post_init__(self) -> None:
        choices = {
            "visits": (self.visits, phenotypes.VISIT_POLICIES),
            "naming": (self.naming, phenotypes.NAMINGS),
            "ties": (self.ties, phenotypes.TIES),
        }
        for name, (value, valid) in choices.items():
            if value not in valid:
                raise ConfigError(f"--{name} {value!r} is unknown; expected one of {', '.join(valid)}")
        if self.merge is not None and self.merge not in merging.MERGES:
            raise ConfigError(f"--merge {self.merge!r} is unknown; expected one of {', '.join(merging.MERGES)}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"--threshold {self.threshold} is out of range; expected 0 ≤ threshold < 1")
        if (self.covar_cols or self.cat_covars or self.covar_id) and self.covariates is None:
            raise ConfigError("--covar-cols, --cat-covars and --covar-id need --covariates FILE")


@contextmanager
def staged_output(out: Path, overwrite: bool) -> Iterator[Path]:
    """A staging folder whose files replace those of ``out`` when the block succeeds (``out`` untouched otherwise).

    Files of an earlier call (:data:`OUTPUT_NAMES`) that this call did not write are removed; other files are kept.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} is not empty; choose a new folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield stage
        out.mkdir(exist_ok=True)
        written = {item.name for item in stage.iterdir()}
        for stale in sorted(OUTPUT_NAMES - written):
            (out / stale).unlink(missing_ok=True)
        for item in sorted(stage.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_tsv(table: pd.DataFrame, path: Path) -> Path:
    """Tab-separated, ``NA`` for missing, 17 significant digits: what regenie and PLINK2 read."""
    table.to_csv(path, sep="\t", index=False, na_rep="NA", float_format="%.17g")
    return path


def prepare_gwas(options: GwasOptions) -> report.Outcome:
    """Phenotypes, reproducibility, optional alignment/merge and covariates, regenie files and summary.md."""
    runs = phenotypes.resolve_runs(options.runs, options.seeds)
    include = read_id_list(options.include) if options.include else None
    exclude = read_id_list(options.exclude) if options.exclude else []
    pheno = phenotypes.build_phenotypes(runs, include, exclude, options.data_tags, options.visits)
    outcome = report.Outcome(options.command, pheno, options.visits, options.naming, selected=pheno.latent)
    if options.covariates is not None:  # read before anything is computed or written: bad input fails fast
        outcome.covariates = cov.covariate_file(
            options.covariates, pheno.table["IID"].tolist(), options.covar_cols, options.cat_covars, options.covar_id
        )
    with staged_output(Path(options.out), options.overwrite) as stage:
        names = phenotypes.column_names(pheno, options.naming)
        transformed = phenotypes.inverse_normal_table(pheno.table, options.ties, options.random_state)
        outcome.files += [
            _write_tsv(pheno.table.rename(columns=names), stage / PHENO_RAW),
            _write_tsv(transformed.rename(columns=names), stage / PHENO_INT),
        ]
        if len(runs) > 1:
            _reproducibility(options, pheno, outcome, stage)
        outcome.files.append(_write_tsv(phenotypes.column_map(pheno, outcome.selected), stage / "column_map.tsv"))
        if options.align or options.merge:
            _align_and_merge(options, pheno, outcome, stage)
        if outcome.covariates is not None:
            _covariates(outcome.covariates, outcome, stage)
        if options.visits == "prefer2":  # regenie needs one row per subject
            columns = [names[c] for c in outcome.selected]
            outcome.files += regenie.write_regenie(stage, PHENO_INT, columns, outcome.covariates, COVARIATES)
        outcome.files.append(report.write_summary(outcome, stage / "summary.md"))
    outcome.files = [Path(options.out) / f.name for f in outcome.files]
    return outcome


def _reproducibility(
    options: GwasOptions, pheno: phenotypes.PhenotypeSet, outcome: report.Outcome, stage: Path
) -> None:
    rep = reproducibility.compute_reproducibility(pheno, options.threshold)
    outcome.reproducibility, outcome.selected = rep, rep.selected
    outcome.files += [
        _write_tsv(rep.similarity(), stage / "latents_similarity.tsv"),
        _write_tsv(rep.filtered(), stage / "latents_similarity_filtered.tsv"),
        _write_tsv(rep.per_column(), stage / "reproducibility.tsv"),
        reproducibility.plot_seed_heatmap(rep, stage / "seed_heatmap.png"),
        reproducibility.plot_distribution(rep, stage / "best_r_distribution.png"),
    ]


def _covariates(covariates: cov.Covariates, outcome: report.Outcome, stage: Path) -> None:
    outcome.files += [
        _write_tsv(covariates.table, stage / COVARIATES),
        _write_tsv(covariates.levels, stage / "covariate_levels.tsv"),
    ]
    if covariates.without:
        path = stage / "subjects_without_covariates.txt"
        path.write_text("".join(f"{s}\n" for s in covariates.without))
        outcome.files.append(path)


def _align_and_merge(
    options: GwasOptions, pheno: phenotypes.PhenotypeSet, outcome: report.Outcome, stage: Path
) -> None:
    aligned = merging.align_seeds(pheno)
    outcome.alignment = aligned.mapping
    outcome.files += [
        _write_tsv(aligned.mapping, stage / "alignment.tsv"),
        _write_tsv(aligned.table, stage / "aligned_raw.tsv"),
    ]
    if options.merge:
        merged = merging.merge_seeds(pheno, aligned, options.merge)
        outcome.merge = options.merge
        outcome.merged_rows = int(merged.iloc[:, -1].notna().sum())
        transformed = phenotypes.inverse_normal_table(merged, options.ties, options.random_state)
        outcome.files += [
            _write_tsv(merged, stage / "merged_raw.tsv"),
            _write_tsv(transformed, stage / "merged_int.tsv"),
        ]
