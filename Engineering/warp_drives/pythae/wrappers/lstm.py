"""LSTM wrapper (``--pythae_wrapper_mode 1``): a FactorVAE over a time series of frames.

The input is ``(B, T·C, *spatial)``: T time points stacked in the channel axis, C = ``in_channels`` per frame.
Each frame is encoded on its own (encoder latent ``L·f``, f = ``lstm_im_encode_factor``); two LSTMs turn the
per-frame μ and log σ² sequences into a sequence posterior (hidden size L, D = 2 directions when bidirectional),
a decoder LSTM unrolls the sampled last hidden state over the T steps, and each step is mapped back to a frame
latent and decoded. The loss is the custom FactorVAE loss over the flattened ``(B·T, …)`` tensors.

Fixes of the original's intended behaviour, all deliberate: the wrapper is based on the custom FactorVAE
(the original passed a 4th positional argument to pythae's FactorVAE → TypeError); the last hidden state is
repeated over time with ``unsqueeze(1).expand`` (the original's repeat/reshape mixed subjects across time steps);
odd (half-)batches work; the last layer's hidden states of **both** directions are used (concatenated, width D·L).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.custom_models.factor_vae import CustomFactorVAE
from Engineering.warp_drives.pythae.groups import OptimiserGroup

#: registry keys the LSTM wrapper can wrap (both build on the custom FactorVAE loss)
LSTM_WRAPPABLE = ("factor_vae",)


@dataclass(frozen=True)
class LSTMOptions:
    """YAML ``model.pythae.wrappers.lstm`` (copied into the model config as ``lstm_<key>``).

    Attributes:
        im_encode_factor: f; the frame encoder's latent size is ``L·f``.
        num_layers / dropout / bidirectional: the LSTMs' settings (dropout only acts between layers).
        connect_encdec: start the decoder LSTM from the sampled (hidden, cell) state of the encoder LSTMs.
        decode_last_hidden: feed the last hidden state at every step (else the sampled z sequence).
    """

    im_encode_factor: int = 4
    num_layers: int = 1
    dropout: float = 0.1
    bidirectional: bool = True
    connect_encdec: bool = True
    decode_last_hidden: bool = True

    @classmethod
    def from_yaml(cls, values: Any) -> LSTMOptions:
        """Build from the YAML mapping; unknown keys or bad values raise :class:`ConfigError`."""
        values = dict(values or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigError(
                f"model.pythae.wrappers.lstm: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
            )
        opts = cls(**values)
        for name in ("im_encode_factor", "num_layers"):
            value = getattr(opts, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.pythae.wrappers.lstm.{name}={value!r} must be a positive integer")
        if not 0.0 <= float(opts.dropout) < 1.0:
            raise ConfigError(f"model.pythae.wrappers.lstm.dropout={opts.dropout!r} must lie in [0, 1)")
        return opts

    @property
    def directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def frame_latent_dims(self, latent_dim: int) -> tuple[int, int]:
        """(encoder latent, decoder latent) of the frame nets: ``(L·f, D·L·f)``."""
        enc = latent_dim * self.im_encode_factor
        return enc, self.directions * enc

    def apply_to(self, config: Any) -> Any:
        """A copy of the pythae ``config`` with ``lstm_<key>`` attributes and the discriminator's latent D·L."""
        config = copy.deepcopy(config)
        for key, value in asdict(self).items():
            setattr(config, f"lstm_{key}", value)
        config.latent_dim = self.directions * config.latent_dim
        return config


