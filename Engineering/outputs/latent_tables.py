"""``emb.h5`` → tidy latent tables.

A *long* table has one row per series: ``subID, fieldID, instanceID, data_tag, Z0…Z{L-1}`` (the layout of the
companion's ``traverse_embH5`` with ``prep_Zs``). The *GWAS* table is the regenie/plink phenotype layout written by
the companion's ``prep_latents``: ``FID, IID, Z0…`` with FID = IID = subject ID, one row per subject, after the visit
rule (visit 2 rows, plus visit-3 rows of subjects without a visit-2 row; every other visit dropped).

Unlike the companion, subject and data-tag filters are exact (no substring tests) and seed tables are joined by
key, never by row position (row order differs between runs).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from Engineering.errors import ConfigError, DataError
from Engineering.outputs.h5writer import KEY_DEPTH, write_results_h5
from Engineering.outputs.outset import check_output_file

KEY_COLUMNS = ("subID", "fieldID", "instanceID", "data_tag")
GWAS_ID_COLUMNS = ("FID", "IID")
VISIT_COLUMN = "visit"  # the imaging visit, in GWAS tables that keep every visit
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".pheno": "\t"}


def read_emb_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every dataset of ``path`` as ``key → (L,)`` float64 array, in sorted key order.

    Raises :class:`DataError` for a missing/unreadable file, a dataset not at depth 4, a complex or non-float
    dataset, a dataset with more than one latent vector (split modes, shape (nC, nT, nS, L) with nC·nT·nS > 1), or
    latent lengths that differ between datasets.
    """
    path = Path(path)
    arrays = _read_raw(path)
    out: dict[str, np.ndarray] = {}
    lengths: set[int] = set()
    for key in sorted(arrays):
        value = np.asarray(arrays[key])
        if value.dtype.kind != "f":
            raise DataError(f"latent file {path}: dataset {key!r} has dtype {value.dtype}; expected real floats")
        if value.ndim == 0 or value.size != value.shape[-1]:
            raise DataError(
                f"latent file {path}: dataset {key!r} has shape {value.shape}; expected one latent vector (1, 1, 1, L)"
            )
        out[key] = value.reshape(-1).astype(np.float64)
        lengths.add(value.shape[-1])
    if len(lengths) > 1:
        raise DataError(f"latent file {path}: latent lengths {sorted(lengths)} differ; expected one L for all")
    return out


def _check_subid(key: str, path: Path) -> int:
    sub = key.split("/")[0]
    if not sub.isdigit():
        raise DataError(f"latent file {path}: subID {sub!r} of {key!r} is not a decimal integer")
    return int(sub)


def emb_table(
    path: str | Path, subjects: Collection[int] | None = None, data_tags: Collection[str] | None = None
) -> pd.DataFrame:
    """The long table of ``path``: ``subID`` (int), ``fieldID``, ``instanceID``, ``data_tag`` (str), ``Z0…``.

    ``subjects``/``data_tags`` keep only the exactly matching subject IDs / dataset names. Rows are sorted by key.
    """
    path = Path(path)
    arrays = read_emb_arrays(path)
    keep_sub = None if subjects is None else {int(s) for s in subjects}
    keep_tag = None if data_tags is None else set(data_tags)
    rows, vectors = [], []
    for key, vec in arrays.items():
        sub = _check_subid(key, path)
        _, field, instance, tag = key.split("/")
        if (keep_sub is not None and sub not in keep_sub) or (keep_tag is not None and tag not in keep_tag):
            continue
        rows.append((sub, field, instance, tag))
        vectors.append(vec)
    n_lat = len(next(iter(arrays.values()))) if arrays else 0
    ids = pd.DataFrame(rows, columns=list(KEY_COLUMNS)).astype(
        {"subID": "int64", "fieldID": str, "instanceID": str, "data_tag": str}
    )
    z = pd.DataFrame(np.vstack(vectors) if vectors else np.zeros((0, n_lat)), columns=[f"Z{i}" for i in range(n_lat)])
    return pd.concat([ids, z], axis=1)


def latent_columns(table: pd.DataFrame) -> list[str]:
    """The latent columns of a table: every column that is not a key, GWAS ID or visit column."""
    return [c for c in table.columns if c not in KEY_COLUMNS and c not in GWAS_ID_COLUMNS and c != VISIT_COLUMN]


