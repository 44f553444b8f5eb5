"""Model wrappers of the pythae drive (``--pythae_wrapper_mode``)."""

from __future__ import annotations

from Engineering.warp_drives.pythae.wrappers.lstm import LSTM_WRAPPABLE, LSTMFactorVAE, LSTMOptions

__all__ = ["LSTM_WRAPPABLE", "LSTMFactorVAE", "LSTMOptions"]
