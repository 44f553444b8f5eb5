"""Write one self-contained HTML page about a finished run (figures embedded; copies as PNGs next to it).

Sections: the run, training curves (TensorBoard events or a metrics.csv log), test metric distributions, labelled
reconstruction panels, per-latent histograms and correlations, a PCA map of the latents (coloured by a phenotype
with --phenotype) and, for a DiffAE run with --direction, the manipulation grid of one subject.

Run from the repository root:
    python Executors/report.py --run_dir RUN [--phenotype TABLE COLUMN] [--direction index 3] [--out DIR]
"""

import argparse
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.errors import run_guarded  # noqa: E402


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    from Engineering.engines.directions import DIRECTION_HELP

    parser = argparse.ArgumentParser(prog="report.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--run_dir", required=True, help="Folder of a finished run (<save_path>/<run_name>).")
    parser.add_argument("--output", default=None,
                        help="Test output folder of the run to show (default Output, else the first Output*).")  # fmt: skip
    parser.add_argument(
        "--out", default=None, help="Folder for report.html and report_png/ (default <run_dir>/Report)."
    )
    parser.add_argument("--phenotype", nargs=2, metavar=("TABLE", "COLUMN"),
                        help="Colour the latent map by COLUMN of TABLE (TSV indexed by FID or f.eid).")  # fmt: skip
    parser.add_argument("--direction", nargs="+", metavar="ARG", help="Add a manipulation grid: " + DIRECTION_HELP)
    parser.add_argument(
        "--subject", default=None, help="Subject of the manipulation grid (default: first in recon.h5)."
    )
    parser.add_argument("--alphas", nargs="+", default=["-2", "-1", "0", "1", "2"], metavar="A",
                        help="Steps of the manipulation grid in SDs (default -2 -1 0 1 2).")  # fmt: skip
    parser.add_argument("--ddim_steps", type=int, default=None, help="DDIM steps of the grid (default: the run's).")
    parser.add_argument("--tblog", default=None, help="TensorBoard folder (default <tblog_path>/<run_name>).")
    parser.add_argument("--load_best", action="store_true", help="Manipulate with the best checkpoint, else last.")
    parser.add_argument("--device", default=None, help="Torch device (default cuda when available, else cpu).")
    parser.add_argument("--no_progress", action="store_true", help="Hide the DDIM progress bars.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    from pathlib import Path

    import torch

    from Engineering.engines.directions import parse_direction
    from Engineering.engines.latent_views import parse_alphas
    from Engineering.engines.run_report import ReportRequest, write_report

    args = parse_args(argv)
    request = ReportRequest(
        run_dir=Path(args.run_dir),
        output=args.output,
        out=Path(args.out) if args.out else None,
        phenotype=(args.phenotype[0], args.phenotype[1]) if args.phenotype else None,
        direction=parse_direction(args.direction) if args.direction else None,
        subject=args.subject,
        alphas=parse_alphas(args.alphas),
        ddim_steps=args.ddim_steps,
        tblog=Path(args.tblog) if args.tblog else None,
        load_best=args.load_best,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        progress=not args.no_progress,
    )
    print(write_report(request))
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