def emb_rows(path: str | Path) -> pd.DataFrame:
    """Every stored latent vector of ``path`` as one row: ``subID`` (int), ``key`` (the H5 key), ``Z0…``.

    Unlike :func:`emb_table`, split runs (2D slices or frames, datasets (nC, nT, nS, L)) give one row per stored
    vector; vectors left NaN in the dense layout are dropped.
    """
    path = Path(path)
    keys, vectors = [], []
    for key, value in sorted(_read_raw(path).items()):
        value = np.asarray(value)
        if value.dtype.kind != "f" or value.ndim == 0:
            raise DataError(f"latent file {path}: dataset {key!r} has dtype {value.dtype}; expected real floats")
        rows = value.reshape(-1, value.shape[-1]).astype(np.float64)  # (nC*nT*nS, L)
        rows = rows[~np.isnan(rows).all(axis=1)]
        _check_subid(key, path)
        keys += [key] * len(rows)
        vectors.append(rows)
    lengths = {v.shape[1] for v in vectors}
    if len(lengths) > 1:
        raise DataError(f"latent file {path}: latent lengths {sorted(lengths)} differ; expected one L for all")
    z = np.vstack(vectors) if vectors else np.zeros((0, 0))
    table = pd.DataFrame({"subID": [int(k.split("/")[0]) for k in keys], "key": keys})
    return pd.concat([table, pd.DataFrame(z, columns=[f"Z{i}" for i in range(z.shape[1])])], axis=1)


def visit_of(instance_ids: pd.Series) -> pd.Series:
    """Imaging visit of each instanceID ``"<visit>_<array>"`` (the integer before ``_``)."""
    visit = instance_ids.astype(str).str.split("_").str[0]
    bad = ~visit.str.fullmatch(r"\d+")
    if bad.any():
        raise DataError(
            f"instanceID {instance_ids[bad].iloc[0]!r} has no visit number; expected '<visit>_<array>' such as '2_0'"
        )
    return visit.astype(int)


def apply_visit_rule(table: pd.DataFrame, preferred: int = 2, fallback: int = 3) -> pd.DataFrame:
    """Keep visit-``preferred`` rows, plus visit-``fallback`` rows of subjects without a ``preferred`` row.

    The companion's GWAS rule (visit 2 preferred, else 3; every other visit dropped). Row order is kept.
    """
    visit = visit_of(table["instanceID"])
    with_preferred = set(table.loc[visit == preferred, "subID"])
    keep = (visit == preferred) | ((visit == fallback) & ~table["subID"].isin(with_preferred))
    return table.loc[keep].reset_index(drop=True)


def gwas_table(table: pd.DataFrame, visit_column: bool = False) -> pd.DataFrame:
    """``FID, IID, [visit,] <latent columns>``: visit-2 rows first, then visit 3, …; by subject ID within a visit.

    With the visit rule applied this is the companion's order: the visit-2
    subjects, then the visit-3-only subjects. Without ``visit_column`` each subject must have one row; with it, one
    row per (subject, visit), and the visit number is written after IID.

    Raises :class:`DataError` if a subject (or subject and visit) has several rows (several arrays or data tags),
    which would give duplicated IDs in the phenotype file; apply the visit rule and select one data tag first.
    """
    visit = visit_of(table["instanceID"])
    keyed = table.assign(**{VISIT_COLUMN: visit.to_numpy()})
    key = ["subID", VISIT_COLUMN] if visit_column else ["subID"]
    dup = keyed.duplicated(key, keep=False)
    if dup.any():
        first = keyed.loc[dup].iloc[0]
        same = (keyed[key] == first[key]).all(axis=1)
        keys = keyed.loc[same, ["instanceID", "data_tag"]].astype(str).agg("/".join, axis=1)
        raise DataError(
            f"subject {int(first['subID'])} has {int(same.sum())} rows ({', '.join(keys)}); expected one row per "
            f"{'subject and visit' if visit_column else 'subject'} for the GWAS layout: apply the visit rule "
            "and/or choose one --data-tags value"
        )
    out = keyed.sort_values([VISIT_COLUMN, "subID"], kind="stable").reset_index(drop=True)
    ids = pd.DataFrame({"FID": out["subID"].astype("int64"), "IID": out["subID"].astype("int64")})
    if visit_column:
        ids[VISIT_COLUMN] = out[VISIT_COLUMN].astype("int64")
    return pd.concat([ids, out[latent_columns(out)]], axis=1)


