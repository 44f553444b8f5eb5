"""Image-quality metrics of the test stage: the per-image :class:`Evaluator` and the logged median SSIM.

One row per 2-D image: per (sample, channel) for 2-D data (B, C, H, W) and per
(sample, channel, depth index ``Slice``) for 3-D data (B, C, D, H, W). Images whose ground truth is all zero are
skipped. Metric columns, in order: ``SSIM, MSSSIM, NRMSE, PSNR, UQI, SDofDiff``; a metric switched off in
``eval.metrics2use`` holds -1. Complex data get ``<metric>_mag`` and ``<metric>_phase`` plus ``Pearson_mag`` and
``Pearson_phase``.

Libraries: SSIM, NRMSE and PSNR are scikit-image (as the original). The original's MS-SSIM and UQI came from
``sewar``, which is not a dependency here; both come from ``torchmetrics.functional`` instead (Gaussian 11×11,
σ = 1.5 windows, data_range 1). Their values therefore differ from sewar's (uniform 8×8 UQI window; sewar's MS-SSIM
filters). MS-SSIM uses the standard five scales when the image is large enough and fewer (the finest ones, weights
renormalised) for small images, where five scales do not fit the window.

Column order (one for both the in-process and the pooled path; the original's pool moved ``Slice``):
``Channel, [Slice,] <metrics…>, [SSIMMAP…, Diff…,] SubID, FieldID, InstanceID, Acq``.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    universal_image_quality_index,
)

from Engineering.errors import ConfigError, DataError

# column name -> its switch in eval.metrics2use
METRIC_SWITCHES: dict[str, str] = {
    "SSIM": "ssim",
    "MSSSIM": "msssim",
    "NRMSE": "nrmse",
    "PSNR": "psnr",
    "UQI": "uqi",
    "SDofDiff": "sddiff",
}
ID_COLUMNS = ("SubID", "FieldID", "InstanceID", "Acq")
DISABLED = -1
PEARSON_EPS = 1e-8
MSSSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_KERNEL = 11
SSIM_WINDOW = 7


def resolve_metrics2use(metrics2use: Mapping[str, Any] | None) -> dict[str, bool]:
    """The on/off switch of each metric column; ``None`` or an empty mapping switches all six on."""
    if not metrics2use:
        return dict.fromkeys(METRIC_SWITCHES, True)
    valid = set(METRIC_SWITCHES.values())
    unknown = sorted(set(metrics2use) - valid)
    if unknown:
        raise ConfigError(f"eval.metrics2use has unknown key(s) {unknown}; expected keys {sorted(valid)}")
    missing = sorted(valid - set(metrics2use))
    if missing:
        raise ConfigError(f"eval.metrics2use lacks key(s) {missing}; expected all of {sorted(valid)}")
    out: dict[str, bool] = {}
    for column, switch in METRIC_SWITCHES.items():
        value = metrics2use[switch]
        if not isinstance(value, bool | np.bool_):
            raise ConfigError(f"eval.metrics2use.{switch} is {value!r}; expected true or false")
        out[column] = bool(value)
    return out


def ssim_window(shape: Sequence[int]) -> int | None:
    """skimage's default 7 window, or the largest odd size that fits a smaller image; None below 3 pixels."""
    smallest = min(shape)
    if smallest >= SSIM_WINDOW:
        return SSIM_WINDOW
    if smallest < 3:
        return None
    return smallest if smallest % 2 else smallest - 1


def ssim_or_nan(gt: np.ndarray, out: np.ndarray, full: bool = False) -> Any:
    """SSIM (data range 1) of one image or volume; axes shorter than 3 are scored slice by slice and averaged.

    An image with no axis pair long enough (e.g. a 2x2 slice) scores NaN instead of failing the whole test.
    """
    win = ssim_window(gt.shape)
    if win is not None:
        return structural_similarity(gt, out, data_range=1, full=full, win_size=win)
    if gt.ndim == 3 and min(gt.shape[1:]) >= 3:  # short depth: mean of the 2-D slice scores
        scores = [
            structural_similarity(g, o, data_range=1, win_size=ssim_window(g.shape))
            for g, o in zip(gt, out, strict=True)
        ]
        value = float(np.mean(scores))
    else:
        value = float("nan")
    return (value, np.full(gt.shape, np.nan)) if full else value


def minmax(x: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)``; a constant image maps to zeros."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Σ(x−x̄)(y−ȳ) / (sqrt(Σ(x−x̄)²·Σ(y−ȳ)²) + eps), eps = 1e-8."""
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / (np.sqrt((dx * dx).sum() * (dy * dy).sum()) + PEARSON_EPS))


