"""Export a trained module as a Hugging Face folder (model.safetensors, config.json, README.md) and push it.

The folder is weights and data only: it loads with :func:`Engineering.hub.loading.load_into` (or
``--load_hf``) into a module built by this project, never through repository code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from Engineering.configuration.cli import SCRIPTS
from Engineering.errors import CheckpointError, ConfigError
from Engineering.fileio import atomic_write, temp_folder
from Engineering.hub.checkpoints import select_checkpoint
from Engineering.hub.loading import first_line, hub_offline, read_state_dict
from Engineering.pickle_policy import NO_TRUST, TrustedFiles

log = logging.getLogger("imlatent")

EXPORT_FILES = ("model.safetensors", "config.json", "README.md")
RESOLVED_SECTIONS = ("script", "hparams", "config", "datajson")
MODEL_TYPES = {"recon": "ImLatentRecon", "diffae": "DiffAE", "latentcls": "ImLatentLatentRegressor"}
NORMALISATION_KEYS = ("norm_type", "zscore_mean", "zscore_std", "zscore_prenorm", "croppad", "grey2RGB")
LOCAL_PATH_KEYS = frozenset(
    {
        "datadir",
        "foldCSV",
        "save_path",
        "tblog_path",
        "log_path",
        "datajson_path",
        "configyml_path",
        "preweights_path",
        "load_model_4test",
        "resolved_config",
        "trust_checkpoint",
        "run_dir",
        "latent_file",
    }
)
"""Settings that name files or folders on the training machine: never exported, whatever their value."""
LOCAL_PATH_SUFFIXES = ("_path", "_dir", "_file", "CSV", "_csv")


# --------------------------------------------------------------------------------------------------- state


def export_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, detached copies safe for safetensors: tensors sharing storage are cloned apart."""
    seen: set[tuple[int, int]] = set()
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        tensor = value.detach().cpu()
        storage = tensor.untyped_storage()
        ident = (storage.data_ptr(), storage.nbytes())
        view = tensor.numel() * tensor.element_size() != storage.nbytes()
        if ident in seen or view or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(ident)
        out[key] = tensor
    return out


