"""The test stage's collector: per-batch results in, ``emb.h5``, ``recon.h5``, ``<tag>.h5``, panels and metrics out.

An engine turns a test batch into an :class:`InferenceResult` and hands it to :meth:`OutputCollector.add`. At the
end every rank calls :meth:`OutputCollector.write`: the results of all ranks are gathered and rank 0 writes each
file once, atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from Engineering.configuration.sections import EvalOptions
from Engineering.outputs.distributed import gather_to_rank0
from Engineering.outputs.h5writer import write_results_h5
from Engineering.outputs.metrics import write_metrics
from Engineering.outputs.panels import PANEL_DIR, write_recon_panels
from Engineering.outputs.results import ResultHolder, as_numpy
from Engineering.science.metrics import ID_COLUMNS, Evaluator, median_ssim

log = logging.getLogger("imlatent")

#: at most this many PNG panels per test run (the first series stored), to bound memory and files
MAX_PANELS = 32


@dataclass
class TestOutputs:
    """Where and what the test stage writes."""

    output_dir: Path
    save_recon: bool = True
    recon_subjects: set[str] | None = None
    metric_suffix: str = ""
    evaluation: EvalOptions = EvalOptions()


@dataclass
class InferenceResult:
    """One test batch as an engine hands it to the collector.

    embedding: (B, L); recon and ground_truth: (B, C, *spatial) in the metric space (normally [0, 1]) or None.
    extra: additional per-sample predictions written as ``<tag>.h5`` (e.g. ``pheno_pred``), each (B, n).
    """

    embedding: torch.Tensor
    recon: torch.Tensor | None = None
    ground_truth: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class OutputCollector:
    """The results of one test run on this rank, and the writing of its files.

    Args:
        settings: output folder, recon selection, metric suffix and ``eval`` options.
        is3d: the series are volumes (panels show depth slices) rather than 2D frames.
        provenance: root attributes of ``emb.h5`` (which run, weights, seed and code), or None.
    """

    def __init__(self, settings: TestOutputs, is3d: bool, provenance: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.is3d = is3d
        self.provenance = provenance
        self.emb = ResultHolder()
        self.recon = ResultHolder()
        self.gt = ResultHolder()  # ground truth of the recon subjects, for the PNG panels
        self.extra: dict[str, ResultHolder] = {}
        self.rows: list[dict[str, Any]] = []
        self.ssim: list[float] = []
        self._pending: list[_Pending] = []
        evaluation = settings.evaluation
        self.evaluator = Evaluator(
            metrics2use=dict(evaluation.metrics2use),
            norm4diff=evaluation.norm4diff,
            store_fullscale_evals=evaluation.store_fullscale_evals,
            n_calc_processes=_metric_processes(evaluation.n_calc_processes),
            mp_start_method="spawn" if torch.cuda.is_initialized() else "fork",
        )

    def add(self, keys: Sequence[str], indices: Sequence[Any], result: InferenceResult) -> None:
        """Store one batch: embeddings and extras always; reconstructions, panels' ground truth and metrics when the
        engine reconstructs.

        Embeddings and extras stay on their device until :meth:`flush` (every ``FLUSH_EVERY`` batches and before
        writing): no host synchronisation and no per-sample Python work per batch, so on a GPU the next batch is
        queued while this one computes (latent extraction is this path alone).
        """
        keys = list(keys)
        index_tensors = tuple(torch.as_tensor(ix) for ix in indices)
        extra = {tag: values.detach() for tag, values in result.extra.items()}
        self._pending.append(_Pending(keys, index_tensors, result.embedding.detach(), extra))
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()
        if result.recon is None or result.ground_truth is None:
            return
        indices = tuple(ix.tolist() for ix in index_tensors)
        recon = as_numpy(result.recon)
        gt = as_numpy(result.ground_truth)
        if self.settings.save_recon:
            squeezed = np.stack([_squeeze_channel(r) for r in recon])  # recon.h5 drops a singleton channel axis
            self.recon.add(keys, indices, squeezed, only_subjects=self.settings.recon_subjects)
            if len(self.gt.keys()) < MAX_PANELS:  # ground truth is kept only for the series that get a panel
                truth = np.stack([_squeeze_channel(g) for g in gt])
                self.gt.add(keys, indices, truth, only_subjects=self.settings.recon_subjects)
        self.rows.extend(self.evaluator.evaluate(gt, recon, keys))
        self.ssim.append(float(median_ssim(gt, recon)))

    def flush(self) -> None:
        """Move the pending batches into the result holders: one device-to-host copy per holder."""
        pending, self._pending = self._pending, []
        if pending:
            _store(self.emb, [(p.keys, p.indices, p.embedding) for p in pending])
        for tag in sorted({tag for p in pending for tag in p.extra}):
            holder = self.extra.setdefault(tag, ResultHolder())
            _store(holder, [(p.keys, p.indices, p.extra[tag]) for p in pending if tag in p.extra])

    def ssim_sum_count(self) -> tuple[float, int]:
        """Sum and number of this rank's finite per-batch median SSIMs (their mean over all ranks is test_ssim)."""
        values = [v for v in self.ssim if np.isfinite(v)]
        return float(sum(values)), len(values)

    @property
    def ssim_name(self) -> str:
        suffix = self.settings.metric_suffix
        return "test_ssim" + (f"_{suffix}" if suffix else "")

    def write(self) -> None:
        """Gather every rank's results; rank 0 writes the files once. Collective: every rank must call it."""
        self.evaluator.close()
        self.flush()
        state = {
            "emb": self.emb.state(),
            "recon": self.recon.state(),
            "gt": self.gt.state(),
            "extra": {k: v.state() for k, v in self.extra.items()},
            "rows": self.rows,
        }
        gathered = gather_to_rank0(state)
        if gathered is None:  # not rank 0: rank 0 writes everything once
            return
        out = self.settings.output_dir
        out.mkdir(parents=True, exist_ok=True)
        emb = _merged(gathered, "emb")
        self._write_embeddings(out, emb.to_dense())
        if self.settings.save_recon:
            self._write_reconstructions(out, _merged(gathered, "recon").to_dense(), _merged(gathered, "gt").to_dense())
        for tag in sorted({tag for st in gathered for tag in st["extra"]}):
            holder = ResultHolder.merged(
                ResultHolder.from_state(st["extra"][tag]) for st in gathered if tag in st["extra"]
            )
            write_results_h5(out / f"{tag}.h5", holder.to_dense())
        rows = [row for st in gathered for row in st["rows"]]
        if len(gathered) > 1:  # ranks hold strided shares: one deterministic order whatever the number of ranks
            rows.sort(key=_row_identity)
        if rows:
            write_metrics(out, rows)
        log.info("Test outputs written (%d series); published as a set once the test ends", len(emb))

    def _write_embeddings(self, out: Path, emb_dense: dict[str, np.ndarray]) -> None:
        attrs = dict(self.provenance) if self.provenance else None
        if attrs is not None and emb_dense:
            attrs["imlatent_latent_dim"] = int(next(iter(emb_dense.values())).shape[-1])  # the length really written
        write_results_h5(out / "emb.h5", emb_dense, attrs=attrs)

    def _write_reconstructions(
        self, out: Path, recon_dense: dict[str, np.ndarray], gt_dense: dict[str, np.ndarray]
    ) -> None:
        write_results_h5(out / "recon.h5", recon_dense)
        panel_recon = {key: recon_dense[key] for key in gt_dense if key in recon_dense}
        write_recon_panels(out / PANEL_DIR, panel_recon, gt_dense, is3D=self.is3d)


