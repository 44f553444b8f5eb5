"""HDF5 dataset throughput on demo data: items/s with num_workers 0 and 2, and how often the file is opened.

The dataset is built the way a run builds it (``resolve`` of the demo data JSON → ``H5DataModule.from_config`` →
the training split with its transforms). ``open_h5`` is wrapped by a counter shared with forked workers, so the
record shows the number of opens per worker and epoch: 1 means the handle is kept, not reopened per item.

Example (from the repository root)::

    python benchmarks/bench_data.py --n_patients 32 --frames 16 --size 64 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import Engineering.data.h5dataset as h5dataset  # noqa: E402
from Engineering.configuration import resolve  # noqa: E402
from Engineering.data import H5DataModule  # noqa: E402
from Engineering.data.demo import write_demo_dataset  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n_patients", type=int, default=32)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--threads", type=int, default=0, help="torch threads of the main process (0: CPUs // 2, as a run)")
    return p.parse_args(argv)


def train_dataset(root: Path, args: argparse.Namespace) -> Any:
    """The training split of the demo data with the shipped transforms (input_shape = frames, size, size)."""
    argv = [
        "--datajson_path",
        str(REPO / "Configs" / "demo" / "dataNpath_demo.json"),
        "--configyml_path",
        str(REPO / "Configs" / "config_v1.yaml"),
        f"--json§datadir={root}",
        f"--json§DS_sanity_filters§dim1={args.frames}",
        "--input_shape",
        f"{args.frames},{args.size},{args.size}",
        "--batch_size",
        str(args.batch_size),
    ]
    rc = resolve("diffae", argv)
    assert rc.cfg is not None
    dm = H5DataModule.from_config(rc.cfg, merge_train_val=True)
    dm.setup("fit")
    return dm.train_ds


def count_opens() -> Any:
    """Wrap ``h5dataset.open_h5`` with a counter that forked DataLoader workers share."""
    counter = mp.get_context("fork").Value("i", 0)
    original = h5dataset.open_h5

    def counted(path: Path) -> Any:
        with counter.get_lock():
            counter.value += 1
        return original(path)

    h5dataset.open_h5 = counted
    return counter


def measure(dataset: Any, workers: int, args: argparse.Namespace, counter: Any) -> dict[str, Any]:
    dataset.close()
    counter.value = 0
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        multiprocessing_context="fork" if workers else None,
        persistent_workers=False,
    )
    items = 0
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for batch in loader:
            items += len(batch["key"])
    elapsed = time.perf_counter() - t0
    opens = counter.value
    return {
        "bench": "h5dataset",
        "num_workers": workers,
        "items": items,
        "epochs": args.epochs,
        "items_per_s": round(items / elapsed, 1),
        "file_opens": opens,
        "opens_per_worker_epoch": round(opens / (args.epochs * max(1, workers)), 2) if workers else opens,
        "item_shape": list(dataset[0]["inp"]["data"].shape),
        "main_threads": torch.get_num_threads(),
    }


def bare_h5py_loop(dataset: Any, args: argparse.Namespace) -> float:
    """Items/s of a straightforward loop over the same series: h5py read, squeeze, centre crop/pad, min-max,
    (x - 0.5) / 0.5, batch with torch.stack. No Dataset, no DataLoader, one open file."""
    import h5py
    import numpy as np

    target = (args.frames, args.size, args.size)
    paths = [path for path, _ in dataset.entries]
    items = 0
    t0 = time.perf_counter()
    with h5py.File(dataset.h5_path, "r") as f:
        for _ in range(args.epochs):
            batch = []
            for path in paths:
                x = np.squeeze(f[path][()]).astype(np.float32)
                pads = [
                    (max(0, t - n) // 2, max(0, t - n) - max(0, t - n) // 2)
                    for n, t in zip(x.shape, target, strict=True)
                ]
                x = np.pad(x, pads)
                starts = [(n - t) // 2 for n, t in zip(x.shape, target, strict=True)]
                x = x[tuple(slice(s0, s0 + t) for s0, t in zip(starts, target, strict=True))]
                lo, hi = x.min(), x.max()
                x = ((x - lo) / (hi - lo + np.finfo(np.float32).eps) - 0.5) / 0.5
                batch.append(torch.from_numpy(x)[None])
                if len(batch) == args.batch_size:
                    torch.stack(batch)
                    items += len(batch)
                    batch = []
            items += len(batch)
    return items / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))  # the runner's choice
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo_data"
        write_demo_dataset(root, n_patients=args.n_patients, frames=args.frames, size=args.size, n_folds=2)
        dataset = train_dataset(root, args)
        dataset[0]  # warm-up (imports, first read) outside the timed loops
        counter = count_opens()
        records = [measure(dataset, workers, args, counter) for workers in args.workers]
        for record in records:
            print(json.dumps(record), flush=True)
        bare = bare_h5py_loop(dataset, args)
        ours = next((r["items_per_s"] for r in records if r["num_workers"] == 0), None)
        ratio = round(ours / bare, 3) if ours else None
        print(json.dumps({"bench": "bare_h5py_loop", "items_per_s": round(bare, 1), "pipeline_over_bare": ratio}))
        dataset.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
