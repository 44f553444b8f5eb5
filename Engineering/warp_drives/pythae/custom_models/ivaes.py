"""iVAE / IDVAE / CI-iVAE (``custom_ivaes``): VAEs with a label-conditioned prior p(z|u).

u is the phenotype vector (``inputs["phenotypes"]``, (B, n_phenotypes)); without it a standard-normal u is drawn,
with a warning, as in the original. The posterior is the product of the encoder Gaussian q(z|x) and the label
prior p(z|u). ``ivae_mode`` picks the loss: ``iVAE`` (−ELBO), ``IDVAE`` (plus a label decoder and a KL to
N(0, log σ² = 1)) or ``CI-iVAE`` (per sample, the minimum over a table of skew-corrected mixtures of the iVAE
ELBO and the VAE-with-label-prior ELBO). Differences from the original, deliberate: the input noise
(``x + 0.01·ε``) is added to a copy (the original mutated the batch), the CI-iVAE table lives on the
input's device (the original's was on the CPU), and the model also trains under
manual optimisation (the original: auto only).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from pydantic.dataclasses import dataclass
from pythae.models import BaseAE, BaseAEConfig
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from Engineering.errors import ConfigError

log = logging.getLogger("imlatent.pythae")

IVAE_MODES = ("iVAE", "IDVAE", "CI-iVAE")


@dataclass
class iVAEsConfig(BaseAEConfig):  # noqa: N801 (the original's class name)
    """Config of ``custom_ivaes``; ``reconstruction_loss`` is unused (``orig_recon_loss`` picks the term)."""

    ivae_mode: Literal["iVAE", "IDVAE", "CI-iVAE"] = "CI-iVAE"
    reconstruction_loss: str = "l1"
    n_phenotypes: int = 0
    learn_phenotypes: bool = True
    aggressive_post: bool = False
    kl_annealing: bool = False
    beta: float = 0.001
    alpha_step: float = 0.025
    hidden_nodes_label_prior: int = 256
    hidden_nodes_label_decoder: int = 256
    M: int = 100
    predict_reparameterised: bool = False
    orig_recon_loss: bool = True


def gaussian_kl(mu1: torch.Tensor, lv1: torch.Tensor, mu2: torch.Tensor, lv2: torch.Tensor) -> torch.Tensor:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) summed over the last axis: (…, L) → (…)."""
    per_dim = 0.5 * (lv2 - lv1) + (lv1.exp() + (mu1 - mu2).pow(2)) / (2 * lv2.exp()) - 0.5
    return per_dim.sum(dim=-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, σ²) without the constant, summed over the last axis: (…, L) → (…)."""
    return -0.5 * (lv + (z - mu).pow(2) / lv.exp()).sum(dim=-1)


def product_of_gaussians(
    mu_z: torch.Tensor, lv_z: torch.Tensor, mu_l: torch.Tensor, lv_l: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior q(z|x)·p(z|u) (normalised): (μ_post, log σ²_post), each (B, L)."""
    mu = mu_z / (1 + torch.exp(lv_z - lv_l)) + mu_l / (1 + torch.exp(lv_l - lv_z))
    lv = lv_z + lv_l - torch.logaddexp(lv_z, lv_l)
    return mu, lv


def _mlp(n_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))


