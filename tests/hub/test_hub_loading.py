"""Weight sources, reading and key/shape matching of Engineering.hub.loading (CPU, tiny, offline)."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from Engineering.errors import CheckpointError
from Engineering.hub import (
    TrustedFiles,
    UnsafePickleError,
    load_into,
    match_state_dict,
    read_state_dict,
    resolve_weights_source,
)
from Engineering.hub.loading import WRAPPER_PREFIXES

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class TinyEngine(nn.Module):
    """Same layout as the DiffAE engine: ``net.*``, ``ema_net.*`` and the ``x_T`` buffer."""

    def __init__(self, sample_size: int = 2, input_shape: tuple[int, ...] = (4, 4)) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2))
        self.ema_net = copy.deepcopy(self.net)
        self.register_buffer("x_T", torch.randn(sample_size, 1, *input_shape))


def _state(**kw) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in TinyEngine(**kw).state_dict().items()}


def _assert_loaded(module: nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    for key, value in module.state_dict().items():
        if key not in skip:
            assert torch.equal(value, state[key]), key


def _hf_cache(root: Path, repo: str = "org/name", files: dict[str, object] | None = None) -> Path:
    """A pre-filled Hub cache in huggingface_hub's layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    for name, content in (files or {}).items():
        if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
            save_file(content, str(snapshot / name))
        else:
            (snapshot / name).write_text(json.dumps(content))
    return snapshot


@pytest.fixture
def offline_hf_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


# --------------------------------------------------------------------------------------------------- matching


def test_exact_keys_load(tmp_path):
    state = _state()
    save_file(state, str(tmp_path / "model.safetensors"))
    module = TinyEngine()
    report = load_into(module, tmp_path)
    _assert_loaded(module, state)
    assert report.prefix == "" and report.replaced == () and report.source.name == "model.safetensors"


@pytest.mark.parametrize("prefix", [p for p in WRAPPER_PREFIXES if p not in ("", "net.", "_orig_mod.")])
def test_each_wrapper_prefix_is_stripped(prefix):
    state = _state()
    matched = match_state_dict(TinyEngine().state_dict(), {prefix + k: v for k, v in state.items()})
    assert matched.prefix == prefix
    assert set(matched.state) == set(state)


def test_net_prefix_loads_a_run_checkpoint_into_the_bare_network():
    net = TinyEngine().net
    state = {f"net.{k}": v for k, v in TinyEngine().net.state_dict().items()}
    matched = match_state_dict(net.state_dict(), state)
    assert matched.prefix == "net." and set(matched.state) == set(net.state_dict())


@pytest.mark.parametrize("where", ["outer", "inner"])
def test_compiled_orig_mod_keys(where):
    state = _state()
    if where == "outer":
        compiled = {f"_orig_mod.{k}": v for k, v in state.items()}
    else:
        compiled = {k.replace("net.", "net._orig_mod.", 1) if "net." in k else k: v for k, v in state.items()}
    matched = match_state_dict(TinyEngine().state_dict(), compiled)
    assert matched.compiled and matched.prefix == "" and set(matched.state) == set(state)


def test_compiled_keys_under_a_wrapper_prefix():
    state = {f"model._orig_mod.{k}": v for k, v in _state().items()}
    matched = match_state_dict(TinyEngine().state_dict(), state)
    assert matched.compiled and matched.prefix == "model."


def test_x_T_shape_is_replaced_by_the_module_buffer(tmp_path):
    state = _state(sample_size=3, input_shape=(6, 6))
    torch.save(state, tmp_path / "weights.pt")
    module = TinyEngine()
    own_x_T = module.x_T.clone()
    report = load_into(module, tmp_path / "weights.pt")
    assert report.replaced == ("x_T",)
    assert torch.equal(module.x_T, own_x_T)
    _assert_loaded(module, state, skip=("x_T",))


def test_x_T_with_shapes_only_target_is_dropped():
    target = {k: v.shape for k, v in TinyEngine().state_dict().items()}
    matched = match_state_dict(target, _state(sample_size=5), {"x_T"})
    assert matched.replaced == ("x_T",) and "x_T" not in matched.state


