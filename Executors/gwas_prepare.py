"""From several seeds' emb.h5 to a GWAS-ready folder: regenie phenotype tables, cross-seed selection, covariates.

Run from the repository root:
    python Executors/gwas_prepare.py --runs S1701/Output_fullDS S42/Output_fullDS ... --out gwas/ \
        [--covariates covars.tsv --cat-covars Sex,Batch,Centre] [--exclude outliers.txt] [--align --merge mcca]
Writes phenotypes_raw.tsv and phenotypes_int.tsv (FID IID S<seed>_Z<k> …, tab-separated, NA for missing; one row
per subject, visit 2 preferred), latents_similarity[_filtered].tsv, reproducibility.tsv, seed_heatmap.png,
best_r_distribution.png, column_map.tsv, pheno_columns.txt, run_regenie.sh, covariates.tsv and summary.md.
"""

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.errors import run_guarded  # noqa: E402


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gwas_prepare.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--runs", nargs="+", required=True, help="Output folders (or emb.h5 files), one per seed.")
    parser.add_argument("--out", required=True, help="Folder to write (must be new or empty unless --overwrite).")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="Seed of each run (default: from paths).")
    parser.add_argument("--data-tags", type=_csv, default=None, help="Comma-separated dataset names (exact match).")
    parser.add_argument(
        "--visits",
        choices=("prefer2", "all"),
        default="prefer2",
        help="prefer2: one row per subject, visit 2 else 3 (GWAS); all: every visit with a visit column.",
    )
    parser.add_argument("--include", type=Path, default=None, help="Text file of subject IDs to keep (integers).")
    parser.add_argument("--exclude", type=Path, default=None, help="Text file of subject IDs to drop (integers).")
    parser.add_argument("--threshold", type=float, default=0.8, help="Keep columns with best |r| above this.")
    parser.add_argument(
        "--naming", choices=("seed", "index"), default="seed", help="seed: S1701_Z3; index: Z3_S1 (n = run order)."
    )
    parser.add_argument("--ties", choices=("random", "average"), default="random", help="Tie handling of the INT.")
    parser.add_argument("--random-state", type=int, default=1701, help="Seed of the random tie-breaking.")
    parser.add_argument("--align", action="store_true", help="Hungarian-align seeds to the first on |cosine|.")
    parser.add_argument(
        "--merge", choices=("pca", "cca", "mcca"), default=None, help="Merge aligned seeds (implies --align)."
    )
    parser.add_argument("--covariates", type=Path, default=None, help="Covariate table (.csv, .tsv or whitespace).")
    parser.add_argument("--covar-cols", type=_csv, default=None, help="Covariates to use (default: all columns).")
    parser.add_argument("--cat-covars", type=_csv, default=(), help="Categorical covariates (comma-separated).")
    parser.add_argument("--covar-id", default=None, help="ID column of the covariate table (default IID/FID/eid).")
    parser.add_argument("--overwrite", action="store_true", help="Replace the files of a non-empty --out.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    from Engineering.outputs.gwas import GwasOptions, prepare_gwas

    args = parse_args(argv)
    options = GwasOptions(
        runs=tuple(Path(r) for r in args.runs),
        out=Path(args.out),
        seeds=tuple(args.seeds) if args.seeds else None,
        data_tags=args.data_tags,
        visits=args.visits,
        include=args.include,
        exclude=args.exclude,
        threshold=args.threshold,
        naming=args.naming,
        ties=args.ties,
        random_state=args.random_state,
        align=args.align,
        merge=args.merge,
        covariates=args.covariates,
        covar_cols=args.covar_cols,
        cat_covars=args.cat_covars,
        covar_id=args.covar_id,
        overwrite=args.overwrite,
        command=shlex.join(["python", "Executors/gwas_prepare.py", *argv]),
    )
    outcome = prepare_gwas(options)
    pheno = outcome.phenotypes
    print(
        f"{args.out}: {len(pheno.table)} rows, {len(outcome.selected)} of {len(pheno.latent)} columns selected "
        f"for regenie; see {Path(args.out) / 'summary.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
