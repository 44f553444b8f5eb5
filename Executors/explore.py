"""Explore a trained DiffAE in the browser: subjects, reconstructions, latents, the latent map and directions.

Run from the repository root (needs the explore extra: pip install -e ".[explore]"):
    python Executors/explore.py --run_dir <save_path>/<run_name> [--ddim_steps 10] [--direction index 3] ...
    python Executors/explore.py --load_hf <exported folder> [--data data.h5] [--emb emb.h5]
then open http://127.0.0.1:7860 (the address is printed). The page is served on this machine only unless --host
says otherwise, needs no network, and each action takes seconds on a CPU with a small model: the number of
DDIM steps used is on the page. Stop with Ctrl+C.
"""

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.errors import ConfigError, run_guarded  # noqa: E402


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    from Engineering.engines.directions import DIRECTION_HELP

    parser = argparse.ArgumentParser(prog="explore.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run_dir", help="Run folder <save_path>/<run_name> of a DiffAE run.")
    source.add_argument("--load_hf", help="A folder written by export_hf.py (config.json + model.safetensors).")
    parser.add_argument("--load_best", action="store_true", help="With --run_dir: the best checkpoint, else last.")
    parser.add_argument("--data", help="HDF5 file to pick subjects from (default: the run's own data file).")
    parser.add_argument("--emb", help="emb.h5 for the latent map and directions (default: the run's Output*/emb.h5).")
    parser.add_argument(
        "--ddim_steps",
        type=int,
        default=None,
        help="DDIM steps for the inversion and each decode (default: 10, or the run's own if fewer).",
    )
    parser.add_argument(
        "--direction",
        nargs="+",
        action="append",
        metavar="ARG",
        help=f"A slider direction, repeatable; {DIRECTION_HELP}. Default: latent indices 0, 1, 2.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch (default: torch's own choice, every core); 1 is faster on a busy machine.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (default 127.0.0.1: this machine).")
    parser.add_argument("--port", type=int, default=7860, help="Port to serve on (default 7860).")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    args = parser.parse_args(list(argv))
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}; expected 1..65535")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}; expected 1 or more")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("gradio") is None:
        raise ConfigError('explore.py needs gradio: pip install -e ".[explore]"')
    from Engineering.apps.explorer_session import open_explorer
    from Engineering.apps.explorer_ui import launch
    from Engineering.engines.directions import parse_direction

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    directions = [parse_direction(d) for d in args.direction or []]
    explorer = open_explorer(
        args.run_dir,
        args.load_hf,
        data=args.data,
        emb=args.emb,
        ddim_steps=args.ddim_steps,
        directions=directions,
        load_best=args.load_best,
    )
    try:
        launch(explorer, args.host, args.port)
    finally:
        explorer.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
