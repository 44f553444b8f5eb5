#!/usr/bin/env bash
# End-to-end demo on synthetic cine MRI: write the demo HDF5, train a tiny 3D DiffAE on CPU
# (train + validate, then test), and show the latents written to emb.h5. The EMA decay is 0.9 instead of the
# paper's 0.9999: over the demo's few steps a 0.9999 average would still be the untrained network, and the test
# stage (which uses the EMA weights) would reconstruct flat grey.
# Usage: bash scripts/demo.sh [PYTHON] [RUN_DIR]
# DEMO_FRAMES and DEMO_SIZE (default 50 and 32) shrink the volumes; the README test runs the demo with them.
set -euo pipefail
PY=${1:-python}
RUN=${2:-demo_run}
FRAMES=${DEMO_FRAMES:-50}
SIZE=${DEMO_SIZE:-32}
cd "$(dirname "$0")/.."

"$PY" Executors/make_demo_data.py --out demo_data --patients 12 --frames "$FRAMES" --size "$SIZE" --seed 1701

"$PY" Executors/main_diffAE.py \
    --datajson_path Configs/demo/dataNpath_demo.json \
    --json§save_path "$RUN/Results" --json§tblog_path "$RUN/TBLogs" \
    --accelerator cpu --ampmode 32 --num_workers 0 \
    --json§DS_sanity_filters§dim1 "$FRAMES" --input_shape "$FRAMES,$SIZE,$SIZE" --batch_size 2 --effective_batch_size 2 \
    --num_epochs 2 --n_train_batches 1.0 --n_val_batches 1.0 \
    --model§latent_dim 16 --model§DiffAE§net_ch 8 --model§DiffAE§T_eval 5 \
    --model§DiffAE§sample_every_batches 0 --model§DiffAE§ema_decay 0.9 --n_save_recon_subs 2 --trainID demo

"$PY" - "$RUN" <<'PY'
import sys
from pathlib import Path

import h5py

run = Path(sys.argv[1]) / "Results"
emb = next(run.glob("*/Output/emb.h5"))
with h5py.File(emb, "r") as f:
    keys = []
    f.visititems(lambda name, obj: keys.append((name, obj.shape, obj.dtype)) if isinstance(obj, h5py.Dataset) else None)
print(f"\nDemo finished. {len(keys)} latent vectors in {emb}:")
for name, shape, dtype in keys[:5]:
    print(f"  {name}  {shape}  {dtype}")
print("  ...")
print(f"Reconstructions: {emb.parent / 'recon.h5'}; metrics: {emb.parent / 'metrics.csv'}")
print(f"PNG panels (input / reconstruction / difference): {emb.parent / 'panels'}/")
PY
