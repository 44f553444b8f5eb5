"""DiffAE throughput and memory: training samples/s, inference latents/s and renders/s, one JSON record per line.

Training is measured through Lightning exactly as a run trains (``Trainer.fit`` of the real :class:`DiffAEEngine`:
``training_step``, gradient clipping, Adam step, EMA update, logging) on a synthetic in-memory dataloader, after
``--warmup`` steps. The same network, loss, clipping, Adam and EMA in a plain PyTorch loop over pre-made tensors is
the "straightforward implementation" baseline; the ratio engine/baseline is printed (target ≥ ~0.9).

Inference calls :meth:`DiffAEEngine.infer`: ``test_emb_only`` (EMA encoder only) gives latents/s; the full path
(encode + T_inv DDIM inversion + T_step DDIM decoding) gives renders/s.

Peak memory: ``torch.cuda.max_memory_allocated`` per phase on CUDA; on CPU the process peak RSS so far
(``resource.getrusage``; it never decreases, so later phases report at least the earlier peaks).

Example (from the repository root)::

    python benchmarks/bench_diffae.py --device cpu --input_shape 16,32,32 --net_ch 8 --latent_dim 16 --batch_size 2

``--compare train|latents`` is the side-by-side mode: old against new attention, thread policy, determinism setting
and test batch, alternating rounds in fresh processes, medians and ratios (see ``side_by_side.py``)::

    python benchmarks/bench_diffae.py --compare train --variants old,new --input_shape 50,64,64 --net_ch 32 \
        --latent_dim 128 --batch_size 1 --warmup 1 --steps 2 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from Engineering.configuration import RunConfig, load_yaml_config  # noqa: E402
from Engineering.configuration.sections import EvalOptions  # noqa: E402
from Engineering.engines.diffae import DiffAEEngine  # noqa: E402
from Engineering.engines.runner import build_engine  # noqa: E402
from Engineering.engines.trainer_setup import precision_of  # noqa: E402
from Engineering.science.diffusion import GaussianDiffusion  # noqa: E402
from Engineering.warp_drives.diffae import build_diffae_net, ema_update  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side  # noqa: E402

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


# ---------------------------------------------------------------------------------------------- set-up
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    p.add_argument("--is3D", type=int, default=1, choices=(0, 1))
    p.add_argument("--input_shape", default="16,32,32", help="D,H,W (3D) or H,W (2D)")
    p.add_argument("--net_ch", type=int, default=8)
    p.add_argument("--latent_dim", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--precision", default="32", choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after the warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--T_eval", type=int, default=2, help="T_inv = T_step for renders (test_with_TEval)")
    p.add_argument("--infer_batches", type=int, default=3, help="timed inference batches (after one warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="alternating engine/baseline training rounds (median)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--non_deter", action="store_true", help="skip the deterministic settings of a real run")
    p.add_argument("--skip_baseline", action="store_true")
    p.add_argument("--attention", default="sdpa", choices=("sdpa", "math"), help="model§DiffAE§attention")
    side_by_side.add_arguments(p)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.steps < 1 or args.warmup < 1 or args.infer_batches < 1 or args.rounds < 1:
        p.error("--steps, --warmup, --infer_batches and --rounds must be at least 1")
    return args


def make_engine(args: argparse.Namespace, diffae: dict[str, Any] | None = None) -> DiffAEEngine:
    """The engine as the CLI would build it: option defaults + these settings, config_v1.yaml + overrides
    (``diffae``: further ``model§DiffAE`` keys, e.g. attention)."""
    hparams = dict(
        is3D=args.is3D,
        input_shape=args.input_shape,
        batch_size=args.batch_size,
        effective_batch_size=args.batch_size,
        ampmode=args.precision,
        accelerator=args.device,
    )
    config = load_yaml_config(REPO / "Configs" / "config_v1.yaml")
    config["model"]["latent_dim"] = args.latent_dim
    config["model"]["DiffAE"].update(net_ch=args.net_ch, T_eval=args.T_eval, sample_every_batches=0, **(diffae or {}))
    config["training"]["im_log_freq"] = -1
    engine = build_engine(RunConfig.build("diffae", hparams, config))
    assert isinstance(engine, DiffAEEngine)
    return engine


def synthetic_batches(args: argparse.Namespace, engine: DiffAEEngine, n: int) -> list[torch.Tensor]:
    """``n`` pre-made batches (B, C, *input_shape) in [-1, 1] on the target device."""
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch_size, engine.cfg.model.in_channels, *engine.input_shape)
    return [(torch.rand(shape, generator=gen) * 2 - 1).to(args.device) for _ in range(n)]


class InMemory(Dataset):
    """Items ``{"inp": {"data": (C, *spatial)}}`` of pre-made CPU tensors, as the HDF5 dataset yields them."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.items = [x for batch in batches for x in batch.cpu()]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"inp": {"data": self.items[i]}}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device: str) -> tuple[float, str]:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss_process"