def test_shape_mismatch_names_key_and_both_shapes():
    state = _state()
    state["net.0.weight"] = torch.zeros(3, 1, 3, 3)
    with pytest.raises(CheckpointError, match=r"'net\.0\.weight': checkpoint \(3, 1, 3, 3\) vs model \(2, 1, 3, 3\)"):
        match_state_dict(TinyEngine().state_dict(), state, {"x_T"})


def test_x_T_is_strict_when_not_flexible():
    with pytest.raises(CheckpointError, match=r"'x_T': checkpoint \(3, 1, 4, 4\) vs model \(2, 1, 4, 4\)"):
        match_state_dict(TinyEngine().state_dict(), _state(sample_size=3), shape_flexible=())


def test_key_mismatch_lists_prefixes_counts_and_examples():
    state = {f"encoder.{k}": v for k, v in _state().items()}
    with pytest.raises(CheckpointError) as err:
        match_state_dict(TinyEngine().state_dict(), state)
    message = str(err.value)
    assert "'model.', 'module.', '_orig_mod.'" in message and "'model.model.'" in message
    assert "9 missing keys (e.g. ema_net.0.bias, ema_net.0.weight, ema_net.1.bias)" in message
    assert "9 unexpected keys (e.g. encoder.ema_net.0.bias" in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------------- reading


def test_weights_only_refuses_pickled_objects_unless_trusted(tmp_path):
    state = _state()
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(UnsafePickleError, match=r"run\.ckpt holds pickled objects .*\(argparse\.Namespace\); refused"):
        read_state_dict(path)
    assert set(read_state_dict(path, trust=TrustedFiles.of(path))) == set(state)
    assert set(read_state_dict(path, trust=TrustedFiles.of(tmp_path))) == set(state)  # a trusted folder covers it
    with pytest.raises(UnsafePickleError):
        read_state_dict(path, trust=TrustedFiles.of(tmp_path / "other.ckpt"))


def test_lightning_checkpoint_state_dict_entry_is_used(tmp_path):
    state = _state()
    torch.save({"epoch": 3, "global_step": 40, "state_dict": state}, tmp_path / "last.ckpt")
    module = TinyEngine()
    load_into(module, tmp_path / "last.ckpt")
    _assert_loaded(module, state)


def test_safetensors_preferred_over_bin(tmp_path):
    good, other = _state(), _state()
    save_file(good, str(tmp_path / "model.safetensors"))
    torch.save(other, tmp_path / "pytorch_model.bin")
    loaded = read_state_dict(tmp_path)
    assert all(torch.equal(loaded[k], good[k]) for k in good)


def test_sharded_safetensors_index(tmp_path):
    state = _state()
    keys = sorted(state)
    shards = {"a.safetensors": keys[:4], "b.safetensors": keys[4:]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(tmp_path / name))
    weight_map = {k: name for name, part in shards.items() for k in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = read_state_dict(tmp_path)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    "shard, message",
    [
        ("../outside.safetensors", r"names the shard '\.\./outside\.safetensors' outside its folder"),
        ("/etc/passwd.safetensors", r"names the shard '/etc/passwd\.safetensors' outside its folder"),
        ("sub/../../x.bin", r"outside its folder"),
        ("model.safetensors.index.json", r"names 'model\.safetensors\.index\.json' as a shard; .* self-reference"),
        ("other.index.json", r"as a shard; shards must be \*\.safetensors or \*\.bin"),
        ("passwd", r"names 'passwd' as a shard"),
        (7, r"shard name 7 is not a file name"),
    ],
)
def test_shard_index_stays_inside_its_folder_and_cannot_recurse(tmp_path, shard, message):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file(_state(), str(tmp_path / "outside.safetensors"))  # a real file the index must not reach
    (folder / "other.index.json").write_text(json.dumps({"weight_map": {"w": "model.safetensors.index.json"}}))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"net.w": shard}}))
    with pytest.raises(CheckpointError, match=message) as caught:
        read_state_dict(folder)
    assert "\n" not in str(caught.value)


