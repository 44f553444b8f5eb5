"""--load_hf end to end, offline: an exported model folder loads by Hub repo id from a local cache, by path,
with a wrapper prefix and as a .bin file, and inference with it gives the model's own latents."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from Engineering.configuration import resolve
from Engineering.data import H5DataModule
from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import build_engine, main
from Engineering.errors import CheckpointError
from Engineering.hub import export_hf_folder
from tests.demo_args import demo_run_args

FRAMES, SIZE = 6, 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    write_demo_dataset(root / "demo_data", n_patients=5, frames=FRAMES, size=SIZE, n_folds=2, seed=5)
    argv = demo_run_args(root / "demo_data", root / "res", FRAMES, SIZE, tensorboard=False) + [
        "--json§foldCSV=0", "--model§latent_dim", "8", "--model§DiffAE§net_ch", "8", "--run_mode", "2", "--test_emb_only",
    ]  # fmt: skip
    return root, argv


def _reference(root: Path, argv: list[str]):
    """A model with random weights, exported as a Hugging Face folder, and its latents computed directly."""
    torch.manual_seed(7)
    rc = resolve("diffae", argv)
    engine = build_engine(rc.cfg).eval()
    dm = H5DataModule.from_config(rc.cfg, merge_train_val=False)
    dm.setup("test")
    latents = {}
    with torch.no_grad():
        for item in dm.test_ds:
            latents[item["key"]] = engine.encode(item["inp"]["data"][None])[0].numpy()
    arch = {
        "is3D": True,
        "in_channels": 1,
        "out_channels": 1,
        "latent_dim": 8,
        "net_ch": 8,
        "input_shape": [FRAMES, SIZE, SIZE],
        "sample_size": 4,
    }
    return engine, latents, arch


def _emb(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def _fake_hub_cache(home: Path, repo: str, folder: Path) -> None:
    """Put an exported folder into the Hub cache layout: models--ORG--NAME/snapshots/REV/ + refs/main."""
    org, name = repo.split("/")
    base = home / "hub" / f"models--{org}--{name}"
    snap = base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(snap.name)


@pytest.mark.slow
def test_load_hf_by_repo_id_offline_by_path_and_wrapped(setup, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    root, argv = setup
    engine, latents, arch = _reference(root, argv)
    export = export_hf_folder(engine, root / "export", arch, "# tiny test model\n")

    home = root / "hf_home"
    _fake_hub_cache(home, "TestOrg/TinyDiffAE", export)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main("diffae", argv + ["--load_hf", "TestOrg/TinyDiffAE", "--output_suffix", "hub"]) == 0

    # local folder, and a .bin with a wrapper prefix ("model.") in another folder
    assert main("diffae", argv + ["--load_hf", str(export), "--output_suffix", "path"]) == 0
    wrapped = root / "wrapped"
    wrapped.mkdir()
    torch.save({"model." + k: v for k, v in engine.state_dict().items()}, wrapped / "pytorch_model.bin")
    assert main("diffae", argv + ["--load_hf", str(wrapped), "--output_suffix", "bin"]) == 0

    (run_dir,) = (root / "res").iterdir()
    for suffix in ("hub", "path", "bin"):
        emb = _emb(run_dir / f"Output_{suffix}" / "emb.h5")
        assert set(emb) == set(latents)
        for key, value in emb.items():
            np.testing.assert_allclose(value[0, 0, 0], latents[key], rtol=0, atol=1e-5)


def test_load_hf_shape_mismatch_is_a_clear_error(setup, monkeypatch, repo_root, tmp_path):
    monkeypatch.chdir(repo_root)
    root, argv = setup
    engine, _, arch = _reference(root, argv)
    export = export_hf_folder(engine, tmp_path / "export", arch, "#\n")
    i = argv.index("--model§latent_dim")
    other = argv[: i + 1] + ["16"] + argv[i + 2 :]
    with pytest.raises(CheckpointError, match="latent_dim is 8 but the model was configured with 16"):
        main("diffae", other + ["--load_hf", str(export)])