# ---------------------------------------------------------------------------------------------- training
class StepTimer(pl.Callback):
    """Wall time from the end of the last warm-up batch to the end of the last batch."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.t0 = self.t1 = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if trainer.global_step == self.warmup:
            sync(self.device)
            self.t0 = time.perf_counter()
        sync(self.device)
        self.t1 = time.perf_counter()


def train_engine(args: argparse.Namespace, engine: DiffAEEngine, batches: list[torch.Tensor]) -> float:
    """Samples/s of ``Trainer.fit`` on the engine (steady state after ``--warmup`` steps)."""
    timer = StepTimer(args.warmup, args.device)
    trainer = pl.Trainer(
        accelerator=args.device,
        devices=1,
        precision=precision_of(args.precision),
        max_steps=args.warmup + args.steps,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1,
        gradient_clip_algorithm="norm",
        deterministic=not args.non_deter,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = DataLoader(InMemory(batches), batch_size=args.batch_size, shuffle=False, num_workers=0)
    trainer.fit(engine, train_dataloaders=loader)
    return args.steps * args.batch_size / (timer.t1 - timer.t0)


def train_baseline(args: argparse.Namespace, engine: DiffAEEngine, batches: list[torch.Tensor]) -> float:
    """Samples/s of a plain loop: same net, loss, clipping (1.0), Adam and EMA; no Lightning."""
    conf = engine.conf
    net = build_diffae_net(conf).to(args.device)
    net.load_state_dict(engine.net.state_dict())
    net.train()
    ema = copy.deepcopy(net).requires_grad_(False).eval()
    diffusion = GaussianDiffusion.from_config(conf)
    opt = torch.optim.Adam(net.parameters(), lr=float(conf.lr), weight_decay=float(conf.weight_decay))
    half = args.precision != "32" and args.device == "cuda"
    dtype = torch.bfloat16 if args.precision.startswith("bf16") else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=half and dtype == torch.float16)
    gen = torch.Generator(device=args.device).manual_seed(0)

    def model(x: torch.Tensor, t: torch.Tensor, **kw: Any) -> torch.Tensor:
        with torch.autocast("cuda", dtype=dtype) if half else nullcontext():
            return net(x, t, **kw).float()

    def step(x0: torch.Tensor) -> None:
        t = torch.randint(0, int(conf.T), (x0.shape[0],), device=x0.device, generator=gen)
        noise = torch.randn(x0.shape, device=x0.device, generator=gen)
        loss = diffusion.training_losses(model, x0, t, noise=noise)["loss"].mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        ema_update(ema, net, float(conf.ema_decay))

    for x0 in batches[: args.warmup]:
        step(x0)
    sync(args.device)
    t0 = time.perf_counter()
    for x0 in batches[args.warmup : args.warmup + args.steps]:
        step(x0)
    sync(args.device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- inference
def time_infer(args: argparse.Namespace, engine: DiffAEEngine, batches: list[torch.Tensor], emb_only: bool) -> float:
    """Samples/s of ``engine.infer`` (one warm-up batch, then ``--infer_batches`` timed)."""
    engine.use_config(engine.cfg.updated(test_emb_only=emb_only))
    run: Callable[[torch.Tensor], Any] = lambda x: engine.infer({"inp": {"data": x}})  # noqa: E731
    with torch.inference_mode():
        run(batches[0])
        sync(args.device)
        t0 = time.perf_counter()
        for x in batches[1 : 1 + args.infer_batches]:
            run(x)
        sync(args.device)
    return args.infer_batches * args.batch_size / (time.perf_counter() - t0)


def time_test_stage(args: argparse.Namespace, engine: DiffAEEngine, batches: list[torch.Tensor]) -> float:
    """Samples/s of the whole --test_emb_only test stage: Lightning Trainer.test over an in-memory loader, result
    accumulation and the atomic emb.h5 write (what a run does), for comparison with the encoder alone."""
    import tempfile

    from torch.utils.data import DataLoader

    from Engineering.outputs.collector import TestOutputs

    items = [
        {"inp": {"data": x[b]}, "key": f"{1000000 + i * len(x) + b}/20208/2_0/primary_0", "indices": (0, 0, 0)}
        for i, x in enumerate(batches[1 : 1 + args.infer_batches])
        for b in range(len(x))
    ]
    engine.use_config(engine.cfg.updated(test_emb_only=True))
    with tempfile.TemporaryDirectory() as tmp:
        engine.test_outputs = TestOutputs(
            output_dir=Path(tmp), save_recon=False, evaluation=EvalOptions(n_calc_processes=0)
        )
        trainer = pl.Trainer(
            accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, logger=False, enable_progress_bar=False,
            enable_model_summary=False, precision=args.precision,
        )  # fmt: skip
        loader = DataLoader(items, batch_size=args.batch_size)
        trainer.test(engine, dataloaders=loader, verbose=False)  # warm-up (first batch compiles kernels)
        t0 = time.perf_counter()
        trainer.test(engine, dataloaders=loader, verbose=False)
        sync(args.device)
        return len(items) / (time.perf_counter() - t0)


def time_encoder_only(args: argparse.Namespace, engine: DiffAEEngine, batches: list[torch.Tensor]) -> float:
    """Samples/s of the EMA semantic encoder's forward pass alone on pre-made device tensors."""
    encoder = engine.ema_net.encoder
    with torch.inference_mode():
        encoder(batches[0].to(args.device))
        sync(args.device)
        t0 = time.perf_counter()
        for x in batches[1 : 1 + args.infer_batches]:
            encoder(x.to(args.device))
        sync(args.device)
    return args.infer_batches * args.batch_size / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- main
