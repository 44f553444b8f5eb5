"""The DiffAE shape rule is the network's own: every shape the network can take is accepted, no other.

The rule (shapes.py) is checked against the built network by brute force, non-square and non-power-of-two crops
build and train a step through the real executor parser, and their state dicts match a square crop of the same
``max(input_shape)`` (attention placement follows that maximum, docs/differences.md D7).
"""

from __future__ import annotations

import pytest
import torch

from Engineering.configuration import resolve
from Engineering.engines.runner import build_engine
from Engineering.errors import ConfigError
from Engineering.warp_drives.diffae import DiffAEConfig, build_diffae_net
from Engineering.warp_drives.diffae.shapes import axis_rule, check_input_shape

SMALL = ["--model§latent_dim", "4", "--model§DiffAE§net_ch", "4", "--model§DiffAE§net_num_res_blocks", "1"]


def _net_takes(net: torch.nn.Module, size: int) -> bool:
    x = torch.rand(1, 1, size, 32)
    try:
        with torch.no_grad():
            out = net(x, torch.tensor([5]), x_start=x)
    except RuntimeError:
        return False
    return out.shape == x.shape


@pytest.mark.parametrize(
    "mults",
    [{}, {"net_ch_mult": [1, 2], "net_enc_channel_mult": [1, 2, 2]}, {"net_enc_channel_mult": [1, 2]}],
    ids=["template", "short-unet", "short-encoder"],
)
def test_rule_accepts_exactly_the_sizes_the_network_takes(mults):
    cfg = DiffAEConfig.from_run(
        is3D=False,
        in_channels=1,
        out_channels=1,
        input_shape=(64, 64),
        latent_dim=4,
        batch_size=1,
        fp16=False,
        yaml_overrides={"net_ch": 4, "net_num_res_blocks": 1, "net_enc_num_res_blocks": 1, **mults},
    )
    net = build_diffae_net(cfg).eval()  # the real size never changes the layers, only the nominal counter does
    rule = axis_rule(cfg.net_ch_mult, cfg.net_enc_channel_mult)
    taken = [s for s in range(1, 70) if _net_takes(net, s)]
    assert taken == [s for s in range(1, 70) if rule.accepts(s)]
    assert taken  # the sweep found working sizes at all


@pytest.mark.parametrize("shape", [(10, 32, 48), (10, 80, 96), (10, 112, 144), (7, 160, 96), (3, 48, 64)])
def test_crops_the_original_accepts_are_accepted(shape):
    check_input_shape(shape, True, True, (1, 1, 2, 3, 4), (1, 1, 2, 3, 4, 4))


@pytest.mark.parametrize(
    "shape, nearest",
    [
        ((10, 40, 50), "nearest valid shapes: 10,32,48 or 10,48,64"),
        ((10, 16, 32), "nearest valid shape: 10,32,32"),
        ((100, 60), "nearest valid shapes: 96,48 or 112,64"),
    ],
)
def test_a_shape_the_network_cannot_take_names_the_nearest_valid_ones(shape, nearest):
    with pytest.raises(ConfigError) as err:
        check_input_shape(shape, len(shape) == 3, True, (1, 1, 2, 3, 4), (1, 1, 2, 3, 4, 4))
    message = str(err.value)
    assert "\n" not in message and message.endswith(nearest)
    assert "multiple of 16" in message and "at least 32" in message


def test_depth_is_checked_when_it_is_resampled():
    check_input_shape((7, 32, 32), True, True, (1, 1, 2, 3, 4), (1, 1, 2, 3, 4, 4))
    with pytest.raises(ConfigError, match="axis 0 \\(7\\).*nearest valid shape: 32,32,32"):
        check_input_shape((7, 32, 32), True, False, (1, 1, 2, 3, 4), (1, 1, 2, 3, 4, 4))


def _engine(shape: tuple[int, ...]):
    argv = ["--is3D", str(int(len(shape) == 3)), "--input_shape", ",".join(map(str, shape))]
    argv += ["--batch_size", "1", "--ampmode", "32", "--accelerator", "cpu", *SMALL]
    rc = resolve("diffae", argv)
    return build_engine(rc.cfg)


def _layout(engine) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every tensor; x_T's shape is the input shape by definition, so only its key counts."""
    return [(k, () if k == "x_T" else tuple(v.shape)) for k, v in engine.state_dict().items()]


def _square(shape: tuple[int, ...]) -> tuple[int, ...]:
    m = max(shape)
    return (shape[0], m, m) if len(shape) == 3 else (m, m)


@pytest.mark.parametrize(
    "shape", [(10, 32, 48), (10, 80, 112), (10, 32, 64), (64, 32, 48), (96, 144), (160, 112), (80, 96)]
)
def test_state_dict_matches_a_square_crop_of_the_same_max(shape):
    engine = _engine(shape)
    assert _layout(engine) == _layout(_engine(_square(shape)))
    assert engine.x_T.shape[2:] == shape


def _levels(shape: tuple[int, ...]) -> list[int]:
    run = dict(is3D=True, in_channels=1, out_channels=1, latent_dim=4, batch_size=1, fp16=False)
    return DiffAEConfig.from_run(**run, input_shape=shape, yaml_overrides={}).attention_levels()


def test_attention_follows_max_of_all_axes():
    # max 64 puts "resolution 16" attention at UNet level 2; the in-plane maximum 32 alone would put it at level 1
    assert _levels((64, 32, 32)) == [2]
    assert _levels((10, 32, 32)) == [1]
    assert _levels((50, 128, 128)) == [3]  # the published model
    assert _levels((10, 80, 112)) == []  # 112, 56, 28, 14, 7: never 16
    assert _layout(_engine((64, 32, 32))) != _layout(_engine((10, 32, 32)))


def _train_one_step(shape: tuple[int, ...]) -> float:
    torch.manual_seed(0)
    engine = _engine(shape)
    optimiser = engine.configure_optimizers()
    x = torch.rand(1, 1, *shape) * 2 - 1
    before = [p.detach().clone() for p in engine.net.parameters()]
    loss = engine.training_step({"inp": {"data": x}}, 0)
    loss.backward()
    optimiser.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, engine.net.parameters(), strict=True))
    assert torch.isfinite(loss) and changed > 0
    return float(loss.detach())


@pytest.mark.parametrize("shape", [(96, 144), (160, 112), (80, 96), (112, 48)])
def test_non_power_of_two_crops_train_a_step_2d(shape):
    _train_one_step(shape)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(10, 80, 112), (10, 32, 48)])
def test_non_square_crops_train_a_step_3d(shape):
    _train_one_step(shape)
