"""Golden tests: the rebuilt DiffAE against tensors produced by the original ImLatent code (tests/data/golden).

Tolerances are those of tests/data/golden/README.md (``config.json["tolerances_suggested"]``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from Engineering.science.diffusion import GaussianDiffusion, space_timesteps
from Engineering.warp_drives.diffae import DiffAEConfig, build_diffae_net

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
TSV = Path(__file__).resolve().parents[1] / "data" / "diffae3d_L128_ch32_statedict.tsv"
CASES = ["diffae_2d_small", "diffae_3d_small"]


def _cli_value(cli: list[str], flag: str) -> str:
    return cli[cli.index(flag) + 1]


def config_from_golden(cfg_json: dict) -> DiffAEConfig:
    """Resolve the DiffAE config from the CLI recorded in a golden ``config.json``."""
    cli = cfg_json["cli"]
    yaml_overrides = {"net_ch": 8, "sample_every_batches": 1000, "sample_size": 4}  # config_v1.yaml + CLI
    yaml_overrides.update(
        {flag.split("§")[-1]: int(_cli_value(cli, flag)) for flag in cli if flag.startswith("--model§DiffAE§")}
    )
    return DiffAEConfig.from_run(
        is3D=bool(int(_cli_value(cli, "--is3D"))),
        in_channels=int(_cli_value(cli, "--in_channels")),
        out_channels=int(_cli_value(cli, "--out_channels")),
        input_shape=tuple(int(s) for s in _cli_value(cli, "--input_shape").split(",")),
        latent_dim=int(_cli_value(cli, "--model§latent_dim")),
        batch_size=int(_cli_value(cli, "--batch_size")),
        fp16=_cli_value(cli, "--ampmode") not in {"32", "32-true"},
        yaml_overrides=yaml_overrides,
        test_with_TEval="--no-test_with_TEval" not in cli,
    )


class _LightningLayout(nn.Module):
    """The engine's state-dict layout: own buffer ``x_T`` first, then ``net.*`` and ``ema_net.*``."""

    def __init__(self, cfg: DiffAEConfig) -> None:
        super().__init__()
        self.register_buffer("x_T", torch.zeros(cfg.sample_size, cfg.in_channels, *cfg.input_shape))
        self.net = build_diffae_net(cfg)
        self.ema_net = build_diffae_net(cfg)


