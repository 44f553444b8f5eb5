"""Side-by-side DiffAE benchmark (``bench_diffae.py --compare``): old against new settings, alternating, medians.

A *variant* fixes four settings of a run:

* ``attention``: ``math`` (the original's einsum formula) or ``sdpa`` (``scaled_dot_product_attention``);
* ``threads``: ``old`` (the original's ``floor(0.9 * cpus) // 2``) or ``new`` (the cores available minus the
  DataLoader workers, :func:`Engineering.configuration.cpus.thread_policy`), or a number;
* ``fill``: ``True`` fills uninitialised memory under deterministic mode (torch's default, the old setting);
* ``test_batch``: the test-loader batch of ``latents`` (old: ``--batch_size``; new: 8, the --test_emb_only default).

Every (round, variant) runs in a fresh child process, so its peak RSS is its own, and the variants take turns
(A B A B ...), so a machine whose speed drifts (other jobs) slows both alike. Each child prints one JSON record;
the parent prints them as they come, then one ``summary`` record per variant with medians and the ratio
``old / variant`` (> 1: the variant is faster).

Measurements:

* ``train``: s/step of ``Trainer.fit`` of the real engine (deterministic, fp32, gradient clipping as the CLI) over an
  in-memory dataset through a DataLoader with ``--num_workers`` workers, after ``--warmup`` steps.
* ``latents``: s/subject of the ``--test_emb_only`` test stage (``Trainer.test``, the real collector, emb.h5 written)
  and of the bare EMA encoder on the same subjects and batches; ``overhead`` = stage / encoder - 1, and the
  projection for ``--project`` subjects (71,021: the paper's cohort) at this s/subject.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict[str, Any]] = {
    "old": {"attention": "math", "threads": "old", "fill": True, "test_batch": 0},
    "new": {"attention": "sdpa", "threads": "new", "fill": False, "test_batch": 8},
    "attn": {"attention": "sdpa", "threads": "old", "fill": True, "test_batch": 0},
    "threads": {"attention": "math", "threads": "new", "fill": True, "test_batch": 0},
    "fill": {"attention": "math", "threads": "old", "fill": False, "test_batch": 0},
    "batch": {"attention": "math", "threads": "old", "fill": True, "test_batch": 8},
    # the new attention and determinism at the old thread count ("at an equal thread count")
    "new_same_threads": {"attention": "sdpa", "threads": "old", "fill": False, "test_batch": 8},
    "compiled": {"attention": "sdpa", "threads": "old", "fill": False, "test_batch": 8, "compile": True},
    # as new, with the EMA network's weights in channels-last-3d memory format (latents)
    "channels_last": {"attention": "sdpa", "threads": "new", "fill": False, "test_batch": 8, "channels_last": True},
    "ckpt": {"attention": "sdpa", "threads": "new", "fill": False, "test_batch": 8, "grad_checkpoint": True},
    "ckpt_same_threads": {
        "attention": "sdpa",
        "threads": "old",
        "fill": False,
        "test_batch": 8,
        "grad_checkpoint": True,
    },
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the compare mode (the shape/size options are bench_diffae's own)."""
    p.add_argument("--compare", choices=("train", "latents"), help="side-by-side mode: old vs new settings")
    p.add_argument("--variants", default="old,new", help=f"comma list from {', '.join(VARIANTS)}; first = baseline")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader workers of the compared runs")
    p.add_argument("--subjects", type=int, default=8, help="latents: subjects per child")
    p.add_argument("--project", type=int, default=71021, help="latents: subjects to project the time for")
    p.add_argument("--child", help=argparse.SUPPRESS)


