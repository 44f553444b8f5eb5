"""What the browser explorer computes, without any user interface: a trained DiffAE, its reference latents and the
directions, and per subject its latent, its stochastic code x_T and the decodes.

Loading a subject encodes it, DDIM-inverts it once and decodes its own latent (the reconstruction); moving along
directions decodes ``z + Σ α_i·σ_i·ŵ_i`` with the same x_T, so only the decoding is paid per slider move. All DDIM
work is :mod:`Engineering.engines.diffae_inference`'s; the explorer uses a reduced number of steps (``ddim_steps``)
so that an action takes seconds on a CPU, and says so on screen.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from Engineering.apps import explorer_plots as plots
from Engineering.apps.uploads import UPLOAD_SUBJECT, upload_to_h5
from Engineering.configuration.run_config import RunConfig
from Engineering.data.datamodule import H5DataModule
from Engineering.data.h5dataset import list_patients
from Engineering.engines.diffae import DiffAEEngine
from Engineering.engines.diffae_inference import (
    DiffAERun,
    SubjectSeries,
    decode_many,
    encode,
    invert,
    load_diffae_run,
    load_subject,
)
from Engineering.engines.directions import (
    DirectionSpec,
    ReferenceLatents,
    reference_latents,
    resolve_direction,
)
from Engineering.engines.tasks import build_engine
from Engineering.errors import ConfigError, DataError, ImLatentError
from Engineering.hub.loading import load_into, pick_weight_file
from Engineering.science.manipulation import Direction

log = logging.getLogger("imlatent")

DEFAULT_DDIM_STEPS = 10
DEFAULT_DIRECTIONS = 3  # latent indices 0.. when no --direction is given
MAX_SUBJECTS_LISTED = 1000  # a longer list is cut; any other ID can still be typed


def load_hf_folder(folder: str | Path, device: str = "cpu") -> DiffAERun:
    """A DiffAE rebuilt from an exported Hugging Face folder (``export_hf.py``: config.json + model.safetensors).

    The network and normalisation come from config.json's ``imlatent`` section (the run's resolved settings,
    local paths removed), the weights through :func:`Engineering.hub.loading.load_into` (no repository code).
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"--load_hf {folder}: no config.json; expected a folder written by export_hf.py")
    try:
        section = json.loads(config_path.read_text(encoding="utf-8")).get("imlatent")
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError(f"--load_hf {config_path} cannot be read as a JSON object ({err})") from None
    if not isinstance(section, dict) or section.get("script") != "diffae":
        raise ConfigError(
            f"--load_hf {config_path} has no 'imlatent' section of a DiffAE run (export_hf.py writes one)"
        )
    cfg = RunConfig.from_saved(section["hparams"], section["config"], "diffae")
    engine = build_engine(cfg)
    if not isinstance(engine, DiffAEEngine):  # the task table maps taskID 1 to the DiffAE engine
        raise ConfigError(f"--load_hf {folder}: taskID 1 did not build a DiffAE engine")
    load_into(engine, folder, expected_config=engine.architecture())
    engine.eval().to(device)
    return DiffAERun(folder, engine, cfg, pick_weight_file(folder), cfg.diffae.test_ema)


def with_data_file(run: DiffAERun, h5_path: Path) -> DiffAERun:
    """``run`` reading its subjects from ``h5_path`` (every patient of the file, no folds) instead of its data."""
    return replace(run, cfg=run.cfg.updated(datadir=str(h5_path.parent), datafile=h5_path.name, foldCSV=""))


@dataclass
class SubjectView:
    """One loaded subject: the series, its latents z (N, L) and x_T, and display frames (F, H, W) in [0, 1].

    ``moved``/``moved_z`` hold the last decode along the directions (None until a slider leaves 0).
    """

    series: SubjectSeries
    z: torch.Tensor
    x_T: torch.Tensor
    inp: np.ndarray
    recon: np.ndarray
    seconds: float
    alphas: tuple[float, ...] = ()
    moved: np.ndarray | None = None
    moved_z: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.inp.shape[0])


@dataclass
class LatentMap:
    """A 2-D PCA of the reference latents: the fitted model and the reference points in its coordinates."""

    pca: Any
    points: np.ndarray
    source: Path


