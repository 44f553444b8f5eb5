"""ImLatent executor: pythae autoencoders and VAEs (taskID 0).

Run from the repository root, e.g. `python Executors/main_recon.py --help`. Relative paths in the
configuration resolve against the current working directory, as in the original pipeline.
"""

import os
import sys

sys.path.insert(0, os.getcwd())  # run from the repository root, as documented
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Engineering.engines.runner import main  # noqa: E402
from Engineering.errors import run_guarded  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_guarded(lambda argv: main("recon", argv)))
