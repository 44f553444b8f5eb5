"""Safe, flexible loading of pretrained weights into any ``torch.nn.Module``.

A weights *source* is a local folder, a local weight file, or a Hugging Face Hub repo id ``org/name[@revision]``.
Hub repos are fetched with ``huggingface_hub.snapshot_download`` restricted to weight and config files, so no
repository code is ever downloaded or executed (the original used ``AutoModel.from_pretrained(...,
trust_remote_code=True)``). The cache (``HF_HOME`` / ``HF_HUB_CACHE``), ``HF_HUB_OFFLINE`` and
``HF_TOKEN`` are read from the environment at call time.

Pickle-based files (``.ckpt``, ``.pt``, ``.bin``, DeepSpeed folders) are read under the one reading policy of
:mod:`Engineering.pickle_policy`: weights only, unless the user vouches for the file (``--trust_checkpoint``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from Engineering.errors import CheckpointError
from Engineering.hub.deepspeed import deepspeed_state_dict, is_deepspeed_checkpoint
from Engineering.pickle_policy import NO_TRUST, TrustedFiles, load_pickle

log = logging.getLogger("imlatent")

HUB_ALLOW_PATTERNS = ("*.safetensors", "*.bin", "*.ckpt", "*.pt", "*.index.json", "config.json", "README.md")
"""The only files fetched from a Hub repo: weights, their shard indices, the config and the model card."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt")

WRAPPER_PREFIXES = (
    "",
    "model.",
    "module.",
    "_orig_mod.",
    "diffae.",
    "engine.",
    "net_module.",
    "lightning_module.",
    "model.model.",
    "module.module.",
    "net.",
)
"""Prefixes tried, in order, when the keys of a state dict do not match the target as they are."""

COMPILED_MARKER = "_orig_mod."
"""Segment ``torch.compile`` inserts into the keys of a compiled (sub)module."""

CONFIG_WARN_ONLY = frozenset({"input_shape", "sample_size"})
"""config.json keys whose mismatch only warns: they change the shape-flexible ``x_T`` buffer, not the network."""

_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_TRUE = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------------------------------- sources


def hub_cache_dir() -> Path:
    """The Hub cache folder the environment selects: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def weight_files(folder: Path) -> list[Path]:
    """Weight files directly inside ``folder`` (sorted by name)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def split_repo_id(source: str, revision: str | None = None) -> tuple[str, str | None]:
    """``("org/name", revision)`` from ``org/name[@revision]``; a revision given twice must agree."""
    repo_id, _, inline = source.partition("@")
    if inline and revision and inline != revision:
        raise CheckpointError(
            f"weights source {source!r} names revision {inline!r} but revision={revision!r} was given"
        )
    return repo_id, inline or revision


