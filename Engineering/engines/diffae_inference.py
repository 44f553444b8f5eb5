"""A finished DiffAE run for inference: encode a subject, DDIM-invert once, decode moved or interpolated latents.

The run is rebuilt from what it stored (``resolved_config.yaml`` and a checkpoint chosen as ``--resume
[--load_best]`` chooses it), so the network, the data normalisation and the DDIM step counts are the run's own.
With the run's step counts, decoding the subject's own latent with its own inverted x_T is exactly what the test
stage computed for ``recon.h5`` (``render``: DDIM inversion then decoding with the same network).

The DDIM loops are the engine's (:class:`GaussianDiffusion` of the run); this module only chooses their inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from Engineering.configuration.resolve import ResolvedConfig
from Engineering.configuration.run_config import RunConfig
from Engineering.configuration.stored import STORED_CONFIG_NAME as RESOLVED_CONFIG
from Engineering.configuration.stored import stored_config
from Engineering.data.datamodule import H5DataModule
from Engineering.data.h5dataset import H5SeriesDataset, list_patients
from Engineering.engines.diffae import DiffAEEngine
from Engineering.engines.stored_config import check_checkpoint_fits
from Engineering.engines.tasks import build_engine
from Engineering.errors import ConfigError, DataError
from Engineering.hub import load_weights_into
from Engineering.hub.checkpoints import select_checkpoint
from Engineering.science.manipulation import lerp, slerp

log = logging.getLogger("imlatent")


@dataclass
class DiffAERun:
    """A trained DiffAE rebuilt from its run folder, in eval mode on ``device``.

    cfg: the run's configuration; checkpoint: the weights loaded; use_ema: the network the test stage used
    (``--test_ema``).
    """

    run_dir: Path
    engine: DiffAEEngine
    cfg: RunConfig
    checkpoint: Path
    use_ema: bool

    @property
    def is3d(self) -> bool:
        return self.cfg.model.is_3d

    @property
    def latent_dim(self) -> int:
        return int(self.engine.conf.latent_dim)

    @property
    def inversion_steps(self) -> int:
        """DDIM steps of the test stage's inversion (T_inv; T_eval under --test_with_TEval)."""
        return int(self.engine.T_inv)

    @property
    def decoding_steps(self) -> int:
        """DDIM steps of the test stage's decoding (T_step; T_eval under --test_with_TEval)."""
        return int(self.engine.T_step)

    @property
    def device(self) -> torch.device:
        return self.engine.x_T.device


def stored_run_config(run_dir: Path) -> ResolvedConfig:
    """The configuration a run stored (its resolved_config.yaml, else the copy inside its checkpoints).

    The one place that decides where a run's settings are read, shared with the training executors (``--resume``).
    """
    found = stored_config(run_dir)
    if found is None:
        raise ConfigError(
            f"--run_dir {run_dir} stores no readable configuration (no {RESOLVED_CONFIG} and none inside its "
            "checkpoints); expected the folder of a finished run"
        )
    return found[0]


def load_diffae_run(
    run_dir: str | Path, load_best: bool = False, device: str | torch.device = "cpu", *, weights: bool = True
) -> DiffAERun:
    """Rebuild the DiffAE of ``run_dir`` (``<save_path>/<run_name>``) with its stored settings and checkpoint.

    ``weights=False`` chooses and checks the checkpoint but leaves its weights for :func:`load_run_weights`, so that
    a tool can refuse bad input (subjects, directions, frames) before it loads them.

    Raises:
        ConfigError: not a run folder, or not a DiffAE run.
        CheckpointError: no usable checkpoint, or one that does not fit the stored network.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--run_dir {run_dir} is not a folder (expected <save_path>/<run_name>)")
    resolved = stored_run_config(run_dir)
    if resolved.script != "diffae":
        raise ConfigError(f"--run_dir {run_dir} is a {resolved.script} run; this needs a DiffAE run (main_diffAE.py)")
    cfg = resolved.typed()
    engine = build_engine(cfg)
    if not isinstance(engine, DiffAEEngine):  # the task table maps taskID 1 to the DiffAE engine
        raise ConfigError(f"--run_dir {run_dir}: taskID 1 did not build a DiffAE engine")
    checkpoint = select_checkpoint(run_dir, load_best)
    check_checkpoint_fits(engine, checkpoint)  # a changed network is named in one line
    run = DiffAERun(run_dir, engine, cfg, checkpoint, cfg.diffae.test_ema)
    if weights:
        load_run_weights(run, device)
    return run


def load_run_weights(run: DiffAERun, device: str | torch.device = "cpu") -> None:
    """Load the run's checkpoint into its engine, in eval mode on ``device``."""
    load_weights_into(run.engine, run.checkpoint)
    run.engine.eval().to(device)


