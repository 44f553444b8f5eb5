"""Hugging Face export (folder, config, card, push) and the Executors/export_hf.py CLI (CPU, tiny, offline)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import stat
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from Engineering.errors import CheckpointError, ConfigError, run_guarded
from Engineering.fileio import current_umask
from Engineering.hub import export_hf_folder, hf_config, load_into, model_card, push_to_hub

RESOLVED = {
    "script": "diffae",
    "argv": ["--run_mode", "2"],
    "hparams": {
        "taskID": 1,
        "is3D": 1,
        "in_channels": 1,
        "out_channels": 1,
        "input_shape": "4,4",
        "norm_type": "zscore",
        "zscore_mean": "0.5",
        "zscore_std": "0.5",
        "zscore_prenorm": "minmaxvol",
        "datajson_path": "/home/me/dataNpath.json",
    },
    "config": {"model": {"latent_dim": 8, "DiffAE": {"net_ch": 4, "sample_size": 4}}},
    "datajson": {"datadir": "/data/ukbb", "foldCSV": "./folds.csv", "taskID": 1},
}


class Tied(nn.Module):
    """``net``/``ema_net``/``x_T`` layout plus a weight shared by two keys."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 3)
        self.ema_net = nn.Linear(3, 3)
        self.tied = nn.Linear(3, 3)
        self.tied.weight = self.net.weight
        self.register_buffer("x_T", torch.randn(2, 1, 4, 4))


def _load_cli():
    path = Path(__file__).resolve().parents[2] / "Executors" / "export_hf.py"
    spec = importlib.util.spec_from_file_location("export_hf_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------- folder


def test_export_load_round_trip(tmp_path):
    source = Tied()
    config = hf_config(RESOLVED, source.state_dict())
    out = export_hf_folder(source, tmp_path / "export", config, model_card(config))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder left
    target = Tied()
    report = load_into(target, out, expected_config={"latent_dim": 8, "is3D": True, "input_shape": [4, 4]})
    assert report.config_checked == ("latent_dim", "is3D", "input_shape") and report.replaced == ()
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_shared_and_non_contiguous_tensors_are_written_apart(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "b": base, "t": base.t(), "row": base[1]}
    export_hf_folder(state, tmp_path / "out", {}, "card")
    loaded = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_reexport_replaces_a_previous_export(tmp_path):
    export_hf_folder({"w": torch.zeros(2)}, tmp_path / "out", {"v": 1}, "one")
    export_hf_folder({"w": torch.ones(2)}, tmp_path / "out", {"v": 2}, "two")
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == {"v": 2}
    assert torch.equal(load_file(str(tmp_path / "out" / "model.safetensors"))["w"], torch.ones(2))


def test_export_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"export folder .*out holds other files \(notes\.txt\)"):
        export_hf_folder({"w": torch.zeros(1)}, tmp_path / "out", {}, "card")


def test_non_json_config_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config value config\.model\.act is a ReLU; config\.json needs JSON types"):
        export_hf_folder({"w": torch.zeros(1)}, tmp_path / "out", {"model": {"act": nn.ReLU()}}, "card")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------- config, card


def test_hf_config_flat_keys_normalisation_and_scrubbed_paths():
    config = hf_config(RESOLVED, {"x_T": torch.zeros(2, 1, 4, 4)})
    assert config["model_type"] == "DiffAE" and config["is3D"] is True
    assert config["input_shape"] == [4, 4] and config["latent_dim"] == 8 and config["net_ch"] == 4
    assert config["sample_size"] == 2  # from the stored x_T, not the YAML
    assert config["normalisation"]["zscore_prenorm"] == "minmaxvol"
    assert sorted(config["imlatent"]["dropped_local_paths"]) == [
        "datajson.datadir",
        "datajson.foldCSV",
        "hparams.datajson_path",
    ]
    assert "/home/me" not in json.dumps(config)


def test_model_card_content():
    card = model_card(hf_config(RESOLVED), repo_id="org/UKBB_DiffAE3D_L8")
    assert "# UKBB_DiffAE3D_L8" in card and "| latent size | 8 |" in card and "| input shape | 1 x [4, 4] |" in card
    assert "norm_type=zscore" in card and "zscore_prenorm=minmaxvol" in card
    assert "python Executors/main_diffAE.py --load_hf org/UKBB_DiffAE3D_L8 --run_mode 2" in card


# --------------------------------------------------------------------------------------------------- push


def test_push_needs_a_token(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(CheckpointError, match=r"to 'org/name' needs a Hugging Face token: set HF_TOKEN"):
        push_to_hub(tmp_path, "org/name")


def test_push_refused_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"cannot push .* to 'org/name': HF_HUB_OFFLINE is set"):
        push_to_hub(tmp_path, "org/name", token="hf_x")


def test_push_creates_repo_and_uploads(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["private"], kw["exist_ok"]))

        def upload_folder(self, **kw):
            calls.append(("upload", kw["folder_path"], kw["repo_id"]))
            return argparse.Namespace(commit_url="https://hf.co/org/name/commit/1")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert push_to_hub(tmp_path, "org/name", private=True) == "https://hf.co/org/name/commit/1"
    assert calls == [("token", "hf_env"), ("create", "org/name", True, True), ("upload", str(tmp_path), "org/name")]


