"""Test-stage outputs: result accumulation, ``emb.h5``/``recon.h5`` writing and checking, the metrics table.

The downstream contract (datasets at depth 4 as ``<subID>/<fieldID>/<instanceID>/<series>``) is described in
:mod:`Engineering.outputs.h5writer`.
"""

from Engineering.outputs.distributed import gather_holder, gather_to_rank0
from Engineering.outputs.h5writer import check_emb_h5, split_key, write_results_h5
from Engineering.outputs.metrics import METRICS_CSV, METRICS_PKL, metrics_frame, write_metrics
from Engineering.outputs.results import ResultHolder, as_numpy, subject_of
from Engineering.science.metrics import Evaluator, median_ssim

__all__ = [
    "METRICS_CSV",
    "METRICS_PKL",
    "Evaluator",
    "ResultHolder",
    "as_numpy",
    "check_emb_h5",
    "gather_holder",
    "gather_to_rank0",
    "median_ssim",
    "metrics_frame",
    "split_key",
    "subject_of",
    "write_metrics",
    "write_results_h5",
]
