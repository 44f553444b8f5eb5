"""Export an emb.h5 as a table: one row per series (subID, fieldID, instanceID, data_tag, Z0…), or the GWAS layout.

Run from the repository root:
    python Executors/export_latents.py --h5 RUN/Output_fullDSV2/emb.h5 --out latents.csv [--visit-rule]
    python Executors/export_latents.py --h5 RUN/Output_fullDSV2/emb.h5 --out processed_raw.tsv --gwas \
        --data-tags primary_LAX_4Ch_transverse_0
    python Executors/export_latents.py --from-table latents.csv --out emb.h5      # back to an emb.h5
The output format follows the extension: .csv, .tsv/.txt, .parquet (needs pyarrow). --gwas writes the
whitespace (tab) separated regenie/plink phenotype file FID IID Z0… (visit rule applied, one row per subject).
"""

import argparse
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.errors import run_guarded  # noqa: E402


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with merge_latents.py."""
    parser.add_argument("--subjects", default=None, help="Text file of subject IDs to keep (one integer per line).")
    parser.add_argument("--data-tags", default=None, help="Comma-separated dataset names to keep (exact match).")
    parser.add_argument(
        "--visit-rule",
        action="store_true",
        help="Keep instance 2_x rows, plus 3_x rows of subjects without a visit-2 row; drop other visits.",
    )
    parser.add_argument(
        "--gwas",
        action="store_true",
        help="Write FID IID Z… (tab-separated, one row per subject; implies --visit-rule).",
    )
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="export_latents.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--h5", help="The emb.h5 to export.")
    source.add_argument("--from-table", help="A long table written by this tool, to turn back into an emb.h5 (--out).")
    parser.add_argument("--out", required=True, help="Output table (.csv, .tsv, .txt or .parquet), or emb.h5.")
    add_filter_args(parser)
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    from Engineering.outputs.latent_tables import export_latents, read_id_list, split_list

    args = parse_args(argv)
    if args.from_table:
        from Engineering.outputs.latent_tables import table_to_emb_h5

        print(f"{args.out}: {table_to_emb_h5(args.from_table, args.out)} series")
        return 0
    subjects = read_id_list(args.subjects) if args.subjects else None
    table = export_latents(args.h5, args.out, subjects, split_list(args.data_tags), args.visit_rule, args.gwas)
    print(f"{args.out}: {len(table)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
