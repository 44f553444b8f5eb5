"""Where a latent direction comes from: a latent regressor run, a phenotype fitted on the latents, or a latent index.

Every direction is measured against *reference latents*, the rows of a DiffAE run's ``emb.h5``, so that α is in
standard deviations of the projection of that run's subjects (see :mod:`Engineering.science.manipulation`).

On the command line a direction is ``KIND ARG…`` (:func:`parse_direction`):

* ``index K``: latent K alone;
* ``latentcls RUN [TARGET]``: the linear weights of a ``main_latentcls.py`` run (its EMA head, as it tests), row
  TARGET (a phenotype name or a position; default the first). For a classifier, class TARGET's logit weights minus
  the mean of the others (for two classes: class 1 minus class 0);
* ``phenotype TABLE COLUMN [ridge|logistic]``: a linear fit of COLUMN of TABLE (TSV indexed by FID or f.eid, the
  project's phenotype format) on the reference latents; logistic is the default for a column with two values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.data.sidecars import read_table
from Engineering.errors import CheckpointError, ConfigError, DataError
from Engineering.hub.checkpoints import select_checkpoint
from Engineering.outputs.latent_tables import emb_rows
from Engineering.pickle_policy import load_pickle
from Engineering.science.manipulation import FIT_METHODS, Direction, fit_direction, index_vector, make_direction

log = logging.getLogger("imlatent")

DIRECTION_KINDS = ("index", "latentcls", "phenotype")
DIRECTION_HELP = (
    "KIND ARG...: 'index K' (latent K), 'latentcls RUN [TARGET]' (weights of a main_latentcls.py run), or "
    "'phenotype TABLE COLUMN [ridge|logistic]' (a fit of a TSV column indexed by FID/f.eid on the run's latents)"
)


@dataclass(frozen=True)
class DirectionSpec:
    """A parsed ``--direction``: kind and its arguments as given."""

    kind: str
    args: tuple[str, ...]


def parse_direction(values: Sequence[str]) -> DirectionSpec:
    """``--direction`` values → :class:`DirectionSpec`; a wrong kind or argument count is one clear error."""
    if not values or values[0] not in DIRECTION_KINDS:
        got = values[0] if values else "nothing"
        raise ConfigError(f"--direction {got!r}: expected one of {', '.join(DIRECTION_KINDS)} first; {DIRECTION_HELP}")
    kind, args = values[0], tuple(values[1:])
    counts = {"index": (1, 1), "latentcls": (1, 2), "phenotype": (2, 3)}[kind]
    if not counts[0] <= len(args) <= counts[1]:
        raise ConfigError(f"--direction {' '.join(values)}: wrong number of arguments; {DIRECTION_HELP}")
    if kind == "index" and not args[0].lstrip("-").isdigit():
        raise ConfigError(f"--direction index {args[0]!r}: expected an integer latent index")
    if kind == "phenotype" and len(args) == 3 and args[2] not in FIT_METHODS:
        raise ConfigError(f"--direction phenotype ... {args[2]!r}: expected one of {', '.join(FIT_METHODS)}")
    return DirectionSpec(kind, args)


# ------------------------------------------------------------------------------------------------ reference latents


def run_emb_file(run_dir: Path, emb: str | Path | None = None) -> Path:
    """The emb.h5 of a run: ``emb`` when given, else the one under ``Output*/`` with the most series."""
    if emb is not None:
        path = Path(emb)
        if not path.is_file():
            raise DataError(f"latent file {path} does not exist")
        return path
    found = sorted(Path(run_dir).glob("Output*/emb.h5"))
    if not found:
        raise DataError(f"run {run_dir} has no Output*/emb.h5; run its test stage first (--run_mode 2)")
    return max(found, key=lambda p: (_n_series(p), -found.index(p)))


def _n_series(path: Path) -> int:
    """Number of datasets in an HDF5 file (series in an emb.h5)."""
    import h5py

    count = 0

    def visit(_: str, obj: Any) -> None:
        nonlocal count
        count += isinstance(obj, h5py.Dataset)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return count


@dataclass
class ReferenceLatents:
    """The latent vectors of an emb.h5: table (subID, key, Z0…; one row per vector) and its latents (N, L)."""

    path: Path
    table: pd.DataFrame

    @property
    def columns(self) -> list[str]:
        return [c for c in self.table.columns if c not in ("subID", "key")]

    @property
    def latents(self) -> np.ndarray:
        return self.table[self.columns].to_numpy(np.float64)


def reference_latents(run_dir: Path, emb: str | Path | None = None) -> ReferenceLatents:
    """The run's latents (:func:`run_emb_file`), one row per stored vector (every frame of a 2D split run)."""
    path = run_emb_file(run_dir, emb)
    return ReferenceLatents(path, emb_rows(path))