class LabelPrior(nn.Module):
    """p(z|u): MLP u → H → H, then linear μ and log σ² heads; (B, n) → ((B, L), (B, L))."""

    def __init__(self, n_labels: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.body = _mlp(n_labels, hidden)
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(u)
        return self.mean(h), self.log_var(h)


class iVAEs(BaseAE):  # noqa: N801 (the original's class name)
    """iVAE family on the MED VAE encoder/decoder; one optimiser (base trainer mode)."""

    def __init__(self, model_config: iVAEsConfig, encoder: Any = None, decoder: Any = None) -> None:
        for flag in ("aggressive_post", "kl_annealing"):
            if getattr(model_config, flag):
                raise ConfigError(f"model.pythae.models.ivaes.{flag}=True is not supported; valid: False")
        if model_config.n_phenotypes < 1:
            raise ConfigError(
                f"custom_ivaes: n_phenotypes={model_config.n_phenotypes} must be ≥ 1 (the label prior is conditioned "
                "on the phenotypes; set data.dataset.fetch_phenotypes: true and DS_phenotypes)"
            )
        if not 0 < model_config.alpha_step < 0.5:
            raise ConfigError(f"model.pythae.models.ivaes.alpha_step={model_config.alpha_step} must lie in (0, 0.5)")
        super().__init__(model_config=model_config, decoder=decoder)
        self.model_name = "iVAEs"
        if encoder is None:
            raise ConfigError("custom_ivaes needs the MED VAE encoder")
        self.encoder = encoder
        n, latent = model_config.n_phenotypes, model_config.latent_dim
        self.label_prior = LabelPrior(n, model_config.hidden_nodes_label_prior, latent)
        self.label_decoder = (
            nn.Sequential(
                _mlp(latent, model_config.hidden_nodes_label_decoder),
                nn.Linear(model_config.hidden_nodes_label_decoder, n),
            )  # fmt: skip
            if model_config.ivae_mode == "IDVAE"
            else None
        )

    # ------------------------------------------------------------------ terms
    def log_likelihood(self, recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample observation log-likelihood (B,): −mean squared error, or −Σ|x̂−x| without orig_recon_loss."""
        diff = (recon_x - x).reshape(x.shape[0], -1)
        return -diff.pow(2).mean(dim=-1) if self.model_config.orig_recon_loss else -diff.abs().sum(dim=-1)

    @staticmethod
    def _sample(mu: torch.Tensor, lv: torch.Tensor, n: int | None = None) -> torch.Tensor:
        shape = mu.shape if n is None else (n, *mu.shape)
        return mu + torch.randn(shape, device=mu.device, dtype=mu.dtype) * torch.exp(0.5 * lv)

    def alphas(self, device: torch.device) -> torch.Tensor:
        """α = step, 2·step, …, 1 − step (39 values for step 0.025)."""
        n = round(1 / self.model_config.alpha_step)
        return torch.arange(1, n, device=device, dtype=torch.float32) * self.model_config.alpha_step

    def ci_loss(
        self,
        elbo_ivae: torch.Tensor,
        elbo_vae: torch.Tensor,
        q: tuple[torch.Tensor, torch.Tensor],
        post: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """CI-iVAE per-sample loss (B,): min over [−elbo_iVAE, skew-corrected mixtures (α), −elbo_VAE_prior]."""
        m = self.model_config.M
        s_post, s_q = self._sample(*post, n=m), self._sample(*q, n=m)  # (M, B, L)
        log_r1 = gaussian_log_density(s_post, *q) - gaussian_log_density(s_post, *post)  # log q/post, (M, B)
        log_r2 = gaussian_log_density(s_q, *post) - gaussian_log_density(s_q, *q)  # log post/q
        a = self.alphas(elbo_ivae.device)[:, None, None]  # (A, 1, 1)
        # log(α·r1 + 1 − α) and log(α + (1 − α)·r2), computed stably in log space
        mix1 = torch.logaddexp(torch.log(a) + log_r1, torch.log1p(-a))
        mix2 = torch.logaddexp(torch.log(a), torch.log1p(-a) + log_r2)
        skew_ivae, skew_vae = (-mix1).mean(dim=1).abs(), (-mix2).mean(dim=1).abs()  # (A, B)
        a = a[:, :, 0]
        candidates = -a * elbo_vae - (1 - a) * elbo_ivae + a * skew_vae + (1 - a) * skew_ivae  # (A, B)
        table = torch.cat([-elbo_ivae[None], candidates, -elbo_vae[None]], dim=0)  # (A + 2, B)
        return table.min(dim=0).values

    # ------------------------------------------------------------------ pythae API
    def _labels(self, inputs: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        u = inputs.get("phenotypes")
        if u is None:
            log.warning("custom_ivaes: no phenotypes in the batch; using random normal labels")
            return torch.randn(batch, self.model_config.n_phenotypes, device=like.device, dtype=like.dtype)
        return u.to(like)

    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        cfg = self.model_config
        x = inputs["data"] + 0.01 * torch.randn_like(inputs["data"])  # a noisy copy; the original mutated the batch
        u = self._labels(inputs, x.shape[0], x)
        enc = self.encoder(x)
        q = (enc.embedding, enc.log_covariance)
        prior: tuple[torch.Tensor, torch.Tensor] = self.label_prior(u)
        post = product_of_gaussians(*q, *prior)
        post_sample, z_sample = self._sample(*post), self._sample(*q)
        recon_x = self.decoder(post_sample)["reconstruction"]
        elbo_ivae = self.log_likelihood(recon_x, x) - cfg.beta * gaussian_kl(*post, *prior)
        out = ModelOutput(recon_x=recon_x, z=z_sample, post_sample=post_sample, loss_elbo_iVAE=-elbo_ivae.mean())
        if cfg.ivae_mode == "iVAE":
            per_sample = -elbo_ivae
        elif cfg.ivae_mode == "IDVAE":
            assert self.label_decoder is not None  # built in __init__ whenever ivae_mode == "IDVAE"
            u_hat = self.label_decoder(self._sample(*prior))
            loglik_cond = -(u_hat - u).pow(2).mean(dim=-1)
            kl_cond = gaussian_kl(*prior, torch.zeros_like(prior[0]), torch.ones_like(prior[1]))
            per_sample = -elbo_ivae - (loglik_cond - cfg.beta * kl_cond)
            out.update(loss_kl_cond=kl_cond.mean(), pheno_pred=u_hat)
        else:
            recon_enc = self.decoder(z_sample)["reconstruction"]
            elbo_vae = self.log_likelihood(recon_enc, x) - cfg.beta * gaussian_kl(*q, *prior)
            per_sample = self.ci_loss(elbo_ivae, elbo_vae, q, post)
            out.update(recon_data_encoded=recon_enc, loss_elbo_VAE_with_label_prior=-elbo_vae.mean())
        out["loss"] = per_sample.mean()
        return out

    def predict(self, inputs: torch.Tensor) -> ModelOutput:
        """``embedding`` = μ_z (a sample of q(z|x) with ``predict_reparameterised``), ``recon_x`` = its decoding."""
        enc = self.encoder(inputs)
        z = enc.embedding
        if self.model_config.predict_reparameterised:
            z = self._sample(z, enc.log_covariance)
        return ModelOutput(embedding=z, recon_x=self.decoder(z)["reconstruction"])

    def get_nll(self, *args: Any, **kwargs: Any) -> float:
        raise NotImplementedError("custom_ivaes has no NLL estimate")


__all__ = ["IVAE_MODES", "gaussian_kl", "iVAEs", "iVAEsConfig"]