class Explorer:
    """A run ready to explore: the model, the DDIM steps used here, the reference latents, the directions."""

    def __init__(
        self,
        run: DiffAERun,
        ddim_steps: int | None = None,
        direction_specs: list[DirectionSpec] | None = None,
        emb: str | Path | None = None,
    ) -> None:
        self.run = run
        own = min(run.inversion_steps, run.decoding_steps)
        self.ddim_steps = int(ddim_steps) if ddim_steps is not None else min(DEFAULT_DDIM_STEPS, own)
        if not 1 <= self.ddim_steps <= int(run.engine.conf.T):
            raise ConfigError(f"--ddim_steps {self.ddim_steps}; expected 1..{run.engine.conf.T} (the run's T)")
        self.reference, self.reference_note = self._reference(emb)
        self.latent_map = self._latent_map()
        self.directions = self._directions(direction_specs)
        self._work = tempfile.TemporaryDirectory(prefix="imlatent_explore_")

    # ------------------------------------------------------------------------------------------ set-up

    def _reference(self, emb: str | Path | None) -> tuple[ReferenceLatents | None, str]:
        """The run's latents (its emb.h5, or ``emb``), or None and why there are none (a bad ``emb`` is an error)."""
        try:
            reference = reference_latents(self.run.run_dir, emb)
        except DataError as err:
            if emb is not None:
                raise
            return None, str(err)
        if len(reference.table) < 2:
            return None, f"{reference.path} holds {len(reference.table)} latent(s); a map needs at least 2"
        return reference, f"{len(reference.table)} latents of {reference.path}"

    def _latent_map(self) -> LatentMap | None:
        from sklearn.decomposition import PCA

        if self.reference is None:
            return None
        latents = self.reference.latents
        pca = PCA(n_components=2).fit(latents)
        return LatentMap(pca, pca.transform(latents), self.reference.path)

    def _directions(self, specs: list[DirectionSpec] | None) -> list[Direction]:
        if self.reference is None:
            if specs:
                raise DataError(f"--direction needs the run's latents to measure α in SDs, but {self.reference_note}")
            return []
        wanted = specs or [
            DirectionSpec("index", (str(k),)) for k in range(min(DEFAULT_DIRECTIONS, self.run.latent_dim))
        ]
        return [resolve_direction(spec, self.reference) for spec in wanted]

    def close(self) -> None:
        self._work.cleanup()

    # ------------------------------------------------------------------------------------------ text

    def describe(self) -> str:
        """A few lines (Markdown) saying what is loaded and how much DDIM work each action is."""
        run = self.run
        steps = self.ddim_steps
        kind = "3D" if run.is3d else "2D"
        directions = ", ".join(d.label for d in self.directions) or f"none ({self.reference_note})"
        return "\n".join(
            [
                f"- **Run** `{run.run_dir.name}` · {kind} DiffAE, latent size {run.latent_dim} · "
                f"weights `{run.checkpoint.name}` ({'EMA' if run.use_ema else 'base'} network)",
                f"- **DDIM steps: {steps}** for the inversion and {steps} for each decode (the run's test stage: "
                f"{run.inversion_steps} and {run.decoding_steps}; fewer steps are faster, more are closer to it)",
                f"- **Latent map:** {self.reference_note}"
                if self.latent_map
                else f"- **No latent map:** {self.reference_note}",
                f"- **Directions** (α in standard deviations of the run's latents along each): {directions}",
            ]
        )

    # ------------------------------------------------------------------------------------------ subjects

    def data_file(self) -> Path:
        """The HDF5 file the run's subjects are read from."""
        return Path(H5DataModule.from_config(self.run.cfg, merge_train_val=False).h5_path)

    def data_file_name(self) -> str:
        """The name of the run's data file, for labels ("no data file" when the run names none)."""
        try:
            return self.data_file().name
        except ImLatentError:
            return "no data file"

    def subjects(self) -> list[str]:
        """Patient IDs of the run's data file (sorted; at most MAX_SUBJECTS_LISTED), or [] without one."""
        try:
            path = self.data_file()
        except ImLatentError as err:
            log.info("no subject list: %s", err)
            return []
        if not path.is_file():
            return []
        return sorted(list_patients(path))[:MAX_SUBJECTS_LISTED]

    def load(self, subject: str) -> SubjectView:
        """Encode, invert and reconstruct one subject of the run's data."""
        subject = str(subject or "").strip()
        if not subject:
            raise DataError("no subject chosen; pick a subject ID from the list")
        return self._view(load_subject(self.run, subject))

    def load_upload(self, path: str | Path) -> SubjectView:
        """Encode, invert and reconstruct an uploaded NIfTI or one-series HDF5 file."""
        work = Path(tempfile.mkdtemp(dir=self._work.name))
        h5_path, subject = upload_to_h5(path, work, self._upload_target())
        try:
            series = load_subject(with_data_file(self.run, h5_path), subject)
        except DataError as err:
            shape = self.run.cfg.data.input_shape
            raise DataError(f"upload {Path(path).name}: {err} (the run's input shape is {shape})") from None
        if subject == UPLOAD_SUBJECT:
            series = replace(series, subject=Path(path).name)
        return self._view(series)

    def _upload_target(self) -> tuple[str, str, str]:
        """(field, instance, series) of the run's own series, under which a NIfTI upload is stored."""
        if self.reference is not None:
            _, field, instance, series = str(self.reference.table["key"].iloc[0]).split("/")  # pid/field/inst/series
            return field, instance, series
        return "0", "2_0", "primary"

    def _view(self, series: SubjectSeries) -> SubjectView:
        start = time.perf_counter()
        z = encode(self.run, series)
        x_T = invert(self.run, series, z, self.ddim_steps, progress=False)
        recon = decode_many(self.run, [(x_T, z)], self.ddim_steps, progress=False)[0]
        inp = series.frames(self.run.engine.metric_channels((series.x + 1) / 2))  # [0, 1], the decodes' channel
        return SubjectView(series, z, x_T, inp, series.frames(recon), time.perf_counter() - start)

    def move(self, view: SubjectView, alphas: list[float]) -> SubjectView:
        """``view`` decoded at ``z + Σ α_i·σ_i·ŵ_i`` (α per direction, in SDs); all α = 0 is the reconstruction."""
        alphas = [float(a) for a in alphas][: len(self.directions)]
        if not any(alphas):
            return replace(view, alphas=tuple(alphas), moved=None, moved_z=None, seconds=0.0)
        offset = sum(d.offsets([a])[0] for d, a in zip(self.directions, alphas, strict=False))
        z_moved = view.z + torch.as_tensor(offset, dtype=view.z.dtype, device=view.z.device)[None, :]
        start = time.perf_counter()
        decoded = decode_many(self.run, [(view.x_T, z_moved)], self.ddim_steps, progress=False)[0]
        seconds = time.perf_counter() - start
        moved = view.series.frames(decoded)
        return replace(view, alphas=tuple(alphas), moved=moved, moved_z=z_moved.cpu().numpy(), seconds=seconds)

    # ------------------------------------------------------------------------------------------ figures

    def _sample(self, view: SubjectView, frame: int) -> int:
        """Row of z that belongs to ``frame``: the frame's own sample in 2D, the one volume in 3D."""
        return min(frame, view.z.shape[0] - 1)

    def panels(self, view: SubjectView, frame: int) -> np.ndarray:
        frame = int(np.clip(frame, 0, view.n_frames - 1))
        label = ", ".join(f"{d.label} {a:+g}" for d, a in zip(self.directions, view.alphas, strict=False) if a)
        moved = None if view.moved is None else view.moved[frame]
        return plots.image_panels(frame, view.n_frames, view.inp[frame], view.recon[frame], moved, f"moved: {label}")

    def bars(self, view: SubjectView, frame: int) -> np.ndarray:
        row = self._sample(view, int(frame))
        z = view.z[row].cpu().numpy()
        moved = None if view.moved_z is None else view.moved_z[row]
        where = f", frame {row + 1}" if view.z.shape[0] > 1 else ""
        return plots.latent_bars(z, moved, f"semantic latent of {view.series.subject}{where}")

    def map(self, view: SubjectView) -> np.ndarray | None:
        if self.latent_map is None:
            return None
        pca = self.latent_map.pca
        subject = pca.transform(view.z.cpu().numpy().astype(np.float64))
        moved = None if view.moved_z is None else pca.transform(view.moved_z.astype(np.float64))
        ratio = pca.explained_variance_ratio_
        return plots.latent_map(
            self.latent_map.points, subject, moved, (float(ratio[0]), float(ratio[1])), "2-D PCA of the run's latents"
        )


def open_explorer(
    run_dir: str | None,
    load_hf: str | None,
    *,
    data: str | None = None,
    emb: str | None = None,
    ddim_steps: int | None = None,
    directions: list[DirectionSpec] | None = None,
    load_best: bool = False,
) -> Explorer:
    """The :class:`Explorer` of a run folder or an exported folder (exactly one), on the CPU."""
    if bool(run_dir) == bool(load_hf):
        raise ConfigError("give exactly one of --run_dir RUN and --load_hf FOLDER")
    run = load_diffae_run(run_dir, load_best) if run_dir else load_hf_folder(str(load_hf))
    if data:
        path = Path(data)
        if not path.is_file():
            raise DataError(f"--data {path} does not exist; expected an HDF5 file in the project's layout")
        run = with_data_file(run, path)
    return Explorer(run, ddim_steps, directions, emb)


__all__ = ["Explorer", "SubjectView", "load_hf_folder", "open_explorer", "with_data_file"]