#: pending batches are moved to the host at least this often (bounds the device memory they hold)
FLUSH_EVERY = 256


@dataclass
class _Pending:
    """One batch's embeddings/extras as the engine returned them (still on its device)."""

    keys: list[str]
    indices: tuple[torch.Tensor, ...]
    embedding: torch.Tensor
    extra: dict[str, torch.Tensor]


def _store(holder: ResultHolder, batches: list[tuple[list[str], tuple[torch.Tensor, ...], torch.Tensor]]) -> None:
    """Add several batches to ``holder`` as one: concatenated values (one host copy); batch by batch when their
    shapes differ, so that the holder names the offending key."""
    values = [v for _, _, v in batches]
    if len({tuple(v.shape[1:]) for v in values}) > 1 or any(len(ix) != 3 for _, ix, _ in batches):
        for keys, indices, v in batches:
            holder.add(keys, indices, as_numpy(v))
        return
    keys = [k for ks, _, _ in batches for k in ks]
    indices = tuple(torch.cat([ix[axis].reshape(-1).cpu() for _, ix, _ in batches]) for axis in range(3))
    holder.add(keys, indices, as_numpy(torch.cat(values)))


def _merged(gathered: Sequence[Mapping[str, Any]], name: str) -> ResultHolder:
    return ResultHolder.merged(ResultHolder.from_state(st[name]) for st in gathered)


def _row_identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(col, "")) for col in ID_COLUMNS)


def _metric_processes(requested: int) -> int:
    """Metric worker processes: as configured (-1 = all CPUs), but never more than this process may use."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested < 0:
        return available
    return min(requested, available)


def _squeeze_channel(x: np.ndarray) -> np.ndarray:
    """Drop a singleton channel axis of one sample (C, *spatial), as recon.h5 stores it."""
    return x[0] if x.shape[0] == 1 else x