# --------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A finished run: resolved_config.yaml and four checkpoints whose ``net.weight`` tells them apart."""
    run = tmp_path / "Results" / "run1"
    ckpts = run / "Checkpoints"
    ckpts.mkdir(parents=True)
    (run / "resolved_config.yaml").write_text(yaml.safe_dump(RESOLVED))
    for tag, name in enumerate(["epoch=3-step=40.ckpt", "epoch=7-step=80.ckpt", "last.ckpt", "last-v2.ckpt"]):
        state = {k: v.clone() for k, v in Tied().state_dict().items()}
        state["net.weight"].fill_(tag)
        torch.save({"state_dict": state, "hyper_parameters": {"lr": 1e-4}}, ckpts / name)
    return run


@pytest.mark.parametrize(("load_best", "tag"), [(True, 1), (False, 3)])
def test_cli_exports_the_selected_checkpoint(run_dir, tmp_path, load_best, tag, capsys):
    out = tmp_path / "hf"
    argv = ["--run_dir", str(run_dir), "--out", str(out)] + (["--load_best"] if load_best else [])
    assert run_guarded(_load_cli().main, argv) == 0
    state = load_file(str(out / "model.safetensors"))
    assert set(state) == {"net.weight", "net.bias", "ema_net.weight", "ema_net.bias", "tied.weight", "tied.bias", "x_T"}
    assert torch.all(state["net.weight"] == tag)
    config = json.loads((out / "config.json").read_text())
    assert config["latent_dim"] == 8 and config["imlatent"]["checkpoint"].startswith(
        "epoch=7" if load_best else "last-v2"
    )
    assert capsys.readouterr().out.strip() == str(out)
    umask = current_umask()
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    for name in ("model.safetensors", "config.json", "README.md"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name  # not safetensors' 0600


def test_cli_refuses_pickled_objects_unless_trusted(run_dir, tmp_path, capsys):
    last = run_dir / "Checkpoints" / "last-v2.ckpt"
    torch.save({"state_dict": Tied().state_dict(), "hyper_parameters": argparse.Namespace(lr=1e-4)}, last)
    argv = ["--run_dir", str(run_dir), "--out", str(tmp_path / "hf")]
    assert run_guarded(_load_cli().main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"imlatent: error: checkpoint {last} holds pickled objects beyond tensors and plain data (argparse.Namespace); "
        f"refused because unpickling it could run code. If you made this file yourself or trust its source, rerun "
        f"with --trust_checkpoint {last}"
    )
    assert not (tmp_path / "hf").exists()
    assert run_guarded(_load_cli().main, [*argv, "--trust_checkpoint", str(run_dir / "Checkpoints")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_cli_missing_resolved_config_is_one_line(run_dir, tmp_path, capsys):
    (run_dir / "resolved_config.yaml").unlink()
    assert run_guarded(_load_cli().main, ["--run_dir", str(run_dir), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imlatent: error: resolved config") and "resolved_config.yaml cannot be read" in err
    assert "\n" not in err


# --------------------------------------------------------------------------------------------------- local paths


@pytest.mark.parametrize(
    "script, extra",
    [
        ("diffae", []),
        ("recon", ["--modelID", "0", "--pythae_model", "vae"]),
        ("recon", ["--modelID", "0", "--pythae_model", "custom_factor_vae"]),
        ("latentcls", []),
    ],
    ids=["DiffAE", "pythae-vae", "pythae-custom", "latent"],
)
def test_an_export_never_carries_the_trainers_local_paths(tmp_path, monkeypatch, repo_root, script, extra):
    """Every family's resolved configuration, with paths in the CLI, the data JSON and a nested YAML key."""
    from Engineering.configuration import resolve, save_resolved
    from Engineering.hub.export import read_resolved_yaml

    monkeypatch.chdir(repo_root)
    (tmp_path / "weights").mkdir()
    argv = [
        "--datajson_path", "Configs/demo/dataNpath_demo.json",
        f"--json§datadir={tmp_path}/data", f"--json§save_path={tmp_path}/Results", "--json§tblog_path=runs/tb",
        "--preweights_path", f"{tmp_path}/pre.ckpt", "--load_hf", str(tmp_path / "weights"),
        "--trust_checkpoint", f"{tmp_path}/pre.ckpt", f"--training§notes§copy_of_data={tmp_path}/copy.h5",
        "--json§DS_extra§sidecar=~/tables/pheno.csv", *extra,
    ]  # fmt: skip
    save_resolved(resolve(script, argv), tmp_path / "resolved_config.yaml")
    config = hf_config(read_resolved_yaml(tmp_path / "resolved_config.yaml"))
    text = json.dumps(config)
    assert str(tmp_path) not in text and "~/tables" not in text and "runs/tb" not in text
    assert str(repo_root) not in text and "Configs/demo" not in text
    dropped = set(config["imlatent"]["dropped_local_paths"])
    assert {"datajson.datadir", "datajson.save_path", "hparams.preweights_path", "hparams.load_hf"} <= dropped
    assert {"config.training.notes.copy_of_data", "datajson.DS_extra.sidecar", "hparams.datajson_path"} <= dropped
    assert config["imlatent"]["datajson"]["run_prefix"] == "demo"  # what is not a path stays
