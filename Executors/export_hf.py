"""Export a finished ImLatent run as a Hugging Face folder (model.safetensors, config.json, README.md).

Run from the repository root:
    python Executors/export_hf.py --run_dir <save_path>/<run_name> [--load_best] --out DIR [--push ORG/NAME] [--private]
The checkpoint is read weights-only; one holding other pickled objects is refused unless --trust_checkpoint names it.
"""

import argparse
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.errors import run_guarded  # noqa: E402


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="export_hf.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--run_dir", required=True, help="Run folder <save_path>/<run_name> (holds Checkpoints/).")
    parser.add_argument("--load_best", action="store_true", help="Export the best (epoch=*) checkpoint, else last.")
    parser.add_argument("--out", required=True, help="Folder to write (new, empty, or a previous export).")
    parser.add_argument("--push", default="", metavar="REPO_ID", help="Also upload to this Hub repo (needs HF_TOKEN).")
    parser.add_argument("--private", action="store_true", help="Create the Hub repo as private.")
    parser.add_argument(
        "--trust_checkpoint",
        default="",
        metavar="PATH",
        help="A checkpoint file or folder you made or vouch for: pickled objects beyond tensors in it are fully "
        "unpickled (this can run code). Without it such checkpoints are refused.",
    )
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    from Engineering.hub.export import export_run
    from Engineering.pickle_policy import TrustedFiles

    args = parse_args(argv)
    trust = TrustedFiles.of(args.trust_checkpoint)
    folder = export_run(args.run_dir, args.out, args.load_best, args.push or None, args.private, trust)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