def _msssim_betas(height: int, width: int) -> tuple[float, ...] | None:
    """The most scales (of the standard five) that torchmetrics accepts for an H×W image, renormalised."""
    for n in range(len(MSSSIM_BETAS), 0, -1):
        div = max(1, n - 1) ** 2
        if min(height, width) >= 2**n and min(height // div, width // div) > MSSSIM_KERNEL - 1:
            betas = MSSSIM_BETAS[:n]
            return tuple(b / sum(betas) for b in betas)
    return None


def msssim(gt: np.ndarray, out: np.ndarray) -> float:
    """Multi-scale SSIM (torchmetrics, data_range 1) of two 2-D images; NaN if the image is below 11 pixels."""
    betas = _msssim_betas(*gt.shape)
    if betas is None:
        return float("nan")
    value = multiscale_structural_similarity_index_measure(
        torch.from_numpy(np.ascontiguousarray(out, np.float64))[None, None],
        torch.from_numpy(np.ascontiguousarray(gt, np.float64))[None, None],
        data_range=1.0,
        kernel_size=MSSSIM_KERNEL,
        betas=betas,
    )
    return float(value)


def uqi(gt: np.ndarray, out: np.ndarray) -> float:
    """Universal image quality index (torchmetrics, Gaussian 11×11 window, σ 1.5) of two 2-D images."""
    value = universal_image_quality_index(
        torch.from_numpy(np.ascontiguousarray(out, np.float64))[None, None],
        torch.from_numpy(np.ascontiguousarray(gt, np.float64))[None, None],
    )
    return float(value)


def score_real(
    gt: np.ndarray, out: np.ndarray, enabled: Mapping[str, bool], norm4diff: bool, fullscale: bool, tag: str = ""
) -> dict[str, Any]:
    """The six metric columns (suffix ``tag``) of one real 2-D image pair (H, W), plus SSIMMAP/Diff if fullscale."""
    gt = np.asarray(gt, np.float64)
    out = np.asarray(out, np.float64)
    row: dict[str, Any] = {}
    ssim_map = None
    if enabled["SSIM"] or fullscale:
        mssim, ssim_map = ssim_or_nan(gt, out, full=True)
        row[f"SSIM{tag}"] = float(mssim) if enabled["SSIM"] else DISABLED
    else:
        row[f"SSIM{tag}"] = DISABLED
    row[f"MSSSIM{tag}"] = msssim(gt, out) if enabled["MSSSIM"] else DISABLED
    row[f"NRMSE{tag}"] = float(normalized_root_mse(gt, out)) if enabled["NRMSE"] else DISABLED
    if enabled["PSNR"]:
        with warnings.catch_warnings(), np.errstate(divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # identical images: PSNR = inf
            row[f"PSNR{tag}"] = float(peak_signal_noise_ratio(gt, out, data_range=1))
    else:
        row[f"PSNR{tag}"] = DISABLED
    row[f"UQI{tag}"] = uqi(gt, out) if enabled["UQI"] else DISABLED
    diff = minmax(gt) - minmax(out) if norm4diff else gt - out
    row[f"SDofDiff{tag}"] = float(np.std(diff)) if enabled["SDofDiff"] else DISABLED
    if fullscale:
        row[f"SSIMMAP{tag}"] = ssim_map
        row[f"Diff{tag}"] = diff
    return row


def score_image(
    gt: np.ndarray, out: np.ndarray, enabled: Mapping[str, bool], norm4diff: bool, fullscale: bool
) -> dict[str, Any]:
    """Metric columns of one 2-D image pair; complex pairs give _mag/_phase columns plus Pearson_mag/_phase."""
    if not (np.iscomplexobj(gt) or np.iscomplexobj(out)):
        return score_real(gt, out, enabled, norm4diff, fullscale)
    parts = {"_mag": (np.abs(gt), np.abs(out)), "_phase": (np.angle(gt), np.angle(out))}
    row: dict[str, Any] = {}
    for tag, (g, o) in parts.items():
        row.update(score_real(g, o, enabled, norm4diff, fullscale, tag))
    for tag, (g, o) in parts.items():
        row[f"Pearson{tag}"] = pearson(g, o)
    return row


@dataclass(frozen=True)
class ImageTask:
    """One 2-D image to score with its own row labels, so skipping blanks cannot shift them (unlike the original)."""

    labels: dict[str, Any]
    ids: tuple[str, str, str, str]
    gt: np.ndarray
    out: np.ndarray
    enabled: dict[str, bool]
    norm4diff: bool
    fullscale: bool


def score_task(task: ImageTask) -> dict[str, Any]:
    """The metrics row of one task: its labels, the metric columns, then SubID, FieldID, InstanceID, Acq."""
    row = dict(task.labels)
    row.update(score_image(task.gt, task.out, task.enabled, task.norm4diff, task.fullscale))
    row.update(zip(ID_COLUMNS, task.ids, strict=True))
    return row


def _worker_init() -> None:
    torch.set_num_threads(1)


def _split_key(key: str) -> tuple[str, str, str, str]:
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) != 4 or not all(parts):
        raise DataError(f"metrics key {key!r}; expected '<subID>/<fieldID>/<instanceID>/<series>'")
    return parts[0], parts[1], parts[2], parts[3]


def _as_array(name: str, x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fciu":
        raise DataError(f"metrics input {name} has dtype {arr.dtype}; expected a numeric array")
    return arr


class Evaluator:
    """Per-image reconstruction metrics of the test stage.

    Args:
        metrics2use: YAML ``eval.metrics2use`` (keys ssim, msssim, nrmse, psnr, uqi, sddiff); None/empty = all on.
        norm4diff: min-max both images before the difference (SDofDiff and the Diff map only).
        store_fullscale_evals: add the 2-D ``SSIMMAP`` and ``Diff`` arrays to each row.
        n_calc_processes: 0 in-process; -1 a pool of all CPUs; n > 0 a pool of n processes. The pool is created on
            first use and reused for every batch; call :meth:`close` (or use ``with``) when testing ends.
        mp_start_method: start method of the pool; "spawn" is safe next to CUDA and thread pools.
    """

    def __init__(
        self,
        metrics2use: Mapping[str, Any] | None = None,
        norm4diff: bool = False,
        store_fullscale_evals: bool = False,
        n_calc_processes: int = 0,
        mp_start_method: str = "spawn",
    ) -> None:
        self.enabled = resolve_metrics2use(metrics2use)
        self.norm4diff = bool(norm4diff)
        self.fullscale = bool(store_fullscale_evals)
        if isinstance(n_calc_processes, bool) or not isinstance(n_calc_processes, int) or n_calc_processes < -1:
            raise ConfigError(f"eval.n_calc_processes is {n_calc_processes!r}; expected 0, -1 or a positive integer")
        self.n_processes = multiprocessing.cpu_count() if n_calc_processes == -1 else n_calc_processes
        if mp_start_method not in multiprocessing.get_all_start_methods():
            raise ConfigError(
                f"mp_start_method '{mp_start_method}'; expected one of {multiprocessing.get_all_start_methods()}"
            )
        self.mp_start_method = mp_start_method
        self._pool: ProcessPoolExecutor | None = None

    # ------------------------------------------------------------------ pool lifecycle
    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.n_processes,
                mp_context=multiprocessing.get_context(self.mp_start_method),
                initializer=_worker_init,
            )
        return self._pool

    def close(self) -> None:
        """Shut the worker pool down (no-op without one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ scoring
    def tasks(
        self, gt: torch.Tensor | np.ndarray, out: torch.Tensor | np.ndarray, keys: Sequence[str]
    ) -> Iterator[ImageTask]:
        """One task per non-blank 2-D image of the batch, in (sample, channel, slice) order."""
        g, o = _as_array("gt", gt), _as_array("out", out)
        if g.shape != o.shape:
            raise DataError(f"metrics inputs differ in shape: gt {g.shape} vs out {o.shape}; expected equal shapes")
        if g.ndim not in (4, 5):
            raise DataError(f"metrics input of shape {g.shape}; expected (B, C, H, W) or (B, C, D, H, W)")
        if len(keys) != g.shape[0]:
            raise DataError(f"metrics got {len(keys)} keys for a batch of {g.shape[0]}; expected one key per sample")
        is3d = g.ndim == 5
        for b, key in enumerate(keys):
            ids = _split_key(key)
            for c in range(g.shape[1]):
                slices = range(g.shape[2]) if is3d else (None,)
                for k in slices:
                    gi = g[b, c] if k is None else g[b, c, k]
                    if not np.any(gi):  # blank ground truth: no row
                        continue
                    oi = o[b, c] if k is None else o[b, c, k]
                    labels: dict[str, Any] = {"Channel": c} if k is None else {"Channel": c, "Slice": k}
                    yield ImageTask(labels, ids, gi, oi, self.enabled, self.norm4diff, self.fullscale)

    def evaluate(
        self, gt: torch.Tensor | np.ndarray, out: torch.Tensor | np.ndarray, keys: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Rows of one test batch. ``gt``/``out``: (B, C, H, W) or (B, C, D, H, W) in [0, 1]; ``keys``: B H5 keys."""
        tasks = list(self.tasks(gt, out, keys))
        if self.n_processes == 0 or len(tasks) < 2:
            return [score_task(t) for t in tasks]
        chunk = max(1, len(tasks) // (4 * self.n_processes))
        return list(self._executor().map(score_task, tasks, chunksize=chunk))


def median_ssim(gt: torch.Tensor | np.ndarray, out: torch.Tensor | np.ndarray) -> float:
    """Median over (sample, channel) of SSIM (data_range 1): 2-D SSIM of (H, W) images, volumetric of (D, H, W).

    The per-batch value logged as ``test_ssim``; complex inputs are scored on their magnitude.
    """
    g, o = _as_array("gt", gt), _as_array("out", out)
    if g.shape != o.shape or g.ndim not in (4, 5):
        raise DataError(f"median_ssim inputs gt {g.shape}, out {o.shape}; expected equal (B, C, [D,] H, W) shapes")
    if np.iscomplexobj(g) or np.iscomplexobj(o):
        g, o = np.abs(g), np.abs(o)
    g, o = g.astype(np.float64), o.astype(np.float64)
    values = [ssim_or_nan(g[b, c], o[b, c]) for b in range(g.shape[0]) for c in range(g.shape[1])]
    return float(np.nanmedian(values)) if not np.all(np.isnan(values)) else float("nan")
