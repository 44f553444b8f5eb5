"""Write the demo data set: ``python Executors/make_demo_data.py --out demo_data [--patients 12 --frames 50 ...]``.

Produces ``<out>/data.h5`` (UK Biobank field-20208 layout, beating-heart phantom) and ``<out>/folds.csv``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())

from Engineering.data.demo import write_demo_dataset  # noqa: E402
from Engineering.errors import run_guarded  # noqa: E402


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_data", help="output folder (created if needed)")
    parser.add_argument("--patients", type=int, default=12, help="number of patients")
    parser.add_argument("--frames", type=int, default=50, help="cine frames per series")
    parser.add_argument("--size", type=int, default=64, help="in-plane size (square)")
    parser.add_argument("--folds", type=int, default=5, help="rows of folds.csv")
    parser.add_argument("--seed", type=int, default=1701, help="random seed")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    paths = write_demo_dataset(args.out, args.patients, args.frames, args.size, args.folds, args.seed)
    print(
        f"wrote {paths.data_h5} ({len(paths.patient_ids)} patients, {len(paths.expected_keys)} selected series)"
        f", {paths.folds_csv} and {paths.phenotypes_tsv}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
