"""Convert DICOM to the pipeline's HDF5: ``python Executors/convert_dicom.py --in <zips or folder> --out data.h5``.

Input: UK Biobank zips ``<eid>_<field>_<instance>_<array>.zip``, folders with such names, or any folder tree of
DICOM files (patient from the PatientID tag, field/instance from --field/--instance). Series are chosen and named by
--config (a meta.yaml-style file such as Configs/convert/F20208.yaml) or the flags below; with neither, every series
becomes ``primary_<description>``. Bad files are skipped and listed in the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.getcwd())

from Engineering.data.convert.config import PLANES, FieldConfig, load_field_config  # noqa: E402
from Engineering.data.convert.dicom import convert_dicom  # noqa: E402
from Engineering.errors import ConfigError, run_guarded  # noqa: E402


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _bool(value: str) -> bool:
    if value.lower() not in {"true", "false", "1", "0"}:
        raise argparse.ArgumentTypeError(f"{value!r} is not a boolean; expected true or false")
    return value.lower() in {"true", "1"}


def _config(args: argparse.Namespace) -> FieldConfig:
    given = [f"--{k}" for k in ("primary_data", "auxiliary_data", "default_plane") if getattr(args, k)]
    if args.config and given:
        raise ConfigError(f"--config {args.config} and {', '.join(given)} were both given; expected one or the other")
    if args.config:
        return load_field_config(args.config, args.field if args.field != "0" else None)
    primaries = [_list(alt.replace("|", ",")) for alt in _list(args.primary_data)]
    auxiliaries = [_list(alt.replace("|", ",")) for alt in _list(args.auxiliary_data)]
    return FieldConfig(
        primary_data=primaries,
        primary_data_tags=_list(args.primary_data_tags),
        auxiliary_data=auxiliaries,
        auxiliary_data_tags=_list(args.auxiliary_data_tags),
        multi_primary=args.multi_primary,
        repeat_acq=args.repeat_acq,
        default_plane=args.default_plane,
    )


def _ignore(value: str | None) -> set[str]:
    if not value:
        return set()
    path = Path(value)
    if path.is_file():
        try:
            return {str(v) for v in json.loads(path.read_text())}
        except (ValueError, TypeError):
            raise ConfigError(f"--ignore {path} is not a JSON list of patient IDs") from None
    return set(_list(value))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="source", required=True, help="a zip, or a folder of zips / DICOM folders")
    parser.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    parser.add_argument("--config", help="meta.yaml-style field config (e.g. Configs/convert/F20208.yaml)")
    parser.add_argument("--field", default="0", help="field ID for sources without a UKB name (and the YAML block)")
    parser.add_argument("--instance", default="0_0", help="instance ID for sources without a UKB name")
    parser.add_argument("--primary_data", help="comma list of primary descriptions; '|' separates alternatives")
    parser.add_argument("--primary_data_tags", help="comma list of tags, one per --primary_data entry")
    parser.add_argument("--multi_primary", type=_bool, default=False, help="key primaries as primary_<tag>")
    parser.add_argument("--auxiliary_data", help="comma list of auxiliary descriptions; '|' separates alternatives")
    parser.add_argument("--auxiliary_data_tags", help="comma list of tags, one per --auxiliary_data entry")
    parser.add_argument("--default_plane", choices=PLANES, help="plane that gets no _<plane> suffix")
    parser.add_argument("--repeat_acq", type=_bool, default=True, help="append _0.._n repeat suffixes")
    parser.add_argument("--ignore", help="patient IDs to skip: comma list or a JSON list file")
    parser.add_argument("--compress", action="store_true", help="gzip the datasets (one chunk per series)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    report = convert_dicom(
        args.source,
        args.out,
        _config(args),
        args.field,
        args.instance,
        args.compress,
        _ignore(args.ignore),
        progress=not args.no_progress,
    )
    print(report.summary())
    print(f"output: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