def write_table(table: pd.DataFrame, path: str | Path, gwas: bool = False) -> Path:
    """Write ``table`` by extension: ``.csv`` (comma), ``.tsv``/``.txt``/``.pheno`` (tab), ``.parquet``.

    ``gwas`` forces the whitespace (tab) layout the regenie/plink consumers read, whatever the extension, except
    Parquet, which is refused for it, and writes missing values as ``NA`` (an empty field would shift regenie's
    columns). Floats are written with full precision (17 significant digits) in text formats.
    """
    path = Path(path)
    ext = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".parquet":
        if gwas:
            raise DataError(f"output {path}: the GWAS layout is a whitespace-separated text file; use .tsv or .txt")
        try:
            table.to_parquet(path, index=False)
        except ImportError as err:
            raise DataError(f"output {path}: Parquet needs pyarrow ({err}); install it or use .csv/.tsv") from None
        return path
    if ext not in _SEPARATORS:
        raise DataError(f"output {path}: extension {ext or '(none)'!r} is unknown; expected .csv, .tsv or .parquet")
    sep = "\t" if gwas else _SEPARATORS[ext]
    table.to_csv(path, sep=sep, index=False, float_format="%.17g", na_rep="NA" if gwas else "")
    return path


def read_id_list(path: str | Path) -> list[int]:
    """Subject IDs from a text file, one per line (blank lines and ``#`` comments ignored), as integers."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"subject list {path} does not exist; expected one integer subject ID per line")
    ids: list[int] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#")[0].strip()
        if not text:
            continue
        if not text.isdigit():
            raise DataError(f"subject list {path}: line {n} is {text!r}; expected an integer subject ID")
        ids.append(int(text))
    return ids


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated CLI value as a list (None for an absent value)."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def prefixed(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``table`` with its latent columns renamed ``<prefix>_<column>`` (``S1701_Z0``)."""
    return table.rename(columns={c: f"{prefix}_{c}" for c in latent_columns(table)})


def unique_keys(table: pd.DataFrame, source: str, keys: Iterable[str] = KEY_COLUMNS) -> None:
    """Raise :class:`DataError` if two rows of ``table`` (from ``source``) share the same key."""
    dup = table.duplicated(list(keys), keep=False)
    if dup.any():
        row = table.loc[dup, list(keys)].iloc[0].astype(str)
        raise DataError(f"{source}: key {'/'.join(row)} appears more than once; expected unique keys")


# ---------------------------------------------------------------------------------------------- multi-run joins
# ``…_seed<k>_…``, ``…seed_<k>…``, then a folder named ``S<k>`` (the column prefix, as in S1701/Output_fullDS)
_SEED_PATTERNS = (re.compile(r"_seed(\d+)_"), re.compile(r"seed_(\d+)"), re.compile(r"(?:^|/)S(\d+)(?=/|$)"))
DEFAULT_SEED = 1701


def seed_of(run: str | Path) -> int:
    """The seed in a run path (``…_seed<k>_…``, then ``…seed_<k>…``, then a folder ``S<k>``), else 1701 as in the
    companion."""
    text = Path(run).as_posix()
    for pattern in _SEED_PATTERNS:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return DEFAULT_SEED


def run_prefixes(paths: Sequence[str | Path], names: Sequence[str] | None = None) -> list[str]:
    """Column prefixes of the runs: ``names`` when given, else ``S<seed>`` parsed from each path; must be unique."""
    if names is not None:
        if len(names) != len(paths):
            raise DataError(f"--names has {len(names)} value(s) for {len(paths)} input file(s); expected one per file")
        prefixes = list(names)
    else:
        prefixes = [f"S{seed_of(p)}" for p in paths]
    seen: dict[str, str] = {}
    for prefix, path in zip(prefixes, paths, strict=True):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", prefix):
            raise DataError(f"run prefix {prefix!r} for {path} is invalid; expected letters, digits, '.' or '-'")
        if prefix in seen:
            raise DataError(f"inputs {seen[prefix]} and {path} both get the prefix {prefix!r}; give distinct --names")
        seen[prefix] = str(path)
    return prefixes


