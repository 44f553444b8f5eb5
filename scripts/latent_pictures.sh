#!/usr/bin/env bash
# The README pictures of "Look at your latents": a tiny 3D DiffAE on synthetic cine MRI (CPU, ~30 minutes on 2
# busy cores), its latents over the whole file, a "blob area" phenotype measured on the data, then
# manipulate.py (along the phenotype's ridge direction), an interpolation, and report.py rendered by headless
# chromium. Writes docs/img/latents_{manipulation,interpolation,report}.png.
# Usage: bash scripts/latent_pictures.sh [PYTHON] [WORK_DIR]
set -euo pipefail
PY=${1:-python}
WORK=${2:-latent_pictures}
cd "$(dirname "$0")/.."

[ -f "$WORK/demo_data/data.h5" ] || "$PY" Executors/make_demo_data.py --out "$WORK/demo_data" --patients 12 \
    --frames 16 --size 32 --seed 1701
COMMON=(--datajson_path Configs/demo/dataNpath_demo.json "--json§datadir=$WORK/demo_data"
    "--json§save_path=$WORK/Results" "--json§tblog_path=$WORK/TBLogs" "--json§DS_sanity_filters§dim1=16"
    --accelerator cpu --ampmode 32 --num_workers 0 --input_shape 16,32,32 --batch_size 2 --effective_batch_size 2
    --n_train_batches 1.0 --n_val_batches 1.0 "--model§latent_dim" 16 "--model§DiffAE§net_ch" 8
    "--model§DiffAE§T_eval" 10 "--model§DiffAE§sample_every_batches" 0 "--model§DiffAE§ema_decay" 0.9
    --trainID pics "--training§log_freq" 2 --lr 0.001)
RUN="$WORK/Results/demo_picsfold0_prec32_DiffAE"
[ -f "$RUN/Checkpoints/last.ckpt" ] || "$PY" Executors/main_diffAE.py "${COMMON[@]}" --num_epochs 10 --run_mode 3 \
    --n_save_recon_subs 2
[ -f "$RUN/Output_fullDS/emb.h5" ] || "$PY" Executors/main_diffAE.py "${COMMON[@]}" --resume --load_best --run_mode 2 \
    --output_suffix fullDS "--json§foldCSV" 0 --test_emb_only

# a phenotype measured on the images: the bright blob's share of the image, averaged over the cycle
"$PY" - "$WORK" <<'PY'
import sys
from pathlib import Path

import h5py
import numpy as np

work = Path(sys.argv[1])
rows = ["FID\tblob_area"]
with h5py.File(work / "demo_data" / "data.h5", "r") as f:
    for pid in sorted(f):
        series = f[pid]["20208"].get("2_0/primary_LAX_4Ch_transverse_0")
        if series is not None:
            rows.append(f"{pid}\t{float((series[()] > 2200).mean()):.5f}")
(work / "pheno.tsv").write_text("\n".join(rows) + "\n")
PY

SUBJECTS=$("$PY" -c "import h5py,sys; print(' '.join(sorted(h5py.File(sys.argv[1], 'r'))[:2]))" "$RUN/Output/recon.h5")
read -r A B <<<"$SUBJECTS"
"$PY" Executors/manipulate.py --run_dir "$RUN" --subjects "$A" --direction phenotype "$WORK/pheno.tsv" blob_area \
    --alphas -3 -1.5 0 1.5 3 --frames 0 5 10 --out "$WORK/manip" --no_progress
"$PY" Executors/manipulate.py --run_dir "$RUN" --between "$A" "$B" --steps 4 --frames 0 5 10 --out "$WORK/manip" \
    --no_progress
"$PY" Executors/report.py --run_dir "$RUN" --phenotype "$WORK/pheno.tsv" blob_area \
    --direction phenotype "$WORK/pheno.tsv" blob_area --alphas -3 0 3 --out "$WORK/report" --no_progress
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,3000 \
    --screenshot="$WORK/report_screenshot.png" "file://$(realpath "$WORK/report/report.html")"

mkdir -p docs/img
"$PY" - "$WORK" "$A" "$B" <<'PY'
import sys
from pathlib import Path

from PIL import Image

work, a, b = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
shots = {
    "latents_manipulation.png": (work / "manip" / f"manip_{a}_blob_area_ridge.png", 700),
    "latents_interpolation.png": (work / "manip" / f"interp_{a}_{b}.png", 600),
    "latents_report.png": (work / "report_screenshot.png", 700),
}
for name, (source, width) in shots.items():
    image = Image.open(source).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=128).save(Path("docs/img") / name, optimize=True)
    print(name, image.size, (Path("docs/img") / name).stat().st_size, "bytes")
PY
