"""Validate an input HDF5 file: ``python Executors/validate_h5.py data.h5 [--json dataNpath.json --config
Configs/config_v1.yaml] [--folds folds.csv --fold_id 0]``.

Without a file argument the JSON's datadir/datafile is used. Prints a report; exit 0 when there are no errors,
1 when the file breaks the contract, 2 when the check itself cannot run (missing file, bad JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.getcwd())

from Engineering.data.validate import fold_csv_of, load_run_config, validate  # noqa: E402
from Engineering.errors import DataError, run_guarded  # noqa: E402


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h5", nargs="?", help="the HDF5 file (default: the JSON's datadir/datafile)")
    parser.add_argument("--json", help="dataNpath JSON (DS_* selection, datadir, foldCSV, foldID)")
    parser.add_argument("--config", help="YAML whose data.dataset block gives defaults (e.g. Configs/config_v1.yaml)")
    parser.add_argument("--folds", help="fold CSV (default: the JSON's foldCSV in datadir)")
    parser.add_argument("--fold_id", type=int, help="fold row used for the selection (default: the JSON's foldID or 0)")
    parser.add_argument("--norm_type", default="zscore", help="normalisation (a 'vol' type needs min_val/max_val)")
    parser.add_argument("--zscore_prenorm", default="minmaxvol", help="pre-normalisation of zscore")
    parser.add_argument("--skip_voxels", action="store_true", help="do not read the data to look for NaN/inf")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    run_json, yaml_dataset = load_run_config(
        Path(args.json) if args.json else None, Path(args.config) if args.config else None
    )
    datadir = Path(str(run_json.get("datadir", ".")))
    h5 = Path(args.h5) if args.h5 else datadir / str(run_json.get("datafile") or "data.h5")
    if not h5.is_file():
        raise DataError(f"HDF5 file {h5} does not exist; expected the data file (argument or JSON datadir/datafile)")
    folds = Path(args.folds) if args.folds else fold_csv_of(run_json, datadir if args.json else h5.parent)
    if folds is not None and not folds.is_file():
        raise DataError(f"fold CSV {folds} does not exist; expected a file with columns train,val,test")
    fold_id = args.fold_id if args.fold_id is not None else int(run_json.get("foldID", 0))
    report = validate(
        h5, run_json, yaml_dataset, folds, fold_id, args.norm_type, args.zscore_prenorm, not args.skip_voxels
    )
    print(report.render())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
