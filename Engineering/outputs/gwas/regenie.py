"""The regenie step-1/step-2 script and phenotype list for the prepared folder (as the companion's engagers: regenie v3,
INFO ≥ 0.3, minimum MAC 100). We write the files; the user runs them where the genotypes are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from Engineering.outputs.gwas.covariates import REGENIE_DEFAULT_MAX_LEVELS, Covariates

PHENO_LIST = "pheno_columns.txt"
SCRIPT = "run_regenie.sh"

_TEMPLATE = """#!/usr/bin/env bash
# regenie GWAS of the latent phenotypes in this folder (written by Executors/gwas_prepare.py).
# Phenotypes: @@PHENO_FILE@@ (rank-inverse-normal, so no --apply-rint), columns in @@PHENO_LIST@@ (@@N_PHENO@@).
# Set the genotype paths, then run:  STEP1_BED=... STEP2_BGEN=... bash @@SCRIPT@@
#   STEP1_BED     PLINK prefix (.bed/.bim/.fam) of quality-controlled array genotypes for step 1
#   STEP2_BGEN    imputed .bgen for step 2; an '@' is replaced by each chromosome of CHROMS (default 1..22)
#   STEP2_SAMPLE  its .sample file (default: the .bgen path with .sample; '@' replaced too)
#   OUT (default regenie_out/ here), THREADS (default 8), EXTRA_STEP1 / EXTRA_STEP2 (more regenie options)
# Step 2 uses --ref-first (UK Biobank .bgen files list the reference allele first), --minMAC 100 and --minINFO 0.3
# as in the published analysis.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${STEP1_BED:?set STEP1_BED to the PLINK prefix of the step-1 array genotypes}"
: "${STEP2_BGEN:?set STEP2_BGEN to the step-2 .bgen file (an @ stands for the chromosome)}"
OUT="${OUT:-$HERE/regenie_out}"
THREADS="${THREADS:-8}"
CHROMS="${CHROMS:-$(seq 1 22)}"
mkdir -p "$OUT"
COMMON=(--phenoFile "$HERE/@@PHENO_FILE@@" --phenoColList "$(tr -d '[:space:]' < "$HERE/@@PHENO_LIST@@")" --qt
        --threads "$THREADS"@@COVARIATES@@)

regenie --step 1 --bed "$STEP1_BED" "${COMMON[@]}" --bsize 1000 --lowmem --lowmem-prefix "$OUT/tmp_step1" \\
    --out "$OUT/step1" ${EXTRA_STEP1:-}

step2() {  # $1 = .bgen, $2 = .sample, $3 = output tag
    regenie --step 2 --bgen "$1" --sample "$2" --ref-first "${COMMON[@]}" --pred "$OUT/step1_pred.list" \\
        --bsize 400 --minMAC 100 --minINFO 0.3 --gz --out "$OUT/step2_$3" ${EXTRA_STEP2:-}
}
if [[ "$STEP2_BGEN" == *@* ]]; then
    for chr in $CHROMS; do
        bgen="${STEP2_BGEN//@/$chr}"
        sample="${STEP2_SAMPLE:-${STEP2_BGEN%.bgen}.sample}"
        step2 "$bgen" "${sample//@/$chr}" "chr$chr"
    done
else
    step2 "$STEP2_BGEN" "${STEP2_SAMPLE:-${STEP2_BGEN%.bgen}.sample}" all
fi
"""


def _covariate_options(covariates: Covariates | None, covar_file: str) -> str:
    if covariates is None:
        return ""
    options = [f'--covarFile "$HERE/{covar_file}"']
    if covariates.quantitative:
        options.append(f"--covarColList {','.join(covariates.quantitative)}")
    if covariates.categorical:
        options.append(f"--catCovarList {','.join(covariates.categorical)}")
        if covariates.max_levels > REGENIE_DEFAULT_MAX_LEVELS:
            options.append(f"--maxCatLevels {covariates.max_levels}")
    return "\n        " + " ".join(options)


def write_regenie(
    out_dir: Path,
    pheno_file: str,
    columns: Sequence[str],
    covariates: Covariates | None = None,
    covar_file: str = "covariates.tsv",
) -> list[Path]:
    """Write ``pheno_columns.txt`` (comma-separated, for ``--phenoColList``) and ``run_regenie.sh``."""
    listing = out_dir / PHENO_LIST
    listing.write_text(",".join(columns) + "\n")
    text = _TEMPLATE
    for key, value in {
        "PHENO_FILE": pheno_file,
        "PHENO_LIST": PHENO_LIST,
        "N_PHENO": f"{len(columns)} columns",
        "SCRIPT": SCRIPT,
        "COVARIATES": _covariate_options(covariates, covar_file),
    }.items():
        text = text.replace(f"@@{key}@@", value)
    script = out_dir / SCRIPT
    script.write_text(text)
    script.chmod(0o755)
    return [listing, script]
