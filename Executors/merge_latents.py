"""Merge several runs' emb.h5: a key-joined table with per-run column prefixes, or an HDF5 union.

Run from the repository root:
    python Executors/merge_latents.py --h5 RUN_seed1701/Output/emb.h5 RUN_seed42/Output/emb.h5 --out merged.tsv \
        [--names S1701 S42] [--how inner|outer] [--report missing.csv] [--gwas]
    python Executors/merge_latents.py --h5-union OLD/Output_fullDSV2/emb.h5 NEW/Output_fullV3OnlyDS/emb.h5 \
        --out MERGED/Output_fullDSV3/emb.h5
Tables are joined on subID/fieldID/instanceID/data_tag, never by row position. Prefixes default to S<seed> parsed
from each path (_seed<k>_, seed_<k> or a folder S<k>, else 1701). Series present in some runs only are reported on stderr.
--h5-union writes one emb.h5 equal to a single run over all inputs; a series present in several inputs with
different values is an error.
"""

import argparse
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.errors import run_guarded  # noqa: E402
from Executors.export_latents import add_filter_args  # noqa: E402


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="merge_latents.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--h5", nargs="+", help="emb.h5 files of the runs to join column-wise (two or more).")
    inputs.add_argument("--h5-union", nargs="+", help="emb.h5 files of incremental runs to merge into one emb.h5.")
    parser.add_argument("--out", required=True, help="Output table (.csv/.tsv/.txt/.parquet) or, with --h5-union, .h5.")
    parser.add_argument(
        "--names", nargs="+", default=None, help="Column prefixes, one per --h5 file (default S<seed>)."
    )
    parser.add_argument("--how", choices=("inner", "outer"), default="inner", help="Keep keys in all runs, or any.")
    parser.add_argument("--report", default=None, help="CSV listing the series each run lacks (key, run, status).")
    parser.add_argument(
        "--strict", action="store_true", help="Fail (exit 3) when some run lacks series present in another."
    )
    add_filter_args(parser)
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    from Engineering.outputs.latent_tables import merge_latents, read_id_list, split_list, union_emb_h5

    args = parse_args(argv)
    if args.h5_union:
        counts = union_emb_h5(args.h5_union, args.out)
        for path, n in counts.items():
            print(f"{path}: {n} new series", file=sys.stderr)
        print(f"{args.out}: {sum(counts.values())} series")
        return 0
    subjects = read_id_list(args.subjects) if args.subjects else None
    merged, report = merge_latents(
        args.h5, args.out, args.names, args.how, subjects, split_list(args.data_tags), args.visit_rule, args.gwas
    )
    for line in report.lines():
        print(f"merge_latents: {line}", file=sys.stderr)
    if args.report:
        report.frame().to_csv(args.report, index=False)
    print(f"{args.out}: {len(merged)} rows")
    return 3 if args.strict and not report.complete else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