def test_non_tensor_entry_is_named(tmp_path):
    torch.save({"net.w": torch.zeros(1), "note": "hello"}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"w\.pt: entry 'note' is a str, expected a tensor"):
        read_state_dict(tmp_path / "w.pt")


def test_corrupt_file_is_one_clear_line(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors file"):
        read_state_dict(tmp_path)


def test_several_candidates_are_ambiguous(tmp_path):
    for name in ("a.pt", "b.pt"):
        torch.save(_state(), tmp_path / name)
    with pytest.raises(CheckpointError, match=r"holds several weight files \(a\.pt, b\.pt\); pass one file"):
        read_state_dict(tmp_path)


# --------------------------------------------------------------------------------------------------- config.json


def _folder_with_config(tmp_path: Path, **config) -> Path:
    save_file(_state(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"latent_dim": 128, "is3D": True, "input_shape": [4, 4], **config})
    )
    return tmp_path


def test_config_json_mismatch_names_key_and_both_values(tmp_path):
    folder = _folder_with_config(tmp_path)
    with pytest.raises(CheckpointError, match=r"config\.json: latent_dim is 128 but the model was configured with 64"):
        load_into(TinyEngine(), folder, expected_config={"latent_dim": 64, "in_channels": 1})


def test_config_json_checked_keys_and_input_shape_warning(tmp_path, caplog):
    folder = _folder_with_config(tmp_path)
    expected = {"latent_dim": 128, "is3D": 1, "input_shape": "6,6", "net_ch": 32}
    report = load_into(TinyEngine(), folder, expected_config=expected)
    assert report.config_checked == ("latent_dim", "is3D", "input_shape")
    assert len(report.config_warnings) == 1 and "input_shape is [4, 4]" in report.config_warnings[0]


# --------------------------------------------------------------------------------------------------- sources


def test_offline_hub_cache_resolves_and_loads(offline_hf_home):
    state = _state()
    snapshot = _hf_cache(offline_hf_home / "hub", files={"model.safetensors": state, "config.json": {"latent_dim": 8}})
    assert resolve_weights_source("org/name") == snapshot
    assert resolve_weights_source(f"org/name@{COMMIT}") == snapshot
    module = TinyEngine()
    report = load_into(module, "org/name@main", expected_config={"latent_dim": 8})
    _assert_loaded(module, state)
    assert report.config_checked == ("latent_dim",)


def test_hf_hub_cache_variable_is_honoured(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    snapshot = _hf_cache(cache, files={"model.safetensors": _state()})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights_source("org/name") == snapshot


def test_unknown_repo_offline_is_a_clear_error(offline_hf_home):
    with pytest.raises(CheckpointError) as err:
        resolve_weights_source("GlastonburyGroup/UKBBLatent_Cardiac_20208_DiffAE3D_L128_S1701@main")
    message = str(err.value)
    assert "'GlastonburyGroup/UKBBLatent_Cardiac_20208_DiffAE3D_L128_S1701' (revision main)" in message
    assert f"not in the Hub cache {offline_hf_home / 'hub'}" in message and "HF_HUB_OFFLINE=1" in message


def test_cached_repo_without_weights(offline_hf_home):
    _hf_cache(offline_hf_home / "hub", files={"config.json": {"latent_dim": 8}})
    with pytest.raises(CheckpointError, match=r"Hub repo 'org/name' \(.*\) holds no weight file"):
        resolve_weights_source("org/name")


def test_revision_given_twice_must_agree(offline_hf_home):
    with pytest.raises(CheckpointError, match=r"names revision 'v1' but revision='v2' was given"):
        resolve_weights_source("org/name@v1", revision="v2")


def test_missing_local_path_that_is_not_a_repo_id(tmp_path):
    with pytest.raises(CheckpointError, match=r"is neither an existing file or folder nor a Hub repo id"):
        resolve_weights_source(str(tmp_path / "nope" / "weights.pt"))


def test_local_folder_without_weights(tmp_path):
    with pytest.raises(CheckpointError, match=r"holds no weight file: expected \*\.safetensors"):
        resolve_weights_source(tmp_path)