def threads_of(setting: Any, num_workers: int) -> int:
    """The torch thread count a variant's ``threads`` setting gives on this machine."""
    from Engineering.configuration import system_resources
    from Engineering.configuration.cpus import cpu_budget, thread_policy

    if setting == "old":
        return max(1, system_resources().cpus_avail // 2)
    if setting == "new":
        return thread_policy(cpu_budget(), num_workers).threads
    return int(setting)


# ---------------------------------------------------------------------------------------------- parent
def run_compare(args: argparse.Namespace, emit: Any) -> int:
    """Alternate the variants' children for ``--rounds`` rounds; print every record, then the medians and ratios."""
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or len(names) < 2:
        raise SystemExit(f"--variants needs at least two of {', '.join(VARIANTS)}; got {args.variants!r}")
    records: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    shared = {k: v for k, v in vars(args).items() if k not in ("child", "variants")}
    for round_no in range(args.rounds):
        for name in names:
            spec = {**shared, "variant": name, **VARIANTS[name], "round": round_no}
            cmd = [
                sys.executable,
                str(Path(__file__).resolve().parent / "bench_diffae.py"),
                "--child",
                json.dumps(spec),
            ]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                emit({"bench": "child_failed", "variant": name, "round": round_no, "stderr": proc.stderr[-1500:]})
                continue
            record = json.loads(lines[-1])
            records[name].append(record)
            emit(record)
    _summarise(args, names, records, emit)
    return 0


def _summarise(args: argparse.Namespace, names: list[str], records: dict[str, list[dict]], emit: Any) -> None:
    key = "s_per_step" if args.compare == "train" else "s_per_subject"
    base = [r[key] for r in records[names[0]]]
    for name in names:
        values = [r[key] for r in records[name]]
        if not values:
            continue
        summary: dict[str, Any] = {
            "bench": f"{args.compare}_summary", "variant": name, **VARIANTS[name],
            "threads_used": records[name][0]["threads_used"], key: round(statistics.median(values), 3),
            "rounds": [round(v, 3) for v in values],
            "peak_rss_GiB": round(statistics.median(r["peak_rss_GiB"] for r in records[name]), 2),
        }  # fmt: skip
        if base:
            summary[f"ratio_{names[0]}_over_this"] = round(statistics.median(base) / statistics.median(values), 3)
            # pairwise: each round's baseline against the same round's variant (drift cancels within a round)
            pairs = [b / v for b, v in zip(base, values, strict=False)]
            summary["pairwise_ratio_median"] = round(statistics.median(pairs), 3)
        if args.compare == "latents":
            summary["overhead"] = round(statistics.median(r["overhead"] for r in records[name]), 3)
            hours = statistics.median(values) * args.project / 3600
            summary[f"projected_hours_{args.project}_subjects"] = round(hours, 1)
        emit(summary)


# ---------------------------------------------------------------------------------------------- child
def run_child(spec: dict[str, Any], make_engine: Any, emit: Any) -> int:
    """One measurement with one variant's settings, in this (fresh) process."""
    import lightning.pytorch as pl
    import torch

    threads = threads_of(spec["threads"], spec["num_workers"])
    torch.set_num_threads(threads)
    pl.seed_everything(1701, verbose=False)
    args = argparse.Namespace(**spec)
    engine = make_engine(args, {"attention": spec["attention"], "grad_checkpoint": spec.get("grad_checkpoint", False)})
    if spec.get("compile"):  # as --compile_model; the first call of each network compiles it (in the warm-up)
        from Engineering.engines.strategies import compile_network

        compile_network(engine)
    record: dict[str, Any] = {
        "bench": spec["compare"], "variant": spec["variant"], "round": spec["round"], "threads_used": threads,
        "input_shape": spec["input_shape"], "net_ch": spec["net_ch"], "latent_dim": spec["latent_dim"],
    }  # fmt: skip
    if spec["compare"] == "train":
        record.update(_train(args, engine, spec))
    else:
        record.update(_latents(args, engine, spec))
    record["peak_rss_GiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    emit(record)
    return 0


def _determinism(fill: bool) -> None:
    import torch
    import torch.utils.deterministic

    from Engineering.engines.trainer_setup import deterministic_algorithms

    if fill:  # the old setting: torch's default, every new tensor filled
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]
    else:
        deterministic_algorithms()


def _samples(args: argparse.Namespace, engine: Any, n: int) -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    shape = (engine.cfg.model.in_channels, *engine.input_shape)
    return [torch.rand(shape, generator=gen) * 2 - 1 for _ in range(n)]


class _StepTimes:
    """Wall time of every training batch (Lightning callback)."""

    def __init__(self) -> None:
        import lightning.pytorch as pl

        outer = self

        class Callback(pl.Callback):
            def on_train_batch_start(self, *_: Any) -> None:
                outer.t0 = time.perf_counter()

            def on_train_batch_end(self, *_: Any) -> None:
                outer.times.append(time.perf_counter() - outer.t0)

        self.times: list[float] = []
        self.t0 = 0.0
        self.callback = Callback()


def _train(args: argparse.Namespace, engine: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    timer = _StepTimes()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=32, max_steps=args.warmup + args.steps, max_epochs=1,
        limit_val_batches=0, num_sanity_val_steps=0, gradient_clip_val=1, gradient_clip_algorithm="norm",
        deterministic=True, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer.callback],
    )  # fmt: skip
    _determinism(spec["fill"])
    items = [{"inp": {"data": x}} for x in _samples(args, engine, (args.warmup + args.steps) * args.batch_size)]
    loader = DataLoader(items, batch_size=args.batch_size, num_workers=args.num_workers)
    trainer.fit(engine, train_dataloaders=loader)
    timed = timer.times[args.warmup :]
    return {"s_per_step": statistics.median(timed), "steps": [round(t, 2) for t in timed], "fill": spec["fill"]}