# ------------------------------------------------------------------------------------------------ subjects


@dataclass
class SubjectSeries:
    """One series of a subject as the network sees it.

    key: ``<pid>/<field>/<instance>/<series>``; indices: (i, j, k) of each sample; x: (N, C, *spatial) in [-1, 1],
    N = 1 for a 3D series, the number of stored samples (e.g. time frames) for a 2D series.
    """

    subject: str
    key: str
    indices: list[tuple[int, int, int]]
    x: torch.Tensor

    def frames(self, images: torch.Tensor) -> np.ndarray:
        """Channel 0 of ``images`` (N, C, *spatial), e.g. decodes of this series, as display frames (F, H, W)."""
        images = images.detach().float().cpu()[:, 0]
        return (images[0] if images.ndim == 4 else images).numpy()  # 3D: (D, H, W); 2D: (N, H, W)


def _dataset(cfg: RunConfig, subject: str) -> H5SeriesDataset:
    dm = H5DataModule.from_config(cfg, merge_train_val=False)
    if subject not in set(list_patients(dm.h5_path)):
        raise DataError(f"subject {subject} is not in {dm.h5_path}; expected a patient ID of the run's data file")
    options = replace(dm.dataset_options, fetch_phenotypes=False, fetch_confounders=False)
    return H5SeriesDataset(dm.h5_path, [subject], options, dm.eval_transform, f"subject {subject}")


def read_series(cfg: RunConfig, subject: str, series: str | None = None) -> SubjectSeries:
    """The samples of one series of ``subject`` from a run's data file, transformed as in its test stage (CPU).

    ``series``: a full key or a dataset name (last key component); default the subject's first key in sorted order.
    """
    ds = _dataset(cfg, str(subject))
    keys = sorted({path for path, _ in ds.entries})
    wanted = [k for k in keys if series in (None, k, k.rsplit("/", 1)[-1])]
    if not wanted:
        raise DataError(f"subject {subject} has no series {series!r}; its series: {', '.join(keys)}")
    key = wanted[0]
    samples = [ds[n] for n, (path, _) in enumerate(ds.entries) if path == key]
    ds.close()
    x = torch.stack([torch.as_tensor(s["inp"]["data"]) for s in samples]).float()
    indices = [(int(s["indices"][0]), int(s["indices"][1]), int(s["indices"][2])) for s in samples]
    return SubjectSeries(str(subject), key, indices, x)


def load_subject(run: DiffAERun, subject: str, series: str | None = None) -> SubjectSeries:
    """:func:`read_series` of the run's data, on the run's device."""
    found = read_series(run.cfg, subject, series)
    return replace(found, x=found.x.to(run.device))


# ------------------------------------------------------------------------------------------------ DDIM