def resolve_weights_source(source: str | Path, revision: str | None = None) -> Path:
    """Local path of a weights source: an existing file or folder as is, else a Hub snapshot folder.

    Args:
        source: a local folder, a local weight file, or ``org/name[@revision]``.
        revision: Hub branch, tag or commit (default ``main``); may also be given inline after ``@``.

    Raises:
        CheckpointError: unknown repo or revision, offline and not cached, or no weight file in the folder.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not is_deepspeed_checkpoint(path):
            _require_weights(path, str(source))
        return path
    text = str(source)
    if not _REPO_ID_RE.match(text):
        raise CheckpointError(
            f"weights source {text!r} is neither an existing file or folder nor a Hub repo id 'org/name[@revision]'"
        )
    repo_id, rev = split_repo_id(text, revision)
    folder = Path(_snapshot(repo_id, rev))
    _require_weights(folder, f"Hub repo {repo_id!r}")
    return folder


def _snapshot(repo_id: str, revision: str | None) -> str:
    """``snapshot_download`` of weights and config only, with its errors turned into one-line CheckpointErrors."""
    from huggingface_hub import errors, snapshot_download

    cache = hub_cache_dir()
    offline = hub_offline()
    where = f"Hub repo {repo_id!r} (revision {revision or 'main'})"
    try:
        return str(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache,
                local_files_only=offline,
                allow_patterns=list(HUB_ALLOW_PATTERNS),
            )
        )
    except errors.GatedRepoError as err:
        raise CheckpointError(f"{where} is gated: accept its terms on the Hub and set HF_TOKEN") from err
    except errors.RepositoryNotFoundError as err:
        raise CheckpointError(
            f"{where} not found, or private without a valid token (set HF_TOKEN); "
            f"no local file or folder named {repo_id!r} exists either"
        ) from err
    except errors.RevisionNotFoundError as err:
        raise CheckpointError(f"{where}: revision {revision!r} does not exist") from err
    except errors.LocalEntryNotFoundError as err:
        if offline:
            raise CheckpointError(
                f"{where} is not in the Hub cache {cache} and HF_HUB_OFFLINE=1 forbids downloading it; "
                f"download it once online (or unset HF_HUB_OFFLINE), or pass a local folder "
                f"(no local file or folder named {repo_id!r} exists)"
            ) from err
        raise CheckpointError(
            f"{where} could not be downloaded (Hub unreachable?) and is not in cache {cache}"
        ) from err
    except (errors.HfHubHTTPError, errors.HFValidationError, OSError, ValueError) as err:
        raise CheckpointError(f"{where} could not be fetched: {first_line(err)}") from err


def _require_weights(folder: Path, what: str) -> None:
    if not weight_files(folder):
        raise CheckpointError(
            f"{what} ({folder}) holds no weight file: expected *.safetensors, pytorch_model.bin, *.ckpt or *.pt"
        )


# --------------------------------------------------------------------------------------------------- reading


def pick_weight_file(folder: Path) -> Path:
    """The weight file of a folder: model.safetensors, a safetensors shard index, a lone *.safetensors,
    pytorch_model.bin, a .bin shard index, then a lone *.bin / *.ckpt / *.pt."""
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if (folder / name).is_file():
            return folder / name
    found = weight_files(folder)
    safetensors = [p for p in found if p.suffix == ".safetensors"]
    if safetensors:
        return _only(safetensors, folder)
    for name in ("pytorch_model.bin", "pytorch_model.bin.index.json"):
        if (folder / name).is_file():
            return folder / name
    if not found:
        _require_weights(folder, "weights folder")
    return _only(found, folder)


def _only(candidates: list[Path], folder: Path) -> Path:
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:4])
        raise CheckpointError(f"weights folder {folder} holds several weight files ({names}); pass one file instead")
    return candidates[0]


def read_state_dict(path: Path, *, trust: TrustedFiles = NO_TRUST) -> dict[str, Tensor]:
    """State dict (on the CPU) of a weight file, a model folder or a DeepSpeed checkpoint folder.

    ``*.safetensors`` and shard indices (``*.index.json`` with a ``weight_map``) are read directly; DeepSpeed folders
    are consolidated weights-only. Other files are read under the pickle policy (weights only unless ``trust``
    covers them); a Lightning checkpoint's ``state_dict`` entry is used when present.

    Raises:
        CheckpointError: unreadable file, a shard outside its folder, or values that are not tensors;
            UnsafePickleError for pickled objects in a file ``trust`` does not cover.
    """
    path = Path(path)
    if is_deepspeed_checkpoint(path):
        return deepspeed_state_dict(path, trust)
    if path.is_dir():
        path = pick_weight_file(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {path} does not exist")
    if path.name.endswith(".index.json"):
        return _read_sharded(path, trust)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _tensor_mapping(load_pickle(path, trust, what="weight file"), path)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"weight file {path} is not a readable safetensors file: {err}") from err


def shard_paths(index: Path, weight_map: Mapping[str, Any]) -> list[Path]:
    """The shard files of a shard index, each checked to be a weight file inside the index's folder.

    The names are checked as written (no symbolic link is followed, so a Hub cache snapshot, whose files are links
    into its blob store, still loads): a shard may not be an absolute path, climb out with ``..``, or be a shard
    index itself (which would make a self-reference or a cycle).
    """
    for name in weight_map.values():
        if not isinstance(name, str) or not name.strip():
            raise CheckpointError(f"shard index {index}: shard name {name!r} is not a file name")
    shards = []
    for name in sorted(set(weight_map.values())):
        parts = Path(name.replace("\\", "/")).parts
        if Path(name).is_absolute() or name.startswith(("/", "\\")) or ".." in parts:
            raise CheckpointError(
                f"shard index {index} names the shard {name!r} outside its folder {index.parent}; refused"
            )
        if name.endswith(".index.json") or Path(name).suffix not in (".safetensors", ".bin", ".pt", ".ckpt"):
            raise CheckpointError(
                f"shard index {index} names {name!r} as a shard; shards must be *.safetensors or *.bin weight files "
                "(an index naming an index is a self-reference or a cycle)"
            )
        shards.append(index.parent / name)
    return shards


def _read_sharded(index: Path, trust: TrustedFiles) -> dict[str, Tensor]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, Mapping):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"shard index {index} is not JSON with a 'weight_map' of key -> shard file") from err
    state: dict[str, Tensor] = {}
    for shard in shard_paths(index, weight_map):
        if not shard.is_file():
            raise CheckpointError(f"shard index {index} names {shard.name}, which is not a file in {index.parent}")
        state.update(read_state_dict(shard, trust=trust))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(
            f"shard index {index} lists {len(missing)} keys absent from its shards, e.g. {missing[0]}"
        )
    return {key: state[key] for key in weight_map}


def first_line(err: BaseException) -> str:
    """The first line of an exception message (its type name when empty)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _tensor_mapping(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"weight file {path} holds a {type(obj).__name__}, expected a state dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(
                f"weight file {path}: entry {key!r} is a {type(value).__name__}, expected a tensor "
                "(a state dict, or a Lightning checkpoint with 'state_dict')"
            )
    return dict(obj)