def minmax_zscore(x_raw: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max over all elements, then (u - 0.5) / 0.5 as two float32 operations."""
    dims = list(range(1, x_raw.ndim))
    lo, hi = x_raw.amin(dim=dims, keepdim=True), x_raw.amax(dim=dims, keepdim=True)
    u = (x_raw - lo) / (hi - lo + torch.finfo(torch.float32).eps)
    return (u - 0.5) / 0.5


@pytest.fixture(scope="module", params=CASES)
def golden(request) -> dict:
    """Build + strictly load the network of one case, then compute every compared tensor once."""
    folder = GOLDEN / request.param
    cfg_json = json.loads((folder / "config.json").read_text())
    cfg = config_from_golden(cfg_json)
    weights = load_file(folder / "weights.safetensors")
    full = {k: v.float() for k, v in weights.items()}
    full.update({"ema_net." + k[4:]: v.float() for k, v in weights.items() if k.startswith("net.")})
    engine = _LightningLayout(cfg)
    engine.load_state_dict(full, strict=True)
    net = engine.ema_net.eval()
    io = load_file(folder / "io.safetensors")
    diffusion = GaussianDiffusion.from_config(cfg)
    x, t, noise = io["x_norm"], io["t"], io["noise"]
    with torch.no_grad():
        losses = diffusion.training_losses(net, x, t, noise=noise)
        z_sem = net.encode(x)
        inv = diffusion.ddim_reverse_sample_loop(net, x, z_sem, cfg.T_inv, return_trajectory=True)
        dec = diffusion.ddim_sample_loop(net, inv.sample, z_sem, cfg.T_step, return_trajectory=True)
    ours = {
        "x_t": diffusion.q_sample(x, t, noise),
        "eps_pred": losses["model_output"],
        "loss_per_sample": losses["loss"],
        "loss": losses["loss"].mean(),
        "pred_x0_train": losses["pred_xstart"],
        "z_sem": z_sem,
        "ddim_inv_traj": inv.xs,
        "ddim_inv_pred_x0": inv.pred_xstarts,
        "x_T_inv": inv.sample,
        "ddim_dec_traj": dec.xs,
        "ddim_dec_pred_x0": dec.pred_xstarts,
        "x0_rec": dec.sample,
        "recon01": (dec.sample + 1) / 2,
    }
    return {"cfg": cfg, "json": cfg_json, "engine": engine, "io": io, "ours": ours}


def _max_mean(golden: dict, name: str) -> tuple[float, float]:
    err = (golden["ours"][name] - golden["io"][name]).abs()
    return err.max().item(), err.mean().item()


def test_config_matches_recorded_model(golden):
    cfg, model = golden["cfg"], golden["json"]["model"]
    assert (cfg.n_dims, cfg.net_ch, cfg.latent_dim, cfg.img_size) == (
        model["n_dims"],
        model["net_ch"],
        model["latent_dim"],
        model["img_size_nominal"],
    )
    assert cfg.group_norm_limit == model["group_norm_limit"]
    assert (cfg.T_inv, cfg.T_step) == (5, 5)


def test_state_dict_layout_equals_recorded(golden):
    recorded = [(k, tuple(s)) for k, s in golden["json"]["state_dict"]]
    ours = [(k, tuple(v.shape)) for k, v in golden["engine"].state_dict().items()]
    assert ours == recorded
    params = golden["json"]["params"]
    net = golden["engine"].net
    assert sum(p.numel() for p in net.parameters()) == params["per_net"]
    assert sum(p.numel() for p in net.encoder.parameters()) == params["encoder"]


def test_attention_blocks_where_recorded(golden):
    net = golden["engine"].net
    names = sorted(n for n, m in net.named_modules() if type(m).__name__ == "AttentionBlock")
    assert names == sorted(golden["json"]["model"]["attention_blocks"])


def test_normalisation_formula_reproduces_x_norm(golden):
    io = golden["io"]
    assert torch.equal(minmax_zscore(io["x_raw"]), io["x_norm"])


def test_ddim_grids(golden):
    io = golden["io"]
    assert space_timesteps(1000, 5) == io["ddim_inv_timesteps"].tolist() == io["ddim_dec_timesteps"].tolist()


@pytest.mark.parametrize(
    "name, atol",
    [("x_t", 1e-6), ("eps_pred", 1e-5), ("z_sem", 1e-5), ("pred_x0_train", 1e-3)],
)
def test_single_step_tensors(golden, name, atol):
    max_abs, _ = _max_mean(golden, name)
    assert max_abs <= atol, f"{name}: max-abs {max_abs:.3g} > {atol}"


def test_math_attention_matches_the_original_too(golden):
    """``attention: math`` (the original's formula, kept for bit-comparisons) meets the same tolerances."""
    cfg = dataclasses.replace(golden["cfg"], attention="math")
    net = build_diffae_net(cfg).eval()
    net.load_state_dict(golden["engine"].ema_net.state_dict())
    io = golden["io"]
    with torch.no_grad():
        z_sem = net.encode(io["x_norm"])
        losses = GaussianDiffusion.from_config(cfg).training_losses(net, io["x_norm"], io["t"], noise=io["noise"])
    eps = losses["model_output"]
    assert (z_sem - io["z_sem"]).abs().max() <= 1e-5
    assert (eps - io["eps_pred"]).abs().max() <= 1e-5


def test_loss(golden):
    io, ours = golden["io"], golden["ours"]
    np.testing.assert_allclose(ours["loss"].numpy(), io["loss"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours["loss_per_sample"].numpy(), io["loss_per_sample"].numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", ["x_T_inv", "ddim_inv_traj"])
def test_ddim_inversion(golden, name):
    max_abs, _ = _max_mean(golden, name)
    assert max_abs <= 2e-4, f"{name}: max-abs {max_abs:.3g}"


@pytest.mark.parametrize(
    "name, max_tol, mean_tol",
    [
        ("ddim_inv_pred_x0", 5e-3, 1e-4),
        ("ddim_dec_traj", 5e-3, 1e-4),
        ("ddim_dec_pred_x0", 5e-3, 1e-4),
        ("x0_rec", 5e-3, 1e-4),
        ("recon01", 2.5e-3, 5e-5),
    ],
)
def test_ddim_decoding(golden, name, max_tol, mean_tol):
    max_abs, mean_abs = _max_mean(golden, name)
    assert max_abs <= max_tol and mean_abs <= mean_tol, f"{name}: max {max_abs:.3g}, mean {mean_abs:.3g}"


def _tsv_rows() -> list[list[str]]:
    lines = [line.rstrip("\n") for line in TSV.read_text().splitlines() if line and not line.startswith("#")]
    return [line.split("\t") for line in lines[1:]]


def _default_3d_config() -> DiffAEConfig:
    return DiffAEConfig.from_run(
        is3D=True,
        in_channels=1,
        out_channels=1,
        input_shape=(50, 128, 128),
        latent_dim=128,
        batch_size=2,
        fp16=True,
        yaml_overrides={"net_ch": 32, "sample_every_batches": 1000, "sample_size": 4},
    )


def test_default_3d_state_dict_equals_tsv():
    with torch.device("meta"):
        net = build_diffae_net(_default_3d_config())
    rows = _tsv_rows()
    ours = [(k, str(tuple(v.shape)), str(v.numel())) for k, v in net.state_dict().items()]
    assert ours == [(r[0], r[1], r[2]) for r in rows]
    assert len(ours) == 608
    assert sum(p.numel() for p in net.parameters()) == 20_837_473
    assert sum(p.numel() for p in net.encoder.parameters()) == 4_276_032


def test_initialisation_equals_tsv():
    """A narrow net with the default 3D nominal size (128) has the TSV's keys; its ``init`` column must hold."""
    cfg = DiffAEConfig.from_run(
        is3D=True,
        in_channels=1,
        out_channels=1,
        input_shape=(2, 128, 128),
        latent_dim=16,
        batch_size=2,
        fp16=False,
        yaml_overrides={"net_ch": 8},
    )
    torch.manual_seed(0)
    state = build_diffae_net(cfg).state_dict()
    init = {r[0]: (r[3] if len(r) > 3 else "") for r in _tsv_rows()}
    assert list(state) == list(init)
    assert {k for k, v in state.items() if not v.any()} == {k for k, i in init.items() if i in ("zeros", "zeros(GN)")}
    assert {k for k, v in state.items() if bool((v == 1).all())} == {k for k, i in init.items() if i == "ones(GN)"}