def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.child:
        return side_by_side.child_main(args.child, make_engine, emit)
    if args.compare:
        return side_by_side.run_compare(args, emit)
    if args.threads:
        torch.set_num_threads(args.threads)
    pl.seed_everything(1701, verbose=False)
    if not args.non_deter:
        torch.use_deterministic_algorithms(True, warn_only=True)  # as the runner does; shared by both loops
    engine = make_engine(args, {"attention": args.attention})
    setting = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        "is3D": args.is3D,
        "input_shape": args.input_shape,
        "net_ch": args.net_ch,
        "latent_dim": args.latent_dim,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "params_M": round(sum(p.numel() for p in engine.net.parameters()) / 1e6, 3),
    }
    batches = synthetic_batches(args, engine, max(args.warmup + args.steps, 1 + args.infer_batches))
    rates: dict[str, list[float]] = {"engine": [], "baseline": []}
    mem: dict[str, tuple[float, str]] = {}
    for _ in range(args.rounds):
        for impl in ("baseline", "engine") if not args.skip_baseline else ("engine",):
            reset_peak(args.device)
            fn = train_engine if impl == "engine" else train_baseline
            rates[impl].append(fn(args, engine, batches))
            mem[impl] = peak_mb(args.device)
    for impl, values in rates.items():
        if values:
            what = "Lightning Trainer.fit(DiffAEEngine), in-memory loader" if impl == "engine" else "plain loop"
            emit({
                "bench": "train", "impl": impl, "what": what, **setting, "steps": args.steps,
                "samples_per_s": round(statistics.median(values), 3), "rounds": [round(v, 3) for v in values],
                "peak_mem_MB": round(mem[impl][0], 1), "mem_kind": mem[impl][1],
            })  # fmt: skip
    if rates["baseline"]:
        ratio = statistics.median(rates["engine"]) / statistics.median(rates["baseline"])
        emit({"bench": "train_ratio", **setting, "engine_over_baseline": round(ratio, 3), "target": 0.9})
    engine = engine.to(args.device).eval()
    infer_batches = batches[: 1 + args.infer_batches]
    for name, emb_only in (("latents", True), ("renders", False)):
        reset_peak(args.device)
        rate = time_infer(args, engine, infer_batches, emb_only)
        peak, kind = peak_mb(args.device)
        extra = {} if emb_only else {"T_inv": engine.T_inv, "T_step": engine.T_step}
        emit({
            "bench": "infer", "what": name, **setting, **extra, f"{name}_per_s": round(rate, 3),
            "peak_mem_MB": round(peak, 1), "mem_kind": kind,
        })  # fmt: skip
    pipeline = time_test_stage(args, engine, infer_batches)
    encoder_only = time_encoder_only(args, engine.to(args.device).eval(), infer_batches)
    emit({
        "bench": "latent_extraction", **setting, "test_stage_latents_per_s": round(pipeline, 3),
        "encoder_only_latents_per_s": round(encoder_only, 3), "overhead": round(encoder_only / pipeline - 1, 3),
        "target_overhead": 0.15,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
