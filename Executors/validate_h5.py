"""Validate an input HDF5 file: ``python Executors/validate_h5.py [data.h5] [--json dataNpath.json] [--config
config.yaml] [--script diffae|recon] [--folds folds.csv] [--fold_id 0] [-- executor options and § overrides]``.

Without --json only the file contract is checked. With --json the run's options are resolved exactly as
``Executors/main_<script>.py --datajson_path JSON`` resolves them (its default config YAML unless --config, its
defaults, the options and overrides after ``--``), and every split goes through the reader's own selection and
data checks. The file argument, --folds and --fold_id replace the JSON's datadir/datafile, foldCSV and foldID.
Prints a report; exit 0 when there are no errors, 1 when the file breaks the contract or the run would fail,
2 when the check itself cannot run (missing or unreadable file, bad JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.getcwd())

from Engineering.data.validate import RunSelection, ValidationReport, run_selection, validate  # noqa: E402
from Engineering.errors import ConfigError, DataError, run_guarded  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h5", nargs="?", help="the HDF5 file (default: the JSON's datadir/datafile)")
    parser.add_argument("--json", help="dataNpath JSON of the run (DS_* selection, datadir, foldCSV, foldID)")
    parser.add_argument("--config", help="config YAML (default: the executor's, Configs/config_v1.yaml)")
    parser.add_argument("--script", choices=("diffae", "recon"), default="diffae", help="executor whose defaults apply")
    parser.add_argument("--folds", help="fold CSV (default: the JSON's foldCSV in datadir)")
    parser.add_argument("--fold_id", type=int, help="fold row used for the selection (default: the JSON's foldID or 0)")
    parser.add_argument("--skip_voxels", action="store_true", help="do not read the data to look for NaN/inf")
    return parser


def _executor_argv(args: argparse.Namespace, passthrough: list[str]) -> list[str]:
    """The executor command line whose run is checked; file/fold arguments become JSON overrides."""
    argv = ["--datajson_path", args.json]
    if args.config:
        argv += ["--configyml_path", args.config]
    if args.h5:
        h5 = Path(args.h5)
        argv += [f"--json§datadir={h5.parent}", f"--json§datafile={h5.name}"]
    if args.folds:
        argv += [f"--json§foldCSV={Path(args.folds).resolve()}"]
    if args.fold_id is not None:
        argv += [f"--json§foldID={args.fold_id}"]
    return argv + passthrough


def main(argv: Sequence[str]) -> int:
    argv = [a for a in argv if a != "--debug"]
    own, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = _parser().parse_args(own)
    if args.json is None and (passthrough or not args.h5):
        raise ConfigError("give the HDF5 file, or --json with the run's data JSON (executor options need --json)")
    selection: RunSelection | None = None
    refused = ""
    if args.json is not None:
        try:
            selection = run_selection(args.script, _executor_argv(args, passthrough))
        except DataError as err:  # the run would stop here (e.g. overlapping folds): a finding, not a tool failure
            refused = str(err)
    h5 = Path(args.h5) if args.h5 else (selection.h5_path if selection else None)
    report = ValidationReport()
    if h5 is not None:
        if not h5.is_file():
            raise DataError(
                f"HDF5 file {h5} does not exist; expected the data file (argument or JSON datadir/datafile)"
            )
        folds = Path(args.folds) if args.folds else (selection.fold_csv if selection else None)
        if folds is not None and not folds.is_file():
            raise DataError(f"fold CSV {folds} does not exist; expected a file with columns train,val,test")
        report = validate(h5, selection, folds, voxels=not args.skip_voxels)
    if refused:
        report.error("run", refused)
    print(report.render())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
