"""A user's covariate table joined by subject ID into a regenie ``--covarFile`` (the paper's seven covariates).

The input is CSV (``.csv``), tab-separated (``.tsv``) or whitespace-separated (anything else, e.g. PLINK's
``.cov``/``.txt``), one row per subject, with an integer ID column (``IID``, else ``FID``, ``eid`` or ``f.eid``, or the
one named). The output has the phenotype table's rows in its order: ``FID IID <covariates>``, ``NA`` where a subject
has no row or no value. Quantitative covariates must be numeric. Categorical ones are written as integer codes
0…K-1 (levels sorted as text, the mapping in ``covariate_levels.tsv``), which regenie reads with ``--catCovarList``;
``--maxCatLevels`` must be at least the largest K (regenie's default is 10; UK Biobank has ~100 genotyping batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from Engineering.errors import ConfigError, DataError

ID_CANDIDATES = ("IID", "FID", "eid", "f.eid")
REGENIE_DEFAULT_MAX_LEVELS = 10


@dataclass
class Covariates:
    """The covariate file's content and what the summary reports."""

    table: pd.DataFrame  # FID, IID, quantitative …, categorical … (codes)
    quantitative: list[str]
    categorical: list[str]
    levels: pd.DataFrame  # covariate, level, code
    without: list[int] = field(default_factory=list)  # phenotype subjects lacking a row or a value
    constant: list[str] = field(default_factory=list)  # covariates with one value over the phenotype subjects

    @property
    def max_levels(self) -> int:
        counts = self.levels.groupby("covariate").size()
        return int(counts.max()) if len(counts) else 0


def _separator(path: Path) -> str:
    return {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower(), r"\s+")


def read_covariates(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """The covariate table indexed by integer subject ID (values kept as text for now)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"covariate file {path} does not exist")
    try:
        table = pd.read_csv(path, sep=_separator(path), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"covariate file {path} cannot be parsed ({' '.join(str(err).split())})") from None
    if id_column is None:
        id_column = next((c for c in ID_CANDIDATES if c in table.columns), None)
        if id_column is None:
            raise DataError(f"covariate file {path} has no ID column; expected one of {', '.join(ID_CANDIDATES)}")
    elif id_column not in table.columns:
        raise ConfigError(f"--covar-id {id_column!r} is not a column of {path}; columns: {', '.join(table.columns)}")
    ids = table[id_column].str.strip()
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        raise DataError(f"covariate file {path}: ID {ids[bad].iloc[0]!r} in column {id_column!r} is not an integer")
    if ids.duplicated().any():
        raise DataError(
            f"covariate file {path}: subject {ids[ids.duplicated()].iloc[0]} appears more than once; expected one row "
            "per subject (choose one visit's covariates)"
        )
    table.index = pd.Index(ids.astype("int64"), name="IID")
    return table.drop(columns=[c for c in ID_CANDIDATES + (id_column,) if c in table.columns])


def _missing(values: pd.Series) -> pd.Series:
    return values.str.strip().isin(["", "NA", "NaN", "nan"]) | values.isna()


def _quantitative(values: pd.Series, name: str, path: Path) -> pd.Series:
    numbers = pd.to_numeric(values.where(~_missing(values)), errors="coerce")
    bad = numbers.isna() & ~_missing(values)
    if bad.any():
        raise DataError(
            f"covariate file {path}: column {name!r} has the non-numeric value {values[bad].iloc[0]!r}; "
            "expected a number, or list the column in --cat-covars"
        )
    return numbers


def _categorical(values: pd.Series) -> tuple[pd.Series, list[str]]:
    present = values.where(~_missing(values)).str.strip()
    levels = sorted(present.dropna().unique())
    codes = present.map({level: code for code, level in enumerate(levels)}).astype("Int64")
    return codes, levels


def covariate_file(
    path: str | Path,
    subjects: Sequence[int],
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    id_column: str | None = None,
) -> Covariates:
    """Join ``path`` to ``subjects`` (the phenotype rows, in order); see the module docstring."""
    path = Path(path)
    table = read_covariates(path, id_column)
    columns = list(table.columns) if columns is None else list(dict.fromkeys([*columns, *categorical]))
    unknown = [c for c in [*columns, *categorical] if c not in table.columns]
    if unknown:
        raise ConfigError(f"covariate(s) {', '.join(unknown)} not in {path}; columns: {', '.join(table.columns)}")
    if not columns:
        raise DataError(f"covariate file {path} has no covariate column besides the IDs")
    joined = table.reindex(pd.Index(subjects, name="IID"))
    out = pd.DataFrame({"FID": list(subjects), "IID": list(subjects)})
    levels = []
    for name in columns:
        if name in categorical:
            codes, names = _categorical(joined[name])
            out[name] = codes.to_numpy()
            levels += [(name, level, code) for code, level in enumerate(names)]
        else:
            out[name] = _quantitative(joined[name], name, path).to_numpy()
    values = out[columns]
    without = out.loc[values.isna().any(axis=1), "IID"].astype(int).tolist()
    constant = [c for c in columns if values[c].nunique(dropna=True) < 2]
    quantitative = [c for c in columns if c not in categorical]
    cat = [c for c in columns if c in categorical]
    return Covariates(
        out, quantitative, cat, pd.DataFrame(levels, columns=["covariate", "level", "code"]), without, constant
    )