# ------------------------------------------------------------------------------------------------ sources


def _checkpoint_dict(path: Path) -> dict[str, Any]:
    """A latentcls checkpoint read under the project's pickle policy (weights only: no pickled code runs)."""
    ckpt = load_pickle(path, what="checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} holds no 'state_dict'")
    return ckpt


def _pick_row(names: list[str], target: str | None, what: str) -> int:
    if target is None:
        return 0
    if target in names:
        return names.index(target)
    if target.isdigit() and int(target) < len(names):
        return int(target)
    raise ConfigError(f"{what}: target {target!r} is not one of {', '.join(names)} (or a position 0..{len(names) - 1})")


def latentcls_vector(run_dir: Path, target: str | None = None) -> tuple[np.ndarray, str]:
    """Weights (L,) of a latent regressor/classifier run's EMA head, and a label naming them."""
    checkpoint = select_checkpoint(Path(run_dir), load_best=True)
    ckpt = _checkpoint_dict(checkpoint)
    state = ckpt["state_dict"]
    weight = state.get("ema_net.weight", state.get("net.weight"))
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise CheckpointError(f"checkpoint {checkpoint} has no linear head (net.weight); was it --modelID 0?")
    stored = cast(dict, ckpt.get("hyper_parameters") or {})
    latent = RunConfig.from_saved(stored.get("hparams") or {}, stored.get("config") or {}, "latentcls").latent
    w = weight.double().numpy()  # (n_out, L)
    if latent.latent_task == "classification":
        classes = [str(c) for c in latent.latent_classes or range(w.shape[0])]
        row = _pick_row(classes, target, f"latentcls run {run_dir}") if target else w.shape[0] - 1
        others = np.delete(w, row, axis=0).mean(axis=0)
        return w[row] - others, f"{Path(run_dir).name}: class {classes[row]}"
    names = [str(c) for c in latent.latent_targets or range(w.shape[0])]
    row = _pick_row(names, target, f"latentcls run {run_dir}")
    return w[row], f"{names[row]} (latentcls weights)"


def phenotype_vector(
    reference: ReferenceLatents, table: Path, column: str, method: str | None = None
) -> tuple[np.ndarray, str]:
    """Coefficients (L,) of COLUMN of ``table`` fitted on the reference latents (joined on subject ID)."""
    values = read_table(table, [column])[column]
    joined = reference.table.merge(values, left_on="subID", right_index=True, how="inner")
    target = pd.to_numeric(joined[column], errors="coerce").to_numpy(np.float64)
    n_values = np.unique(target[np.isfinite(target)]).size
    method = method or ("logistic" if n_values == 2 else "ridge")
    log.info("direction %s: %s fit on %d rows of %s", column, method, int(np.isfinite(target).sum()), reference.path)
    coef = fit_direction(joined[reference.columns].to_numpy(np.float64), target, method, column)  # type: ignore[arg-type]
    return coef, f"{column} ({method})"


def resolve_direction(spec: DirectionSpec, reference: ReferenceLatents) -> Direction:
    """The :class:`Direction` of ``spec``, its SD measured on ``reference``."""
    latents = reference.latents
    if spec.kind == "index":
        k = int(spec.args[0])
        return make_direction(index_vector(latents.shape[1], k), latents, f"Z{k}")
    if spec.kind == "latentcls":
        w, label = latentcls_vector(Path(spec.args[0]), spec.args[1] if len(spec.args) > 1 else None)
    else:
        method = spec.args[2] if len(spec.args) > 2 else None
        w, label = phenotype_vector(reference, Path(spec.args[0]), spec.args[1], method)
    if w.shape != (latents.shape[1],):
        raise DataError(f"direction {label} has length {w.size}; the run's latents have length {latents.shape[1]}")
    return make_direction(w, latents, label)


__all__ = [
    "DIRECTION_HELP",
    "DIRECTION_KINDS",
    "DirectionSpec",
    "ReferenceLatents",
    "latentcls_vector",
    "parse_direction",
    "phenotype_vector",
    "reference_latents",
    "resolve_direction",
    "run_emb_file",
]
