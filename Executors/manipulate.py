"""Move subjects of a finished DiffAE run along a latent direction, or interpolate between two subjects.

For each subject: encode its semantic latent z, DDIM-invert it once to its stochastic code x_T, then decode
z + α·σ·ŵ for each α (σ: the SD of the run's latents projected on the unit direction ŵ) with that x_T.
Interpolation decodes lerp(z_A, z_B, t) with slerp(x_T,A, x_T,B, t). Writes a labelled PNG grid (rows = α or t,
columns = frames), an animated GIF over the frames when there are several, and the tensors in HDF5.

Run from the repository root:
    python Executors/manipulate.py --run_dir RUN --subjects 1000011 --direction index 3 [--alphas -2 0 2]
    python Executors/manipulate.py --run_dir RUN --between 1000011 1000022 --steps 5 [--ddim_steps 20]
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

    parser = argparse.ArgumentParser(prog="manipulate.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--run_dir", required=True, help="Folder of a finished DiffAE run (<save_path>/<run_name>).")
    parser.add_argument("--load_best", action="store_true", help="Use the best (epoch=*) checkpoint, else last.")
    parser.add_argument("--subjects", nargs="+", default=[], metavar="ID", help="Subjects to move along --direction.")
    parser.add_argument("--direction", nargs="+", metavar="ARG", help=DIRECTION_HELP)
    parser.add_argument("--alphas", nargs="+", default=["-2", "-1", "0", "1", "2"], metavar="A",
                        help="Steps along the direction, in SDs of the latents' projection (default -2 -1 0 1 2).")  # fmt: skip
    parser.add_argument("--between", nargs=2, metavar=("A", "B"), help="Interpolate from subject A to subject B.")
    parser.add_argument("--steps", type=int, default=5, help="Interpolation steps, both ends included (default 5).")
    parser.add_argument("--ddim_steps", type=int, default=None,
                        help="DDIM steps for inversion and decoding (default: the run's own, as its test stage).")  # fmt: skip
    parser.add_argument("--frames", nargs="+", type=int, metavar="F",
                        help="Frames (3D: depth/time index; 2D: sample of the series) shown as columns (default 4).")  # fmt: skip
    parser.add_argument("--series", default=None, help="Series name or full key (default: each subject's first).")
    parser.add_argument("--emb", default=None, help="Reference latents (default: the run's fullest Output*/emb.h5).")
    parser.add_argument("--out", default=None, help="Output folder (default <run_dir>/Manipulation).")
    parser.add_argument("--device", default=None, help="Torch device (default cuda when available, else cpu).")
    parser.add_argument("--no_progress", action="store_true", help="Hide the DDIM progress bars.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    from pathlib import Path

    import torch

    from Engineering.engines.directions import parse_direction
    from Engineering.engines.latent_views import ManipulationRequest, parse_alphas, run_manipulation

    args = parse_args(argv)
    request = ManipulationRequest(
        run_dir=Path(args.run_dir),
        subjects=list(args.subjects),
        direction=parse_direction(args.direction) if args.direction else None,
        alphas=parse_alphas(args.alphas),
        between=tuple(args.between) if args.between else None,
        steps=args.steps,
        ddim_steps=args.ddim_steps,
        frames=args.frames,
        series=args.series,
        emb=Path(args.emb) if args.emb else None,
        out=Path(args.out) if args.out else None,
        load_best=args.load_best,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        progress=not args.no_progress,
    )
    for path in run_manipulation(request):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