def _latents(args: argparse.Namespace, engine: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from Engineering.configuration.sections import EvalOptions
    from Engineering.outputs.collector import TestOutputs

    batch = int(spec["test_batch"]) or args.batch_size
    xs = _samples(args, engine, args.subjects)
    items = [
        {"inp": {"data": x}, "key": f"{1000000 + i}/20208/2_0/primary_0", "indices": (0, 0, 0)}
        for i, x in enumerate(xs)
    ]
    engine.use_config(engine.cfg.updated(test_emb_only=True))
    _determinism(spec["fill"])
    modes: list[bool] = []  # whether Lightning's test loop runs the engine under torch.inference_mode
    infer = engine.infer
    engine.infer = lambda batch: modes.append(torch.is_inference_mode_enabled()) or infer(batch)
    if spec.get("channels_last"):  # convolutions then run in NDHWC; outputs follow the weights' format
        engine.ema_net.to(memory_format=torch.channels_last_3d)
    encoder = engine.ema_net.encoder.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():  # warm-up: first use of each shape (oneDNN primitives; compilation)
        encoder(torch.stack(xs[:batch]))
    warmup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        engine.test_outputs = TestOutputs(
            output_dir=Path(tmp), save_recon=False, evaluation=EvalOptions(n_calc_processes=0)
        )
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
            precision=32, deterministic=True,
        )  # fmt: skip
        loader = DataLoader(items, batch_size=batch, num_workers=args.num_workers)
        t0 = time.perf_counter()
        trainer.test(engine, dataloaders=loader, verbose=False)
        stage = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(xs), batch):
            encoder(torch.stack(xs[start : start + batch]))
    bare = time.perf_counter() - t0
    return {
        "test_batch": batch,
        "warmup_s": round(warmup, 1),
        "s_per_subject": stage / len(xs),
        "encoder_s_per_subject": bare / len(xs),
        "overhead": stage / bare - 1,
        "subjects": len(xs),
        "inference_mode": bool(modes) and all(modes),
        "projected_hours": round(stage / len(xs) * args.project / 3600, 1),
    }


def child_main(spec_json: str, make_engine: Any, emit: Any) -> int:
    """Entry of a child process: ``--child`` carries the variant and the shared options as JSON."""
    return run_child(json.loads(spec_json), make_engine, emit)