# --------------------------------------------------------------------------------------------------- matching


@dataclass
class MatchedState:
    """Result of :func:`match_state_dict`: the state to load, the prefix removed and the keys replaced."""

    state: dict[str, Tensor]
    prefix: str = ""
    compiled: bool = False
    replaced: tuple[str, ...] = ()


def _shape(value: Tensor | torch.Size | Iterable[int]) -> torch.Size:
    return value.shape if isinstance(value, Tensor) else torch.Size(value)


def _decompile(state: Mapping[str, Tensor], target_keys: set[str]) -> tuple[dict[str, Tensor], bool]:
    """Remove every ``_orig_mod.`` segment (torch.compile) unless the target keys carry it too."""
    if any(COMPILED_MARKER in k for k in target_keys) or not any(COMPILED_MARKER in k for k in state):
        return dict(state), False
    return {key.replace(COMPILED_MARKER, ""): value for key, value in state.items()}, True


def match_state_dict(
    target: Mapping[str, Tensor | torch.Size],
    state: Mapping[str, Tensor],
    shape_flexible: Iterable[str] = frozenset(),
) -> MatchedState:
    """Rename ``state`` so its keys equal the target's, and check every shape.

    Keys match as they are, or after removing ``_orig_mod.`` segments and then ONE prefix of
    :data:`WRAPPER_PREFIXES` that every key carries. A key in ``shape_flexible`` (e.g. ``x_T``) may differ in
    shape; it is then replaced by the target's value (a clone when ``target`` holds tensors; dropped when it only
    holds shapes, so the caller keeps its own).

    Args:
        target: key -> tensor or shape of the module to load into (e.g. ``module.state_dict()``).
        state: the state dict read from the weights source.
        shape_flexible: keys whose shape may differ.

    Raises:
        CheckpointError: no prefix gives the target's key set, or a non-flexible shape differs.
    """
    target_keys = set(target)
    plain, compiled = _decompile(state, target_keys)
    candidates = [p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in plain)]
    renamed: dict[str, Tensor] | None = None
    prefix = ""
    for prefix in candidates:
        stripped = {key[len(prefix) :]: value for key, value in plain.items()}
        if set(stripped) == target_keys:
            renamed = stripped
            break
    if renamed is None:
        raise CheckpointError(_key_mismatch_message(target_keys, plain, candidates))
    flexible = set(shape_flexible)
    replaced: list[str] = []
    for key in target:
        want, got = _shape(target[key]), renamed[key].shape
        if want == got:
            continue
        if key not in flexible:
            others = sum(1 for k in target if _shape(target[k]) != renamed[k].shape) - 1
            more = f" (and {others} more keys)" if others else ""
            raise CheckpointError(
                f"shape mismatch for {key!r}: checkpoint {tuple(got)} vs model {tuple(want)}{more}; "
                "check latent_dim, net_ch, in/out channels and is3D against the checkpoint's config"
            )
        replaced.append(key)
        value = target[key]
        if isinstance(value, Tensor):
            renamed[key] = value.detach().clone()
        else:
            del renamed[key]
        log.info("kept the model's %s %s instead of the checkpoint's %s", key, tuple(want), tuple(got))
    return MatchedState(state=renamed, prefix=prefix, compiled=compiled, replaced=tuple(replaced))


