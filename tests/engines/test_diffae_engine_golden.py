"""The DiffAE engine, built through the real executor parser, reproduces the original's golden tensors.

This is the weight-compatibility proof at the LightningModule level: the state dict (x_T, net.*, ema_net.*)
loads strictly, and the test-time inference path (EMA encoder, 5-step DDIM inversion and decoding) gives
the latents and reconstructions that the original wrote to emb.h5 / recon.h5.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from Engineering.configuration import resolve
from Engineering.engines.runner import build_engine

CASES = ["diffae_3d_small", "diffae_2d_small"]


def _engine_and_io(golden_dir, case):
    folder = golden_dir / case
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["cli"][:2] == ["--taskID", "1"]
    argv = cfg["cli"][2:]
    rc = resolve("diffae", argv + ["--accelerator", "cpu"])
    engine = build_engine(rc.cfg)
    stored = load_file(folder / "weights.safetensors")
    state = {k: v.float() for k, v in stored.items()}
    state.update({"ema_net." + k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    engine.load_state_dict(state, strict=True)
    engine.eval()
    return engine, load_file(folder / "io.safetensors"), cfg


@pytest.mark.parametrize("case", CASES)
def test_engine_state_dict_layout_matches_the_original(golden_dir, case):
    engine, _, cfg = _engine_and_io(golden_dir, case)
    expected = [(k, tuple(s)) for k, s in cfg["state_dict"]]
    got = [(k, tuple(v.shape)) for k, v in engine.state_dict().items()]
    assert got == expected


@pytest.mark.parametrize("case", CASES)
def test_engine_inference_reproduces_latents_and_reconstructions(golden_dir, case):
    engine, io, cfg = _engine_and_io(golden_dir, case)
    assert (engine.T_inv, engine.T_step) == (5, 5)
    with torch.no_grad():
        result = engine.infer({"inp": {"data": io["x_norm"]}})
    np.testing.assert_allclose(result.embedding.numpy(), io["z_sem"].numpy(), rtol=0, atol=1e-5)
    diff = (result.recon - io["recon01"]).abs()
    assert diff.max() <= 2.5e-3 and diff.mean() <= 5e-5
    np.testing.assert_array_equal(result.ground_truth.numpy(), ((io["x_norm"] + 1) / 2).numpy())