@contextmanager
def _progress(total: int, label: str, enabled: bool) -> Iterator[Callable[..., Callable[..., torch.Tensor]]]:
    """A tqdm bar over network evaluations; yields a wrapper that counts each call of a denoiser."""
    bar = tqdm(total=total, desc=label, unit="step", disable=not enabled, leave=False)

    def counted(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def call(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = fn(*args, **kwargs)
            bar.update(1)
            return out

        return call

    try:
        yield counted
    finally:
        bar.close()


def _steps(run: DiffAERun, ddim_steps: int | None) -> tuple[int, int]:
    """(inversion, decoding) steps: the run's own, or ``ddim_steps`` for both."""
    if ddim_steps is None:
        return run.inversion_steps, run.decoding_steps
    if ddim_steps < 1 or ddim_steps > int(run.engine.conf.T):
        raise ConfigError(f"--ddim_steps {ddim_steps}; expected 1..{run.engine.conf.T} (the run's T)")
    return ddim_steps, ddim_steps


@torch.no_grad()
def encode(run: DiffAERun, series: SubjectSeries) -> torch.Tensor:
    """Semantic latents (N, L) of the series' samples."""
    return run.engine.encode(series.x, run.use_ema)


@torch.no_grad()
def invert(
    run: DiffAERun, series: SubjectSeries, z: torch.Tensor, ddim_steps: int | None = None, progress: bool = True
) -> torch.Tensor:
    """The stochastic code x_T (N, C, *spatial) of the series: DDIM inversion conditioned on its own ``z``."""
    steps, _ = _steps(run, ddim_steps)
    with _progress(steps, f"invert {series.subject}", progress) as counted:
        fn = counted(run.engine.denoiser(run.use_ema))
        return run.engine.diffusion.ddim_reverse_sample_loop(fn, series.x, cond=z, steps=steps)


@torch.no_grad()
def decode_many(
    run: DiffAERun,
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
    ddim_steps: int | None = None,
    progress: bool = True,
    label: str = "decode",
) -> torch.Tensor:
    """Decode each (x_T (N, C, *spatial), z (N, L)) pair; returns (P, N, C', *spatial) in [0, 1].

    C' is the channel choice of the test stage (the grey channel for grey2RGB modes 0 and 2).
    """
    _, steps = _steps(run, ddim_steps)
    engine = run.engine
    out = []
    with _progress(steps * len(pairs), label, progress) as counted:
        fn = counted(engine.denoiser(run.use_ema))
        for x_T, z in pairs:
            x0 = engine.diffusion.ddim_sample_loop(fn, x_T, cond=z, steps=steps)
            out.append(engine.metric_channels((x0 + 1) / 2))
    return torch.stack(out)


def manipulate(
    run: DiffAERun,
    series: SubjectSeries,
    offsets: np.ndarray,
    ddim_steps: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Decode ``z + offset`` for each row of ``offsets`` (A, L) with the series' own x_T, inverted once.

    Returns (A, N, C', *spatial) in [0, 1]; a zero offset gives the series' own reconstruction.
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 2 or offsets.shape[1] != run.latent_dim:
        raise ConfigError(f"offsets of shape {offsets.shape}; expected (A, {run.latent_dim})")
    z = encode(run, series)
    x_T = invert(run, series, z, ddim_steps, progress)
    shifts = torch.as_tensor(offsets, dtype=z.dtype, device=z.device)
    pairs = [(x_T, z + shift[None, :]) for shift in shifts]
    return decode_many(run, pairs, ddim_steps, progress, f"decode {series.subject}")


def interpolate(
    run: DiffAERun,
    a: SubjectSeries,
    b: SubjectSeries,
    ts: np.ndarray,
    ddim_steps: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """From ``a`` to ``b``: lerp on z, slerp on x_T at each fraction of ``ts``; returns (K, N, C', *spatial)."""
    if a.x.shape != b.x.shape:
        raise DataError(
            f"series {a.key} {tuple(a.x.shape)} and {b.key} {tuple(b.x.shape)} differ in shape; "
            "an interpolation needs two series with the same samples"
        )
    za, zb = encode(run, a), encode(run, b)
    xa, xb = invert(run, a, za, ddim_steps, progress), invert(run, b, zb, ddim_steps, progress)
    pairs = [(slerp(xa, xb, float(t)), lerp(za, zb, float(t))) for t in ts]
    return decode_many(run, pairs, ddim_steps, progress, f"interpolate {a.subject}->{b.subject}")


__all__ = [
    "DiffAERun",
    "SubjectSeries",
    "decode_many",
    "encode",
    "interpolate",
    "invert",
    "load_diffae_run",
    "load_run_weights",
    "load_subject",
    "manipulate",
    "read_series",
    "stored_run_config",
]