def _key_mismatch_message(target_keys: set[str], plain: Mapping[str, Tensor], candidates: list[str]) -> str:
    """Report the closest prefix: counts and 3 examples of missing and unexpected keys."""

    def diff(prefix: str) -> tuple[list[str], list[str]]:
        keys = {k[len(prefix) :] for k in plain}
        return sorted(target_keys - keys), sorted(keys - target_keys)

    best = min(candidates, key=lambda p: sum(map(len, diff(p))))
    missing, unexpected = diff(best)
    tried = ", ".join(repr(p) for p in WRAPPER_PREFIXES)
    return (
        f"state dict keys do not match the model after trying prefixes {tried} (and removing '_orig_mod.'): "
        f"closest is {best!r} with {len(missing)} missing keys (e.g. {', '.join(missing[:3]) or '-'}) and "
        f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3]) or '-'})"
    )


# --------------------------------------------------------------------------------------------------- loading


@dataclass
class LoadReport:
    """What :func:`load_into` did: the file read, the prefix removed, the keys replaced and the config checked."""

    source: Path
    prefix: str = ""
    compiled: bool = False
    replaced: tuple[str, ...] = ()
    config_checked: tuple[str, ...] = ()
    config_warnings: tuple[str, ...] = field(default_factory=tuple)


def load_into(
    module: nn.Module,
    source: str | Path,
    *,
    trust: TrustedFiles = NO_TRUST,
    shape_flexible: Iterable[str] = ("x_T",),
    expected_config: Mapping[str, Any] | None = None,
    revision: str | None = None,
) -> LoadReport:
    """Load the weights of ``source`` into ``module`` (strict keys; flexible shapes only for ``shape_flexible``).

    Args:
        module: any module, e.g. the DiffAE engine (keys ``net.*``, ``ema_net.*``, ``x_T``).
        source: local folder, local file or Hub repo id ``org/name[@revision]``.
        trust: files whose pickled objects may be fully unpickled (``--trust_checkpoint``; only files you vouch for).
        shape_flexible: keys whose shape may differ; the module keeps its own value for them.
        expected_config: architecture values of ``module`` (e.g. latent_dim, in_channels, is3D, net_ch,
            input_shape); compared with the source folder's ``config.json`` on the keys both have.
        revision: Hub revision, when not given inline.
    """
    path = resolve_weights_source(source, revision)
    checked: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    if path.is_dir() and expected_config is not None and (path / "config.json").is_file():
        checked, warnings = check_config(path / "config.json", expected_config)
    weight_file = pick_weight_file(path) if path.is_dir() and not is_deepspeed_checkpoint(path) else path
    state = read_state_dict(weight_file, trust=trust)
    matched = match_state_dict(module.state_dict(), state, frozenset(shape_flexible))
    try:
        module.load_state_dict(matched.state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights of {weight_file} do not load into the model: {first_line(err)}") from err
    log.info("loaded weights from %s (prefix %r, replaced %s)", weight_file, matched.prefix, matched.replaced)
    return LoadReport(
        source=weight_file,
        prefix=matched.prefix,
        compiled=matched.compiled,
        replaced=matched.replaced,
        config_checked=checked,
        config_warnings=warnings,
    )


def _comparable(value: Any) -> Any:
    """Lists and tuples compare equal; ``'50,128,128'`` equals ``[50, 128, 128]``; bools equal 0/1."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\s*,\s*\d+)+\s*", value):
        return [int(v) for v in value.split(",")]
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, bool):
        return int(value)
    return value


def check_config(config_json: Path, expected: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Compare the keys present in both ``config.json`` and ``expected``; return (checked keys, warnings).

    Raises:
        CheckpointError: unreadable config.json, or a mismatch outside :data:`CONFIG_WARN_ONLY`.
    """
    try:
        stored = json.loads(config_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config_json} is not readable JSON: {first_line(err)}") from err
    if not isinstance(stored, dict):
        raise CheckpointError(f"{config_json} must hold a JSON object, found {type(stored).__name__}")
    checked = tuple(key for key in expected if key in stored)
    warnings = []
    for key in checked:
        if _comparable(stored[key]) == _comparable(expected[key]):
            continue
        message = f"{config_json}: {key} is {stored[key]!r} but the model was configured with {expected[key]!r}"
        if key not in CONFIG_WARN_ONLY:
            raise CheckpointError(message)
        log.warning("%s (x_T is shape-flexible, continuing)", message)
        warnings.append(message)
    return checked, tuple(warnings)