@dataclass
class MergeReport:
    """Keys (subID/fieldID/instanceID/data_tag) of each run that are absent from at least one other run."""

    only_in: dict[str, list[str]] = field(default_factory=dict)  # prefix → keys present there but missing elsewhere
    missing_from: dict[str, list[str]] = field(default_factory=dict)  # prefix → keys of other runs it lacks

    @property
    def complete(self) -> bool:
        return not any(self.missing_from.values())

    def lines(self) -> list[str]:
        """One human-readable line per run that lacks keys."""
        out = []
        for prefix, keys in self.missing_from.items():
            if keys:
                subjects = sorted({k.split("/")[0] for k in keys})
                out.append(
                    f"{prefix}: lacks {len(keys)} series of {len(subjects)} subject(s) present in another run "
                    f"(e.g. {', '.join(keys[:3])})"
                )
        return out

    def frame(self) -> pd.DataFrame:
        """``key, run, status`` rows (``status`` = missing) for a report file."""
        rows = [(k, p, "missing") for p, keys in self.missing_from.items() for k in keys]
        return pd.DataFrame(rows, columns=["key", "run", "status"])


def _key_strings(table: pd.DataFrame) -> pd.Series:
    return table[list(KEY_COLUMNS)].astype(str).agg("/".join, axis=1)


def merge_tables(
    tables: Sequence[pd.DataFrame], prefixes: Sequence[str], how: str = "inner"
) -> tuple[pd.DataFrame, MergeReport]:
    """Join long tables of several runs on ``subID, fieldID, instanceID, data_tag`` (never by row position).

    Latent columns become ``<prefix>_<column>``. ``how`` is ``inner`` (keys present in every run) or ``outer``
    (NaN where a run lacks a key). The result is sorted by key, so the input row order does not matter.
    """
    if how not in ("inner", "outer"):
        raise DataError(f"join {how!r} is unknown; expected inner or outer")
    if len(tables) < 2:
        raise DataError(f"{len(tables)} input(s) given; expected at least two runs to merge")
    keysets = {}
    merged: pd.DataFrame | None = None
    for table, prefix in zip(tables, prefixes, strict=True):
        unique_keys(table, f"run {prefix}")
        keysets[prefix] = set(_key_strings(table))
        part = prefixed(table, prefix)
        merged = part if merged is None else merged.merge(part, on=list(KEY_COLUMNS), how=how)
    assert merged is not None
    union = set().union(*keysets.values())
    report = MergeReport(
        only_in={
            p: sorted(k for k in ks if any(k not in o for q, o in keysets.items() if q != p))
            for p, ks in keysets.items()
        },
        missing_from={p: sorted(union - ks) for p, ks in keysets.items()},
    )
    merged = merged.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
    return merged, report


