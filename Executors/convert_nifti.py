"""Convert NIfTI to the pipeline's HDF5: ``python Executors/convert_nifti.py --in <folder> --out data.h5 --pattern RE``
or ``--map files.csv``.

--map: a CSV with columns path,patient,field,instance,key (paths relative to the CSV). --pattern: a regular expression
with named groups (patient required; field, instance, key optional, else --field/--instance/--key) searched in each
``*.nii[.gz]`` path relative to --in. Axes: NIfTI (x, y, z, t, c) → (Channel, Time, Slice, X, Y) = (c, t, z, x, y).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.getcwd())

from Engineering.data.convert.nifti import convert_nifti, map_from_csv, map_from_regex  # noqa: E402
from Engineering.errors import ConfigError, run_guarded  # noqa: E402


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    parser.add_argument("--map", help="CSV with columns path,patient,field,instance,key")
    parser.add_argument("--in", dest="source", help="folder searched for *.nii / *.nii.gz (with --pattern)")
    parser.add_argument("--pattern", help=r"regex with named groups, e.g. '(?P<patient>\d+)_(?P<instance>\d_\d)'")
    parser.add_argument("--field", default="0", help="field ID when the pattern has no 'field' group")
    parser.add_argument("--instance", default="0_0", help="instance ID when the pattern has no 'instance' group")
    parser.add_argument("--key", default="primary", help="series key when the pattern has no 'key' group")
    parser.add_argument("--canonical", action="store_true", help="reorient to the closest RAS+ first")
    parser.add_argument("--compress", action="store_true", help="gzip the datasets (one chunk per series)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    if bool(args.map) == bool(args.pattern):
        raise ConfigError("give exactly one of --map CSV or --in FOLDER --pattern REGEX")
    if args.pattern and not (args.source and Path(args.source).is_dir()):
        raise ConfigError(f"--in {args.source!r} is not a folder; --pattern needs the folder to search")
    mapping = (
        map_from_csv(Path(args.map))
        if args.map
        else map_from_regex(Path(args.source), args.pattern, args.field, args.instance, args.key)
    )
    report = convert_nifti(mapping, args.out, args.compress, args.canonical, progress=not args.no_progress)
    print(report.summary())
    print(f"output: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