class LSTMFactorVAE(CustomFactorVAE):
    """FactorVAE over T frames with LSTM sequence posteriors.

    Built by the station with ``model_config.latent_dim = D·L`` (the discriminator's input) and frame nets of
    latent ``L·f`` (encoder) / ``D·L·f`` (decoder). Forward outputs: ``recon_x`` (B₁, T·C, *spatial) for the
    ``recon_x_indices`` half, ``z`` (B₁·T, D·L), the FactorVAE losses. Predict: ``embedding`` (B, D·L) = the last
    layer's μ hidden state of both directions, ``embedding_recurrent`` (B, T, D·L), ``recon_x`` (B, T·C, *spatial).
    """

    def __init__(
        self,
        model_config: Any,
        encoder: Any,
        decoder: Any,
        options: LSTMOptions,
        in_channels: int,
        custom_recon_loss_func: Any = None,
    ) -> None:
        super().__init__(model_config, encoder, decoder, custom_recon_loss_func)
        self.model_name = "FactorVAE"
        self.options = options
        self.in_channels = in_channels
        d = options.directions
        hidden = model_config.latent_dim // d  # L
        enc_latent, dec_latent = options.frame_latent_dims(hidden)
        self.hidden = hidden
        lstm_kw = {
            "num_layers": options.num_layers,
            "batch_first": True,
            "dropout": float(options.dropout) if options.num_layers > 1 else 0.0,
            "bidirectional": options.bidirectional,
        }
        self.lstm_emb = nn.LSTM(enc_latent, hidden, **lstm_kw)
        self.lstm_log = nn.LSTM(enc_latent, hidden, **lstm_kw)
        if options.connect_encdec:
            self.lstm_dec = nn.LSTM(d * hidden, hidden, **lstm_kw)
            self.dec_proj: nn.Module = nn.Linear(d * hidden, dec_latent)
        else:
            self.lstm_dec = nn.LSTM(d * hidden, enc_latent, **lstm_kw)
            self.dec_proj = nn.Identity()

    def optimiser_groups(self) -> list[OptimiserGroup]:
        """The adversarial plan with the LSTMs and the step projection in the autoencoder group."""
        ae_paths = tuple(f"model.{m}" for m in ("encoder", "decoder", "lstm_emb", "lstm_log", "lstm_dec", "dec_proj"))
        return [
            OptimiserGroup("autoencoder", ae_paths, "autoencoder_loss", "ae_val_loss"),
            OptimiserGroup("discriminator", ("model.discriminator",), "discriminator_loss", "discriminator_val_loss"),
        ]

    # ------------------------------------------------------------------ pieces
    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(B, T·C, *spatial) → (B·T, C, *spatial) and T."""
        c = self.in_channels
        if x.shape[1] % c:
            raise ConfigError(
                f"LSTM wrapper: the input has {x.shape[1]} channels, not a multiple of in_channels={c} "
                "(time points must be stacked in the channel axis)"
            )
        t = x.shape[1] // c
        return x.reshape(x.shape[0] * t, c, *x.shape[2:]), t

    def _sequence_posterior(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode every frame and run the μ / log σ² LSTMs; sample z (B, T, D·L), hidden and cell states."""
        frames, t = self._frames(x)
        enc = self.encoder(frames)
        mu_f = enc.embedding.reshape(x.shape[0], t, -1)  # (B, T, L·f)
        lv_f = enc.log_covariance.reshape(x.shape[0], t, -1)
        mu, (h_mu, c_mu) = self.lstm_emb(mu_f)  # (B, T, D·L); (layers·D, B, L)
        log_var, (h_lv, c_lv) = self.lstm_log(lv_f)

        def draw(m: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
            return self._sample_gauss(m, torch.exp(0.5 * lv))[0] if sample else m

        return {
            "mu": mu,
            "log_var": log_var,
            "z": draw(mu, log_var),
            "h": draw(h_mu, h_lv),
            "c": draw(c_mu, c_lv),
        }

    def _last_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Last layer's hidden state of every direction, concatenated: (layers·D, B, L) → (B, D·L)."""
        d = self.options.directions
        last = h.reshape(self.options.num_layers, d, h.shape[1], h.shape[2])[-1]  # (D, B, L)
        return last.permute(1, 0, 2).reshape(h.shape[1], d * h.shape[2])

    def _decode_sequence(self, post: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        """Unroll the decoder LSTM over T steps and decode each frame: → (B, T·C, *spatial)."""
        t = post["z"].shape[1]
        if self.options.decode_last_hidden:
            seq = self._last_hidden(post["h"]).unsqueeze(1).expand(-1, t, -1)  # (B, T, D·L), no subject mixing
        else:
            seq = post["z"]
        state = (post["h"].contiguous(), post["c"].contiguous()) if self.options.connect_encdec else None
        out, _ = self.lstm_dec(seq, state)
        frame_z = self.dec_proj(out).reshape(batch * t, -1)  # (B·T, D·L·f)
        recon = self.decoder(frame_z)["reconstruction"]  # (B·T, C, *spatial)
        return recon.reshape(batch, t * recon.shape[1], *recon.shape[2:])

    # ------------------------------------------------------------------ pythae API
    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        """FactorVAE halves over subjects; the loss runs on the flattened (B₁·T, …) frames and latents."""
        x_in = inputs["data"]
        if x_in.shape[0] <= 1:
            raise ArithmeticError("At least 2 samples in a batch are required for the `FactorVAE` model")
        idx = torch.randperm(x_in.shape[0], device=x_in.device)
        idx_1, idx_2 = idx[x_in.shape[0] // 2 :], idx[: x_in.shape[0] // 2]
        x = x_in[idx_1]
        post = self._sequence_posterior(x)
        recon_x = self._decode_sequence(post, x.shape[0])
        z_bis = self._sequence_posterior(x_in[idx_2])["z"]
        z_bis_permuted = self._permute_dims(z_bis.reshape(-1, z_bis.shape[-1])).detach()  # (B₂·T, D·L)
        frames, _ = self._frames(x)
        recon_frames, _ = self._frames(recon_x)
        mask = inputs.get("mask")
        self._mask = self._frames(mask[idx_1])[0] if mask is not None else None
        mu, log_var, z = (post[k].reshape(-1, post[k].shape[-1]) for k in ("mu", "log_var", "z"))  # (B₁·T, D·L)
        return self._factor_output(
            recon_frames, frames, self.kl_divergence(mu, log_var), z, z_bis_permuted, recon_x, idx_1
        )

    def predict(self, inputs: torch.Tensor) -> ModelOutput:
        """Deterministic (μ) sequence posterior: ``embedding`` (B, D·L), ``embedding_recurrent``, ``recon_x``."""
        post = self._sequence_posterior(inputs, sample=False)
        return ModelOutput(
            embedding=self._last_hidden(post["h"]),
            embedding_recurrent=post["z"],
            recon_x=self._decode_sequence(post, inputs.shape[0]),
        )
