"""DiffAE attention through scaled_dot_product_attention, the original formula kept as ``attention: math``,
and activation checkpointing (``grad_checkpoint``): same function, same state dict, inputs the fused kernels take."""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.diffae import build_diffae_net
from Engineering.warp_drives.diffae.blocks import AttentionBlock, ResBlock
from tests.tiny_diffae import CASES, tiny_config


def _block(mode: str, channels: int = 16) -> AttentionBlock:
    torch.manual_seed(0)
    block = AttentionBlock(channels, group_limit=8, mode=mode)
    with torch.no_grad():
        block.proj_out.weight.normal_(0, 0.2)  # zero-initialised: make the attention path count
    return block


@pytest.mark.parametrize("spatial", [(6, 5), (3, 4, 5)], ids=["2d", "3d"])
def test_sdpa_equals_math_forward_and_backward(spatial):
    math_block, sdpa_block = _block("math"), _block("sdpa")
    sdpa_block.load_state_dict(math_block.state_dict())
    x = torch.randn(2, 16, *spatial, requires_grad=True)
    y_math = math_block(x)
    (g_math,) = torch.autograd.grad(y_math.square().sum(), x)
    y_sdpa = sdpa_block(x)
    (g_sdpa,) = torch.autograd.grad(y_sdpa.square().sum(), x)
    assert y_sdpa.shape == x.shape
    torch.testing.assert_close(y_sdpa, y_math, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_sdpa, g_math, rtol=0, atol=1e-4)
    assert not torch.equal(y_sdpa, x)  # the attention path was exercised


def test_sdpa_inputs_are_what_the_fused_kernels_take():
    """One head (B, 1, T, C), last dimension contiguous, the input dtype, no mask: no math fallback on GPU."""
    block = _block("sdpa", channels=32)
    for dtype, ctx in ((torch.float32, torch.no_grad()), (torch.bfloat16, torch.autocast("cpu", torch.bfloat16))):
        x = torch.randn(2, 32, 4 * 5, dtype=torch.float32)
        with ctx:
            q, k, v = block.sdpa_inputs(x)
        for t in (q, k, v):
            assert t.shape == (2, 1, 20, 32)
            assert t.stride(-1) == 1
            assert t.dtype == dtype
        # flash kernel head-dimension rule: multiple of 8, at most 256 (true for every DiffAE width net_ch*mult)
        assert q.shape[-1] % 8 == 0 and q.shape[-1] <= 256


def test_modes_share_the_state_dict_and_math_is_selectable():
    nets = {m: build_diffae_net(tiny_config(True, (2, 32, 32), attention=m)) for m in ("sdpa", "math")}
    assert [(k, v.shape) for k, v in nets["sdpa"].state_dict().items()] == [
        (k, v.shape) for k, v in nets["math"].state_dict().items()
    ]
    modes = {m: {b.mode for b in net.modules() if isinstance(b, AttentionBlock)} for m, net in nets.items()}
    assert modes == {"sdpa": {"sdpa"}, "math": {"math"}}


def test_attention_mode_is_validated():
    with pytest.raises(ConfigError, match="attention must be one of sdpa, math, got 'flash'"):
        tiny_config(False, (32, 32), attention="flash")


@pytest.mark.parametrize("is3D, shape", CASES, ids=["2d", "3d"])
def test_grad_checkpoint_gives_the_same_loss_and_gradients(is3D, shape):
    """Dropout is on (0.1 by default) and train mode: checkpointing replays the RNG, so results are identical."""
    plain = build_diffae_net(tiny_config(is3D, shape)).train()
    ckpt = build_diffae_net(tiny_config(is3D, shape, grad_checkpoint=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    flags = {m.grad_checkpoint for m in ckpt.modules() if isinstance(m, (ResBlock, AttentionBlock))}
    assert flags == {True}
    x = torch.rand(2, 1, *shape) * 2 - 1
    t = torch.tensor([5, 700])
    grads, saved = [], []
    for net in (plain, ckpt):
        torch.manual_seed(3)
        count = [0]

        def pack(t: torch.Tensor, count=count) -> torch.Tensor:
            count[0] += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = net(torch.randn_like(x), t, x_start=x).square().mean() + net.encode(x).square().mean()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
        saved.append(count[0])
    assert saved[1] < saved[0] / 3  # the blocks' activations were not kept for backward
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
