"""Write a K-fold CSV for an HDF5 file: ``python Executors/make_folds.py --h5 <datadir>/data.h5 [--n_folds 5 ...]``.

The test splits partition the patients (each patient is tested in exactly one fold); val comes from the remaining
patients; the file is reproducible from --seed. Default output: next to the H5, named
``<n>folds[_<k>Ses][_<names>]_<pDS>DS_<pTrn>Trn_<pVal>Val_<pTst>Tst_<seed>seed.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.getcwd())

from Engineering.data.folds import eligible_patients, fold_csv_name, kfold_partition, write_fold_csv  # noqa: E402
from Engineering.errors import ConfigError, DataError, run_guarded  # noqa: E402


def _ignore(value: str | None) -> list[str]:
    if not value:
        return []
    if Path(value).is_file():
        try:
            return [str(v) for v in json.loads(Path(value).read_text())]
        except ValueError:
            raise ConfigError(f"--ignore {value} is not a JSON list of patient IDs") from None
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h5", required=True, help="the data HDF5 file")
    parser.add_argument("--n_folds", type=int, default=5, help="number of folds (test share = 1/n_folds)")
    parser.add_argument("--per_val", type=float, default=0.1, help="validation share of all patients")
    parser.add_argument("--per_dataset", type=float, default=1.0, help="share of the patients to use")
    parser.add_argument("--seed", type=int, default=1701, help="shuffle seed")
    parser.add_argument(
        "--ds_names_present",
        default="",
        help="keep patients with a dataset name containing one of these (comma or OR list)",
    )
    parser.add_argument(
        "--n_sessions", type=int, default=0, help="keep patients with exactly this many instances (0: any)"
    )
    parser.add_argument("--ignore", help="patient IDs to leave out: comma list or a JSON list file")
    parser.add_argument("--out", help="output CSV (default: the companion's name next to the H5)")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    h5 = Path(args.h5)
    if not h5.is_file():
        raise DataError(f"--h5 {h5} does not exist; expected the data HDF5 file")
    names = [n.strip() for n in args.ds_names_present.replace("OR", ",").split(",") if n.strip()]
    ids = eligible_patients(h5, names, args.n_sessions, _ignore(args.ignore))
    if not ids:
        raise DataError(
            f"no patient of {h5} passes --ds_names_present {args.ds_names_present!r} / --n_sessions {args.n_sessions}"
        )
    folds = kfold_partition(ids, args.n_folds, args.per_val, args.per_dataset, args.seed)
    name = fold_csv_name(args.n_folds, args.per_dataset, args.per_val, args.seed, args.n_sessions, names)
    path = write_fold_csv(args.out or h5.parent / name, folds)
    sizes = ", ".join(f"{len(f.train)}/{len(f.val)}/{len(f.test)}" for f in folds)
    print(f"wrote {path}: {len(folds)} folds over {sum(len(f.test) for f in folds)} patients (train/val/test {sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
