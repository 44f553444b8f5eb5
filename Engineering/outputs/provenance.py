"""Provenance attributes for the ROOT of ``emb.h5``.

No consumer reads attributes and root attributes are invisible to ``visititems``, so they do not
change what downstream tools see. Values are plain ``str``/``int`` so any HDF5 reader can show them. There is no
timestamp: two runs of the same checkpoint give the same attributes, so incremental files stay mergeable
(:func:`Engineering.outputs.latent_tables.union_emb_h5` keeps attributes on which all inputs agree).
"""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

import h5py

PREFIX = "imlatent_"
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version(repo: str | Path | None = None) -> str:
    """``<package version>`` plus ``+g<commit>`` (and ``.dirty``) when ``repo`` is a git checkout; else the version."""
    try:
        version = metadata.version("imlatent")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    root = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return version
    if commit.returncode != 0 or not commit.stdout.strip():
        return version
    return f"{version}+g{commit.stdout.strip()}" + (".dirty" if dirty.stdout.strip() else "")


def provenance_attrs(
    run_name: str, checkpoint: str | Path | None, seed: int | None, latent_dim: int, code_version: str
) -> dict[str, str | int]:
    """Root attributes describing where an ``emb.h5`` came from.

    Args:
        run_name: the run folder name (``hparams.run_name``).
        checkpoint: the weights used for the test (checkpoint/preweights file, or an HF repo id); None or "" when
            the model was randomly initialised. An existing file is hashed (``imlatent_checkpoint_sha256``).
        seed: the run's seed (YAML ``seed``); None when not seeded (``--non_deter``) is stored as -1.
        latent_dim: L, the last axis of every dataset.
        code_version: e.g. :func:`code_version`.
    """
    ckpt = "" if checkpoint is None else str(checkpoint)
    sha = file_sha256(ckpt) if ckpt and Path(ckpt).is_file() else ""
    return {
        f"{PREFIX}run_name": str(run_name),
        f"{PREFIX}checkpoint": ckpt,
        f"{PREFIX}checkpoint_sha256": sha,
        f"{PREFIX}seed": -1 if seed is None else int(seed),
        f"{PREFIX}latent_dim": int(latent_dim),
        f"{PREFIX}code_version": str(code_version),
    }


def read_provenance(path: str | Path) -> dict[str, str | int]:
    """The ``imlatent_*`` root attributes of an H5 file (empty for files written without them)."""
    with h5py.File(path, "r", swmr=True) as f:
        out: dict[str, str | int] = {}
        for key, value in f.attrs.items():
            if key.startswith(PREFIX):
                out[key] = (
                    value.decode() if isinstance(value, bytes) else value.item() if hasattr(value, "item") else value
                )
        return out