# ---------------------------------------------------------------------------------------------- h5 union
def _read_root_attrs(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r", swmr=True) as f:
        return {k: f.attrs[k] for k in f.attrs}


def _read_raw(path: Path) -> dict[str, np.ndarray]:
    """Every depth-4 dataset of ``path`` as stored (dtype and shape kept)."""
    if not path.is_file():
        raise DataError(f"latent file {path} does not exist; expected an emb.h5 written by a test run")
    check_output_file(path)  # refuses a file of an incomplete output set (a killed run's staging folder)
    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            if name.count("/") + 1 != KEY_DEPTH:
                raise DataError(
                    f"{path}: dataset {name!r} is not at depth 4; expected <subID>/<field>/<instance>/<key>"
                )
            out[name] = obj[()]

    try:
        with h5py.File(path, "r", swmr=True) as f:
            f.visititems(visit)
    except OSError as err:
        raise DataError(f"latent file {path} cannot be opened ({err}); expected a standard HDF5 file") from None
    return out


def union_emb_h5(inputs: Sequence[str | Path], output: str | Path) -> dict[str, int]:
    """Merge incremental ``emb.h5`` files into one, equal to a single run over all their subjects.

    A key present in several inputs must hold identical values (same shape and dtype); otherwise
    :class:`DataError` names the key and both files. Root attributes are kept when every input that has them agrees;
    conflicting ones are dropped. Returns ``{input path: number of datasets it contributed}``.
    """
    dense: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    contributed: dict[str, int] = {}
    attrs: dict[str, Any] = {}
    conflicting: set[str] = set()
    for item in inputs:
        path = Path(item)
        arrays = _read_raw(path)
        contributed[str(path)] = 0
        for key, value in arrays.items():
            if key in dense:
                old = dense[key]
                if (
                    old.shape != value.shape
                    or old.dtype != value.dtype
                    or not np.array_equal(old, value, equal_nan=True)
                ):
                    raise DataError(
                        f"key {key!r} differs between {origin[key]} and {path}; expected identical values for a "
                        "series present in several inputs"
                    )
                continue
            dense[key], origin[key] = value, str(path)
            contributed[str(path)] += 1
        for name, value in _read_root_attrs(path).items():
            if name in attrs and not np.array_equal(np.asarray(attrs[name]), np.asarray(value)):
                conflicting.add(name)
            attrs.setdefault(name, value)
    kept = {k: v for k, v in attrs.items() if k not in conflicting}
    write_results_h5(Path(output), dense, attrs=kept or None)
    return contributed


# ---------------------------------------------------------------------------------------------- executor entry points
def load_table(
    path: str | Path,
    subjects: Collection[int] | None = None,
    data_tags: Collection[str] | None = None,
    visit_rule: bool = False,
) -> pd.DataFrame:
    """:func:`emb_table` of ``path`` with the exact filters and, optionally, the GWAS visit rule."""
    table = emb_table(path, subjects, data_tags)
    return apply_visit_rule(table) if visit_rule else table


def export_latents(
    h5: str | Path,
    out: str | Path,
    subjects: Collection[int] | None = None,
    data_tags: Collection[str] | None = None,
    visit_rule: bool = False,
    gwas: bool = False,
) -> pd.DataFrame:
    """Write ``h5`` as a long table, or with ``gwas`` as ``FID IID Z…`` (the visit rule is then always applied)."""
    table = load_table(h5, subjects, data_tags, visit_rule or gwas)
    if gwas:
        table = gwas_table(table)
    write_table(table, out, gwas=gwas)
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    """A long latent table written by :func:`write_table` (.csv, .tsv/.txt or .parquet), IDs kept as text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"latent table {path} does not exist")
    dtypes = {c: str for c in KEY_COLUMNS}
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        table = table.astype({c: str for c in KEY_COLUMNS if c in table.columns})
    elif path.suffix in _SEPARATORS:
        table = pd.read_csv(path, sep=_SEPARATORS[path.suffix], dtype=dtypes)
    else:
        raise ConfigError(
            f"latent table {path}: unknown extension {path.suffix!r}; expected .csv, .tsv, .txt or .parquet"
        )
    missing = [c for c in KEY_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"latent table {path} lacks the key columns {missing}; expected {list(KEY_COLUMNS)} and Z0…")
    return table


def table_to_emb_h5(table: str | Path | pd.DataFrame, output: str | Path) -> int:
    """Write a long latent table back as an emb.h5 (one (1, 1, 1, L) float64 dataset per row); returns the row count."""
    frame = read_table(table) if not isinstance(table, pd.DataFrame) else table
    columns = latent_columns(frame)
    unique_keys(frame.astype({c: str for c in KEY_COLUMNS}), "table" if isinstance(table, pd.DataFrame) else str(table))
    values = frame[columns].to_numpy(dtype=np.float64)
    keys = frame[list(KEY_COLUMNS)].astype(str).agg("/".join, axis=1)
    dense = {key: vec.reshape(1, 1, 1, -1) for key, vec in zip(keys, values, strict=True)}
    write_results_h5(Path(output), dense)
    return len(dense)


def merge_latents(
    h5s: Sequence[str | Path],
    out: str | Path,
    names: Sequence[str] | None = None,
    how: str = "inner",
    subjects: Collection[int] | None = None,
    data_tags: Collection[str] | None = None,
    visit_rule: bool = False,
    gwas: bool = False,
) -> tuple[pd.DataFrame, MergeReport]:
    """Join several runs' ``emb.h5`` by key into ``out`` with ``<prefix>_Z…`` columns; see :func:`merge_tables`.

    With ``gwas`` the visit rule is applied per run before the join and the result is ``FID IID S1701_Z0 …``.
    """
    prefixes = run_prefixes(h5s, names)
    tables = [load_table(p, subjects, data_tags, visit_rule or gwas) for p in h5s]
    merged, report = merge_tables(tables, prefixes, how)
    if gwas:
        merged = gwas_table(merged)
    write_table(merged, out, gwas=gwas)
    return merged, report
