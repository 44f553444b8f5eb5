"""The optimiser plan of a pythae model: which parameters each optimiser owns, and its loss."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimiserGroup:
    """One optimiser's share of the station.

    Attributes:
        name: short name (``model``, ``autoencoder``, ``encoder``, ``decoder``, ``discriminator``).
        module_paths: dotted paths relative to the station (``model.encoder`` …), as in the original's
            ``model_optims``; empty for the single-optimiser case (all parameters).
        loss_key: the ``ModelOutput`` key this optimiser's backward uses.
        monitor: the original's ``loss_optims`` name (``val_loss`` for one optimiser).
        update_flag: ``ModelOutput`` key of a bool that switches this group off for a step (VAEGAN, RAE_L2).
    """

    name: str
    module_paths: tuple[str, ...]
    loss_key: str
    monitor: str
    update_flag: str | None = None
