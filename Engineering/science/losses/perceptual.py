"""Perceptual losses: ``--lossID -1`` (the original's in-house networks) and ``-2`` (LPIPS).

Both compare feature maps of a frozen network. The network is kept outside the module tree (unlike the original): it is
never in a state dict or checkpoint, ``.train()`` never reaches it (it stays in eval mode, so BatchNorm statistics
do not drift), and it follows the input to its device on use. Its weights come from files the user has; nothing is
downloaded.

In-house networks (``--ploss_model``; the weights file is ``--ploss_weights``, by default the original's path):

* ``med1ch3D.UNetMSSDS6`` (default): the encoder of a 3-D deep-supervision UNet, filters 64-128-256-512-1024, each
  level 2×[Conv3d k3 p1, BatchNorm3d, ReLU], MaxPool3d 2 between levels; feature blocks Conv1, then [pool, Conv2], …
  up to ``--ploss_level`` (at most 5). Keys ``Conv<i>.conv.{0,1,3,4}.*``.
* ``med1ch2D.UNet``: the encoder of a 2-D UNet (depth 5, wf 6, padding, no BatchNorm): blocks down_path[0], then
  [AvgPool2d 2, down_path[i]] for i = 1..3 (at most 4 levels). Keys ``down_path.<i>.block.{0,2}.*``.

The original's documentation gives the architectures but not the key names of its weight files (their contents
were not available); the names above follow the usual layout of these two published UNets, and a file without them is
refused with the first missing key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from Engineering.errors import ConfigError
from Engineering.pickle_policy import load_pickle
from Engineering.science.losses.ssim import MSSSIMLoss, SSIMLoss

#: --ploss_model -> (spatial dims, maximum levels, default weights path of the original)
PERCEPTUAL_MODELS: dict[str, tuple[int, int, str]] = {
    "med1ch3D.UNetMSSDS6": (3, 5, "pretrained_weights_1ch/VesselSeg_UNet3d_DeepSup.pth"),
    "med1ch2D.UNet": (2, 4, "pretrained_weights_1ch/SimpleU_IXIT2_Base_d1p75_t0_n10_dir01_5depth_L1Loss_best.pth.tar"),
}
FILTERS = (64, 128, 256, 512, 1024)
#: --ploss_type -> feature distance (SSIM modes as 1 − similarity; the original used the similarity itself)
FEATURE_LOSSES: dict[str, type[nn.Module]] = {
    "L1": nn.L1Loss,
    "SSIM3D": SSIMLoss,
    "SSIM2D": SSIMLoss,
    "MultiSSIM": MSSSIMLoss,
}


class _ConvBlock3d(nn.Module):
    """2×[Conv3d k3 p1, BatchNorm3d, ReLU] under ``.conv`` (keys ``conv.{0,1,3,4}``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1),
            nn.BatchNorm3d(cout),
            nn.ReLU(),
            nn.Conv3d(cout, cout, 3, padding=1),
            nn.BatchNorm3d(cout),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _ConvBlock2d(nn.Module):
    """2×[Conv2d k3 p1, ReLU] under ``.block`` (keys ``block.{0,2}``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNetFeatures(nn.Module):
    """The encoder levels of one in-house network; :meth:`blocks` are the loss's feature blocks."""

    def __init__(self, model: str, levels: int) -> None:
        super().__init__()
        self.model = model
        self.dims = PERCEPTUAL_MODELS[model][0]
        widths = [1, *FILTERS[:levels]]
        if self.dims == 3:
            for i in range(levels):
                self.add_module(f"Conv{i + 1}", _ConvBlock3d(widths[i], widths[i + 1]))
        else:
            self.down_path = nn.ModuleList(_ConvBlock2d(widths[i], widths[i + 1]) for i in range(levels))
        self.levels = levels

    def blocks(self) -> list[nn.Module]:
        convs = [getattr(self, f"Conv{i + 1}") for i in range(self.levels)] if self.dims == 3 else list(self.down_path)
        pool: nn.Module = nn.MaxPool3d(2) if self.dims == 3 else nn.AvgPool2d(2)
        return [convs[0], *(nn.Sequential(pool, c) for c in convs[1:])]