def save_state(state: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state`` as one safetensors file (after :func:`export_state`), atomically, mode ``0o666 & ~umask``."""
    from safetensors.torch import save_file

    tensors = export_state(state)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})}))


# --------------------------------------------------------------------------------------------------- folder


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"config value {where} is a {type(value).__name__}; config.json needs JSON types")


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"export folder {out_dir} exists and is not a folder")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in EXPORT_FILES)
        if foreign:
            raise ConfigError(
                f"export folder {out_dir} holds other files ({', '.join(foreign[:3])}); "
                "expected a new or empty folder, or a previous export"
            )


def export_hf_folder(
    module: nn.Module | Mapping[str, Tensor],
    out_dir: Path,
    config: Mapping[str, Any],
    model_card: str,
) -> Path:
    """Write ``out_dir`` with model.safetensors, config.json and README.md, atomically.

    Args:
        module: the module (its ``state_dict()`` is written with its own keys) or a state dict.
        out_dir: new, empty, or a previous export (replaced as a whole).
        config: JSON-able values that rebuild the network and the data normalisation.
        model_card: the README.md text.

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    state = module.state_dict() if isinstance(module, nn.Module) else module
    config_text = json.dumps(_jsonable(dict(config), "config"), indent=2) + "\n"
    tmp = temp_folder(out_dir)  # the folder is shared like its files (mkdtemp would make it 0700)
    try:
        save_state(state, tmp / "model.safetensors")
        (tmp / "config.json").write_text(config_text, encoding="utf-8")
        (tmp / "README.md").write_text(model_card, encoding="utf-8")
        if out_dir.exists():
            old = tmp.with_suffix(".old")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("exported %d tensors to %s", len(state), out_dir)
    return out_dir


def push_to_hub(folder: Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload ``folder`` to the model repo ``repo_id`` (created if needed); returns the commit URL.

    The token is ``token``, else ``HF_TOKEN``, else the one stored by ``hf auth login``.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if hub_offline():
        raise CheckpointError(f"cannot push {folder} to {repo_id!r}: HF_HUB_OFFLINE is set")
    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise CheckpointError(
            f"pushing {folder} to {repo_id!r} needs a Hugging Face token: set HF_TOKEN or run 'hf auth login'"
        )
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="Upload ImLatent export"
        )
    except HfHubHTTPError as err:
        raise CheckpointError(f"push of {folder} to {repo_id!r} failed: {first_line(err)}") from err
    return str(getattr(commit, "commit_url", commit))


# --------------------------------------------------------------------------------------------------- config


def read_resolved_yaml(path: Path) -> dict[str, Any]:
    """The ``resolved_config.yaml`` a run writes (sections script, hparams, config, datajson)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"resolved config {path} cannot be read: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"resolved config {path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict) or any(key not in data for key in RESOLVED_SECTIONS):
        found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"resolved config {path}: expected keys {', '.join(RESOLVED_SECTIONS)}; found {found}")
    for key in RESOLVED_SECTIONS[1:]:
        if not isinstance(data[key], dict):
            raise ConfigError(f"resolved config {path}: {key!r} must be a mapping, found {type(data[key]).__name__}")
    return data


def _is_local_path(key: str, value: Any) -> bool:
    """A setting that names a file or folder of the training machine: by its key, or by a value that is an absolute,
    home or dot-relative path, or a relative path with a separator that exists here."""
    if not isinstance(value, str) or not value.strip():
        return False
    if key in LOCAL_PATH_KEYS or key.endswith(LOCAL_PATH_SUFFIXES):
        return True
    if os.path.isabs(value) or value.startswith(("~", "./", "../", ".\\", "..\\")):
        return True
    return ("/" in value or "\\" in value) and os.path.exists(value)


def _scrub(value: Any, name: str, dropped: list[str]) -> Any:
    """``value`` without local file-system paths at any depth (they would leak into a public repo); the dotted names
    of what was removed are appended to ``dropped``."""
    if isinstance(value, Mapping):
        kept = {}
        for key, item in value.items():
            if _is_local_path(str(key), item):
                dropped.append(f"{name}.{key}")
            else:
                kept[key] = _scrub(item, f"{name}.{key}", dropped)
        return kept
    if isinstance(value, list | tuple):
        items = []
        for index, item in enumerate(value):
            if _is_local_path("", item):
                dropped.append(f"{name}[{index}]")
            else:
                items.append(_scrub(item, f"{name}[{index}]", dropped))
        return items
    return value


def _shape_list(value: Any) -> list[int] | Any:
    if isinstance(value, str) and value.strip():
        try:
            return [int(v) for v in value.split(",")]
        except ValueError:
            return value
    return list(value) if isinstance(value, list | tuple) else value


def hf_config(resolved: Mapping[str, Any], state: Mapping[str, Tensor] | None = None) -> dict[str, Any]:
    """config.json content of a run: flat architecture keys (as the published repos have them), the data
    normalisation, and the run's resolved sections (local paths removed) under ``imlatent``."""
    script = resolved["script"]
    hparams, config = resolved["hparams"], resolved["config"]
    model = config.get("model", {}) if isinstance(config.get("model"), Mapping) else {}
    diffae = model.get("DiffAE", {}) if isinstance(model.get("DiffAE"), Mapping) else {}
    # every executor runs only its own taskID (the runner refuses others), so the script names it
    flat: dict[str, Any] = {"model_type": MODEL_TYPES.get(script, script), "taskID": SCRIPTS.get(script)}
    for key in ("is3D", "in_channels", "out_channels", "modelID"):
        if key in hparams:
            flat[key] = bool(hparams[key]) if key == "is3D" else hparams[key]
    if "input_shape" in hparams:
        flat["input_shape"] = _shape_list(hparams["input_shape"])
    if "latent_dim" in model:
        flat["latent_dim"] = model["latent_dim"]
    if script == "diffae":
        flat.update({k: v for k, v in diffae.items() if k in ("net_ch", "sample_size")})
        if state is not None and "x_T" in state:
            flat["sample_size"] = int(state["x_T"].shape[0])
    flat["normalisation"] = {key: hparams[key] for key in NORMALISATION_KEYS if key in hparams}
    dropped: list[str] = []
    flat["imlatent"] = {
        "script": script,
        "hparams": _scrub(hparams, "hparams", dropped),
        "config": _scrub(config, "config", dropped),
        "datajson": _scrub(resolved["datajson"], "datajson", dropped),
        "dropped_local_paths": dropped,
    }
    return flat


# --------------------------------------------------------------------------------------------------- card


def model_card(config: Mapping[str, Any], repo_id: str | None = None, description: str = "") -> str:
    """README.md for an export: task, data layout, input shape, latent size, normalisation and how to load it."""
    model_type = config.get("model_type", "ImLatent model")
    is3d = bool(config.get("is3D", True))
    shape = config.get("input_shape", "?")
    channels = config.get("in_channels", "?")
    norm = config.get("normalisation", {})
    norm_text = ", ".join(f"{k}={v}" for k, v in norm.items()) if norm else "see config.json"
    script = "main_diffAE.py" if model_type == "DiffAE" else "main_recon.py"
    where = repo_id or "<this folder or org/name>"
    layout = "(C, D, H, W): depth/time D, kept at every level" if is3d else "(C, H, W)"
    tags = ["imlatent", "mri", "3d" if is3d else "2d", "diffusion-autoencoder" if model_type == "DiffAE" else "vae"]
    lines = [
        "---",
        "library_name: imlatent",
        "tags:",
        *[f"- {tag}" for tag in tags],
        "---",
        "",
        f"# {repo_id.split('/')[-1] if repo_id else model_type}",
        "",
        description
        or f"{model_type} trained with the ImLatent pipeline for unsupervised latent representations of MRI.",
        "",
        "| | |",
        "|---|---|",
        f"| task | unsupervised representation learning (taskID {config.get('taskID', '?')}, {model_type}) |",
        f"| data layout | {'3D' if is3d else '2D'} input tensor {layout} |",
        f"| input shape | {channels} x {shape} |",
        f"| latent size | {config.get('latent_dim', '?')} |",
        f"| normalisation | {norm_text} |",
        "",
        "Files: `model.safetensors` (the engine's state dict: `net.*`, `ema_net.*`, `x_T` for DiffAE), "
        "`config.json` (architecture, normalisation and the resolved run configuration).",
        "",
        "## Load with ImLatent",
        "",
        "No repository code is executed: the weights are read from safetensors into a model built by ImLatent.",
        "",
        "```bash",
        f"python Executors/{script} --load_hf {where} --run_mode 2 --datajson_path <dataNpath.json>",
        "```",
        "",
        "```python",
        "from Engineering.hub import load_into",
        f'report = load_into(engine, "{where}", expected_config={{"latent_dim": {config.get("latent_dim")}}})',
        "```",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- runs


def run_checkpoint(run_dir: Path, load_best: bool, trust: TrustedFiles = NO_TRUST) -> Path:
    """The run's checkpoint, chosen (and checked under the pickle policy) as ``--resume [--load_best]`` does."""
    return select_checkpoint(Path(run_dir), load_best, trust)


def export_run(
    run_dir: Path,
    out_dir: Path,
    load_best: bool = False,
    repo_id: str | None = None,
    private: bool = False,
    trust: TrustedFiles = NO_TRUST,
) -> Path:
    """Export a finished run (its checkpoint's state dict as the engine has it) and optionally push it.

    The checkpoint is read under the pickle policy: weights only unless ``trust`` (``--trust_checkpoint``) covers it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--run_dir {run_dir} is not a folder (expected <save_path>/<run_name>)")
    resolved = read_resolved_yaml(run_dir / "resolved_config.yaml")
    checkpoint = run_checkpoint(run_dir, load_best, trust)
    state = read_state_dict(checkpoint, trust=trust)
    config = hf_config(resolved, state)
    config["imlatent"]["checkpoint"] = checkpoint.name
    folder = export_hf_folder(state, Path(out_dir), config, model_card(config, repo_id))
    if repo_id:
        log.info("pushed to %s", push_to_hub(folder, repo_id, private=private))
    return folder
