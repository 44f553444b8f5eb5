"""Crafted files for the safety tests: pickles whose unpickling would create a marker file.

A test builds one of these next to a ``marker`` path, hands it to the code under test, and asserts the refusal and
that ``marker`` was never created. :func:`unsafe_load_creates_marker` shows (in a test of its own) that the payload
is live: a plain ``torch.load(weights_only=False)`` of the same file does create the marker.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import torch

DEEPSPEED_FIXTURES = Path(__file__).resolve().parents[1] / "hub" / "deepspeed_zero"
PAYLOAD_TYPES = "builtins.getattr, pathlib.Path, pathlib.PosixPath"
"""How the refusal names the objects of :class:`Payload` (``Path(marker).write_text``)."""


class Payload:
    """An object whose unpickling calls ``Path(marker).write_text("pwned")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def evil_checkpoint(path: Path, marker: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A Lightning-style checkpoint (``state_dict`` + extras) carrying the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state or {"net.w": torch.zeros(2)}, "epoch": 0, "evil": Payload(marker)}, path)
    return path


def evil_bin(path: Path, marker: Path) -> Path:
    """A bare state dict (``pytorch_model.bin``) with one poisoned entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"net.w": torch.zeros(2), "net.b": Payload(marker)}, path)
    return path


def evil_model_folder(folder: Path, marker: Path, sharded: bool = False) -> Path:
    """A model folder (config.json + weights) whose weights are a poisoned ``.bin``, optionally behind a shard index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "DiffAE", "latent_dim": 8}))
    if sharded:
        evil_bin(folder / "pytorch_model-00001-of-00001.bin", marker)
        index = {"weight_map": {"net.w": "pytorch_model-00001-of-00001.bin"}}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    else:
        evil_bin(folder / "pytorch_model.bin", marker)
    return folder


def evil_deepspeed_folder(folder: Path, marker: Path, shard: str = "model") -> Path:
    """A real ZeRO-2 checkpoint folder (``latest``, ``global_step1/``) with the payload in one shard."""
    shutil.copytree(DEEPSPEED_FIXTURES / "zero2", folder)
    (folder / "reference.safetensors").unlink()
    pattern = "*_model_states.pt" if shard == "model" else "*_optim_states.pt"
    target = sorted((folder / "global_step1").glob(pattern))[0]
    torch.save({"module": {}, "buffer_names": [], "param_shapes": [], "evil": Payload(marker)}, target)
    return folder


def forged_pickle(path: Path, pickle_bytes: bytes) -> Path:
    """A torch zip file whose ``data.pkl`` is ``pickle_bytes`` (for globals no Python object pickles to)."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for name in source.namelist():
            out.writestr(name, pickle_bytes if name.endswith("data.pkl") else source.read(name))
    return path


def deepspeed_folder_naming(folder: Path, module: str, name: str) -> Path:
    """A real ZeRO-2 folder whose optimizer shard names ``module.name`` (called with no arguments) beside DeepSpeed's
    own objects: DeepSpeed's loader would import and call it."""
    shutil.copytree(DEEPSPEED_FIXTURES / "zero2", folder)
    (folder / "reference.safetensors").unlink()
    target = sorted((folder / "global_step1").glob("*_optim_states.pt"))[0]
    call = b"c" + module.encode() + b"\n" + name.encode() + b"\n)R"
    forged_pickle(target, b"\x80\x02}X\x01\x00\x00\x00x" + call + b"s.")
    return folder


def unsafe_load_creates_marker(path: Path, marker: Path) -> bool:
    """Control: a full unpickle of ``path`` (what the code must never do) creates ``marker``."""
    try:
        torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - the payload returns an int where a tensor was expected; irrelevant here
        pass
    return marker.exists()