def _load_weights(net: nn.Module, path: Path, what: str, file_key: Callable[[str], str] = str) -> None:
    """Load the keys ``net`` needs from ``path`` (a state dict, or a dict with ``state_dict``), pickle-free.

    ``file_key`` maps a key of ``net`` to its name in the file.
    """
    state = load_pickle(path, what=f"{what} weights")  # weights only (the pickle policy)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{what} weights {path} hold no state dict")
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    wanted = {key: file_key(key) for key in net.state_dict()}
    for key, value in net.state_dict().items():
        name = wanted[key]
        if name not in state:
            raise ConfigError(
                f"{what} weights {path} lack {name!r}; expected keys such as {next(iter(wanted.values()))!r}"
            )
        if tuple(state[name].shape) != tuple(value.shape):
            raise ConfigError(
                f"{what} weights {path}: {name!r} has shape {tuple(state[name].shape)}, expected {tuple(value.shape)}"
            )
    net.load_state_dict({key: state[name] for key, name in wanted.items()}, strict=True)


def _freeze(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class _FrozenNetLoss(nn.Module):
    """Holds a frozen network outside the module tree (see the module docstring)."""

    def _set_net(self, net: nn.Module) -> None:
        object.__setattr__(self, "_frozen", _freeze(net))  # not registered: no state dict, no .train()

    def _net_on(self, x: torch.Tensor) -> nn.Module:
        net: nn.Module = self.__dict__["_frozen"]
        first = next(net.parameters())
        if first.device != x.device or first.dtype != x.dtype:
            net.to(device=x.device, dtype=x.dtype)
        return net


class PerceptualLoss(_FrozenNetLoss):
    """``--lossID -1``: sum over feature blocks of ``loss_type(block(x̂), block(x))``, a scalar.

    Inputs (B, C, [D,] H, W); every channel goes through the 1-channel network on its own.
    """

    def __init__(
        self,
        loss_model: str = "med1ch3D.UNetMSSDS6",
        n_level: float = math.inf,
        resize: Sequence[int] | None = None,
        loss_type: str = "L1",
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
        n_channels: int = 1,
        n_dim: int = 3,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if loss_model not in PERCEPTUAL_MODELS:
            raise ConfigError(
                f"--ploss_model {loss_model!r} is not available for --lossID -1; valid: {', '.join(PERCEPTUAL_MODELS)} "
                "(torchvision backbones need a download and are not supported)"
            )
        dims, max_levels, default_path = PERCEPTUAL_MODELS[loss_model]
        if int(n_dim) != dims:
            raise ConfigError(
                f"--ploss_model {loss_model} is {dims}-D but the data are {n_dim}-D; use the {n_dim}-D model"
            )
        if loss_type not in FEATURE_LOSSES:
            raise ConfigError(f"--ploss_type {loss_type!r} is unknown; valid: {', '.join(FEATURE_LOSSES)}")
        levels = max_levels if math.isinf(float(n_level)) else int(n_level)
        if not 1 <= levels <= max_levels:
            raise ConfigError(f"--ploss_level {n_level!r} is invalid for {loss_model}; expected 1..{max_levels} or inf")
        path = Path(weights_path or default_path)
        if not path.is_file():
            raise ConfigError(
                f"--lossID -1 needs the weights of the perceptual network {loss_model}: {path} does not exist; "
                "give the file with --ploss_weights PATH"
            )
        net = UNetFeatures(loss_model, levels)
        _load_weights(net, path, f"--ploss_model {loss_model}")
        self._set_net(net)
        self.loss_func = FEATURE_LOSSES[loss_type]()
        self.resize = tuple(int(s) for s in resize) if resize else None
        # faithful: normalise only when more than one value is given
        self.mean = list(mean) if len(mean) > 1 else None
        self.std = list(std) if len(std) > 1 else None
        self.n_channels = int(n_channels)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None and self.std is not None:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = (x - x.new_tensor(self.mean).view(shape)) / x.new_tensor(self.std).view(shape)
        if self.resize is not None:
            x = F.interpolate(x, size=self.resize, mode="trilinear" if x.ndim == 5 else "bilinear", align_corners=False)
        return x.reshape(-1, 1, *x.shape[2:])  # each channel through the 1-channel network

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net: UNetFeatures = self._net_on(input)  # type: ignore[assignment]
        x_hat, x = self._prepare(input), self._prepare(target)
        loss = input.new_zeros(())
        for level, block in enumerate(net.blocks()):
            if level and min(x.shape[2:]) < 2:
                raise ConfigError(
                    f"--ploss_level: the input {tuple(input.shape[2:])} is too small for level {level + 1} of "
                    f"{net.model} (an axis falls below 2 voxels); use --ploss_level {level}"
                )
            x_hat, x = block(x_hat), block(x)
            loss = loss + self.loss_func(x_hat, x)
        return loss


#: LPIPS trunk -> torchvision's checkpoint file name (IMAGENET1K_V1) in the torch hub cache
LPIPS_TRUNKS = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def trunk_checkpoint(net: str) -> Path:
    """Where torchvision keeps the trunk's ImageNet weights: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_TRUNKS[net]


def _import_lpips() -> Any:
    try:
        import lpips
    except Exception as err:  # noqa: BLE001 - a torchvision that does not match torch fails with RuntimeError
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(
            "--lossID -2 needs the lpips package and a torchvision build that matches your torch "
            f"(pip install 'imlatent[lpips]'); importing it failed: {reason}"
        ) from None
    return lpips


class LPIPSLoss(_FrozenNetLoss):
    """``--lossID -2``: LPIPS (the ``lpips`` package) on inputs in [0, 1], a scalar.

    The calibrated linear layers ship inside the lpips package; the trunk's ImageNet weights are read from the torch
    cache (never downloaded). Grey inputs are repeated to 3 channels; 3-D inputs are compared slice by slice along
    depth. ``net`` is alex (default), vgg or squeeze.
    """

    def __init__(self, net: str = "alex", n_dim: int = 2) -> None:
        super().__init__()
        if net not in LPIPS_TRUNKS:
            raise ConfigError(
                f"--ploss_model {net!r} is not an LPIPS trunk; valid for --lossID -2: {', '.join(LPIPS_TRUNKS)}"
            )
        checkpoint = trunk_checkpoint(net)
        if not checkpoint.is_file():
            raise ConfigError(
                f"--lossID -2 (LPIPS, trunk {net}) needs torchvision's {LPIPS_TRUNKS[net]} in the torch cache: "
                f"{checkpoint} does not exist; copy it there (or point TORCH_HOME at a cache that has it)"
            )
        lpips = _import_lpips()
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)  # random trunk: no download
        # torchvision's features.<i>.* live in lpips's slice<k>.<i>.* (lpips keeps the feature indices as names)
        _load_weights(model.net, checkpoint, f"LPIPS trunk {net}", lambda key: "features." + key.split(".", 1)[1])
        self._set_net(model)
        self.n_dim = int(n_dim)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        model = self._net_on(input)
        if input.ndim == 5:  # (B, C, D, H, W) -> (B·D, C, H, W)
            input, target = (t.transpose(1, 2).reshape(-1, t.shape[1], *t.shape[3:]) for t in (input, target))
        if input.shape[1] == 1:
            input, target = input.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        elif input.shape[1] != 3:
            raise ConfigError(f"LPIPS takes 1 or 3 channels, got {input.shape[1]}")
        return model(input, target, normalize=True).mean()
