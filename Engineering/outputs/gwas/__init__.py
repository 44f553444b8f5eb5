"""From several seeds' ``emb.h5`` to a GWAS-ready phenotype folder.

Parts, usable on their own: :mod:`.phenotypes` (key join, visit policy, inverse-normal transform, column names),
:mod:`.reproducibility` (cross-seed best-match correlations, selection, similarity files, plots), :mod:`.merging`
(Hungarian alignment; PCA, CCA and multiset-CCA merges), :mod:`.covariates` (regenie covariate file),
:mod:`.regenie` (step-1/step-2 script, phenotype list), :mod:`.report` (summary.md) and :mod:`.pipeline`, which runs
them all (``Executors/gwas_prepare.py``).
"""

from Engineering.outputs.gwas.pipeline import GwasOptions, prepare_gwas

__all__ = ["GwasOptions", "prepare_gwas"]
