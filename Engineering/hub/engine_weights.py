"""Loading a run's checkpoint (``--resume``, ``--load_best``, ``--load_model_4test``) or ``--preweights_path`` into an
engine, through the one reading policy (:mod:`Engineering.pickle_policy`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from torch import Tensor, nn

from Engineering.hub.loading import match_state_dict, read_state_dict
from Engineering.pickle_policy import NO_TRUST, TrustedFiles

log = logging.getLogger("imlatent")


def load_weights_into(engine: nn.Module, path: Path, trust: TrustedFiles = NO_TRUST) -> None:
    """Load a checkpoint file, weight file or DeepSpeed checkpoint folder into ``engine`` (strict keys).

    One wrapper prefix is stripped if needed, and the shape-bound ``x_T`` buffer is replaced by the engine's own
    when its shape differs (another input_shape or sample_size).

    Raises:
        CheckpointError: unreadable, keys or shapes that do not fit; UnsafePickleError for a file the policy refuses.
    """
    _load_state(engine, read_state_dict(Path(path), trust=trust), path)


def _load_state(engine: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    matched = match_state_dict(engine.state_dict(), state, shape_flexible={"x_T"})
    engine.load_state_dict(matched.state, strict=True)
    log.info("Loaded weights from %s%s", path, f" (replaced {', '.join(matched.replaced)})" if matched.replaced else "")


def load_pretrained_weights(engine: nn.Module, path: Path, trust: TrustedFiles = NO_TRUST) -> None:
    """--preweights_path: a checkpoint of this pipeline (keys net.*), or a bare network state dict as the original
    loaded it into ``engine.net`` (and ``engine.ema_net`` when the engine has one)."""
    state = read_state_dict(Path(path), trust=trust)
    net = cast(nn.Module, engine.net)
    if set(state) == set(net.state_dict()):
        net.load_state_dict(state, strict=True)
        if hasattr(engine, "ema_net"):
            cast(nn.Module, engine.ema_net).load_state_dict(state, strict=True)
        log.info("Loaded network weights from %s", path)
        return
    _load_state(engine, state, path)
