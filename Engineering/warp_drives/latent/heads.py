"""The latent head: ``modelID`` 0 is one ``nn.Linear(in_channels, n_outputs)``, −1 the identity.

For regression ``n_outputs`` is the number of phenotype columns; for classification it is the number of classes
(logits). The EMA shadow is a frozen deep copy updated after every training batch with
``t ← decay·t + (1 − decay)·s`` for every ``state_dict`` tensor (buffers included), as in the original.
"""

from __future__ import annotations

from torch import nn

from Engineering.errors import ConfigError

LATENT_MODELS: dict[int, str] = {-1: "identity (debug)", 0: "linear"}


def build_latent_head(model_id: int, in_channels: int, n_outputs: int) -> nn.Module:
    """The head of ``--modelID``: (B, in_channels) → (B, n_outputs)."""
    if in_channels < 1 or n_outputs < 1:
        raise ConfigError(f"latent head sizes in_channels={in_channels}, n_outputs={n_outputs}; expected positive")
    if model_id == 0:
        return nn.Linear(in_channels, n_outputs)
    if model_id == -1:
        if in_channels != n_outputs:
            raise ConfigError(
                f"--modelID -1 (identity) needs --in_channels ({in_channels}) equal to the number of outputs "
                f"({n_outputs})"
            )
        return nn.Identity()
    raise ConfigError(f"--modelID {model_id} is unknown for taskID 2; valid: {LATENT_MODELS}")
