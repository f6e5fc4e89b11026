"""SpatialEDMModule: wires the networks and computes the losses of the three training stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from . import edm
from ._config import ModelConfig
from ._constants import MASK_KEY, REGISTRY_KEYS, STAGES
from ._preprocessing import reads_components
from ._proportions import stretch_to_proportions, variance_shares
from .geometry import align, aligned_mse, center, rms
from .nn import ExpressionEncoder, LayoutGenerator, ResidualDenoiser, SetContextEncoder


def _check_finite(v: torch.Tensor, stage: str) -> torch.Tensor:
    if not torch.isfinite(v).all():
        raise FloatingPointError(
            f"The {stage} produced non-finite coordinates. The model's weights may be damaged or the input far "
            "outside the reference's range: check the input expression (same kind of values as the reference), "
            "reload the model from a file that passes its checksum, or retrain it."
        )
    return v


class SpatialEDMModule(BaseModuleClass):
    """Expression encoder → set context → generator → EDM refiner of the residual.

    Parameters
    ----------
    n_input
        Number of genes.
    n_spatial
        Dimension ``d`` of the coordinates (2 or 3).
    config
        Network and loss settings.
    """

    def __init__(self, n_input: int, n_spatial: int, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        self.n_spatial = n_spatial
        # Wide panels: a fixed projection onto the reference's principal axes, filled by the model.
        self.n_projected = config.n_pcs if reads_components(n_input, config.n_pcs) else None
        if self.n_projected is not None:
            self.register_buffer("gene_projection", torch.zeros(n_input, self.n_projected))
        self.encoder = ExpressionEncoder(
            self.n_projected or n_input,
            config.n_hidden,
            config.n_latent,
            config.n_encoder_layers,
            config.dropout,
        )
        kw = {"n_inducing": config.n_inducing, "n_heads": config.n_heads}
        self.context = SetContextEncoder(config.n_latent, config.dim, config.n_context_blocks, **kw)
        self.generator = LayoutGenerator(config.dim, n_spatial, config.n_generator_blocks, **kw)
        self.denoiser = ResidualDenoiser(config.dim, n_spatial, config.n_denoiser_blocks, **kw)
        # sigma_data of the residual (target aligned onto the generator's layout minus that layout);
        # estimated during the refiner stage, used by preconditioning at inference.
        self.register_buffer("sigma_data", torch.tensor(0.0))
        # The reference tissue's scale-free cell spacing (see spatialedm._spacing), measured by the model
        # on its reference; 0 means not measured, and layouts are then not relaxed.
        self.register_buffer("spacing", torch.tensor(0.0))
        # The reference tissue's variance shares along its principal axes (see spatialedm._proportions);
        # all zero means not measured.
        self.register_buffer("proportions", torch.zeros(n_spatial))

    # --- scvi-tools module interface -------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY], "mask": tensors.get(MASK_KEY)}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {
            "h": inference_outputs.get("h"),
            "v_gen": inference_outputs.get("v_gen"),
            "coords": tensors[REGISTRY_KEYS.SPATIAL_KEY],
            "mask": tensors.get(MASK_KEY),
        }

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Gene dropout and Gaussian noise on scaled expression, in training only (against memorising the reference)."""
        if not self.training:
            return x
        keep = (torch.rand_like(x) >= self.config.gene_dropout).to(x.dtype)
        return x * keep + self.config.expression_noise * torch.randn_like(x)

    def embed(self, x: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """Per-cell embedding ``Z`` of preprocessed expression ``(..., G)`` (augmented in training)."""
        if augment:
            x = self.augment(x)
        if self.n_projected is not None:
            x = x @ self.gene_projection
        return self.encoder(x)

    @auto_move_data
    def inference(self, x: torch.Tensor, mask: torch.Tensor | None = None, stage: str = "generator") -> dict:
        """Embed expression and, past the encoder stage, predict the generator's layout.

        Parameters
        ----------
        x
            ``(B, N, G)`` preprocessed expression.
        mask
            ``(B, N)`` boolean mask of real cells.
        stage
            One of :data:`STAGES`; earlier stages' networks run without gradients.

        Returns
        -------
        ``z`` (and a second augmented view ``z2`` in the encoder stage), else ``h`` and ``v_gen``.
        """
        if stage == "encoder":
            return {"z": self.embed(x), "z2": self.embed(x)}
        train_gen = stage == "generator" and torch.is_grad_enabled()
        with torch.set_grad_enabled(train_gen and self.config.finetune_encoder):
            z = self.embed(x)
        with torch.set_grad_enabled(train_gen):
            h = self.context(z, mask)
            v_gen = self.generator(h, mask)
        return {"z": z, "h": h, "v_gen": v_gen}

    def refiner_input(self, v_gen, mask, coords=None) -> torch.Tensor:
        """The generator's layout as the refiner reads it.

        With ``config.stretch_generator``, each set is stretched along its principal axes to the tissue's
        proportions (:func:`~spatialedm._proportions.stretch_to_proportions`): to the set's own true
        proportions when ``coords`` are given (training, diagnostics), else to the reference tissue's
        measured ones (placing cells; unchanged while they are unmeasured, i.e. all zero). Otherwise ``v_gen`` as it is.
        """
        if not self.config.stretch_generator:
            return v_gen
        if coords is not None:
            shares, _ = variance_shares(center(coords.to(v_gen.dtype), mask), mask)
            return stretch_to_proportions(v_gen, mask, shares)
        if bool((self.proportions > 0).any()):
            return stretch_to_proportions(v_gen, mask, self.proportions)
        return v_gen

    def refiner_target(self, coords, v_gen, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The refiner's clean target: the true layout aligned onto the generator's, and its residual.

        The alignment (translation and O(d)) fixes the gauge, so the residual lives in the generator's
        frame and a plain MSE needs no further alignment.

        Returns
        -------
        ``(target, residual)``, both ``(B, N, d)``, zero on padding.
        """
        target = align(coords, v_gen, mask)
        return target, (target - v_gen) * mask.unsqueeze(-1)

    def generative(self, h, v_gen, coords, mask=None, stage: str = "generator") -> dict:
        """In the refiner stage, noise the residual around the generator's layout and denoise it.

        Returns
        -------
        ``final`` (denoised layout), ``target`` (layout target) and ``sigma`` for the refiner stage;
        an empty dict otherwise.
        """
        if stage != "refiner":
            return {}
        v_gen = self.refiner_input(v_gen, mask, coords)
        target, clean = self.refiner_target(coords, v_gen, mask)
        if self.training:
            # The generator is frozen in this stage, so the clean distribution is stationary: a
            # running mean converges to its sigma_data.
            batch_sd = rms(clean, mask).pow(2).mean().sqrt().detach()
            if self.sigma_data <= 0:
                self.sigma_data.copy_(batch_sd)
            else:
                self.sigma_data.mul_(0.98).add_(0.02 * batch_sd)
        sd = float(self.sigma_data)
        sigma = edm.sample_sigma(
            v_gen.shape[0],
            self.config.sigma_min_factor * sd,
            self.config.sigma_max_factor * sd,
            device=v_gen.device,
        )
        noisy = clean + sigma[:, None, None] * torch.randn_like(clean) * mask.unsqueeze(-1)
        denoised = self.denoise(noisy, sigma, v_gen, h, mask)
        return {"final": v_gen + denoised, "target": target, "sigma": sigma}

    def denoise(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        v_gen: torch.Tensor,
        h: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """EDM-preconditioned denoiser ``D(x; sigma)`` of the residual around ``v_gen``.

        Parameters
        ----------
        x
            ``(B, N, d)`` noisy residual.
        sigma
            ``(B,)`` noise levels.
        v_gen
            ``(B, N, d)`` generator layout.
        h
            ``(B, N, dim)`` set context.
        mask
            ``(B, N)`` boolean mask of real cells.

        Returns
        -------
        Denoised residual ``(B, N, d)``, centred.
        """
        return self.denoise_parts(x, sigma, v_gen, h, mask)[0]

    def denoise_parts(self, x, sigma, v_gen, h, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`denoise` and the raw network output ``F`` (for diagnostics)."""
        c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma, float(self.sigma_data))
        f = self.denoiser(c_in[:, None, None] * x, c_noise, v_gen, h, mask)
        return center(c_skip[:, None, None] * x + c_out[:, None, None] * f, mask), f

    def loss(self, tensors, inference_outputs, generative_outputs, stage: str = "generator") -> LossOutput:
        """Loss of the current stage (see :data:`STAGES`)."""
        mask = tensors[MASK_KEY]
        coords = tensors[REGISTRY_KEYS.SPATIAL_KEY]
        if stage == "encoder":
            nce, var, cov = self._contrastive_loss(
                inference_outputs["z"], inference_outputs["z2"], coords, mask
            )
            loss = nce + self.config.vicreg_weight * (var + cov)
            extra = {
                "infonce": nce.detach(),
                "vicreg_variance": var.detach(),
                "vicreg_covariance": cov.detach(),
            }
        elif stage == "generator":
            v = inference_outputs["v_gen"]
            align_mse = aligned_mse(v, coords, mask).mean()
            scale = (torch.log(rms(v, mask)) - torch.log(rms(center(coords, mask), mask))).pow(2).mean()
            local = self._local_distance_loss(v, coords, mask)
            loss = align_mse + self.config.scale_weight * scale + self.config.local_weight * local
            extra = {
                "aligned_mse": align_mse.detach(),
                "log_scale": scale.detach(),
                "local_distance": local.detach(),
            }
        elif stage == "refiner":
            out = generative_outputs
            sq = (out["final"] - out["target"]).pow(2).sum(-1) * mask
            err = sq.sum(-1) / (mask.sum(-1).clamp_min(1) * self.n_spatial)
            weight = edm.loss_weight(out["sigma"], float(self.sigma_data))
            loss = (weight * err).mean()
            extra = {"refiner_mse": err.mean().detach(), "sigma_data": self.sigma_data.detach().clone()}
        else:
            raise ValueError(f"Unknown stage {stage!r}; expected one of {STAGES}.")
        return LossOutput(loss=loss, n_obs_minibatch=int(mask.sum()), extra_metrics=extra)

    def _contrastive_loss(self, z1, z2, coords, mask):
        # Multi-positive InfoNCE: a cell's positives are itself (other view) and its nearest cells.
        p1 = F.normalize(self.encoder.projection(z1), dim=-1)
        p2 = F.normalize(self.encoder.projection(z2), dim=-1)
        logits = p1 @ p2.transpose(-1, -2) / self.config.temperature
        big = torch.finfo(logits.dtype).max / 4
        logits = logits.masked_fill(~mask[:, None, :], -big)
        dist = torch.cdist(coords, coords).masked_fill(~mask[:, None, :], float("inf"))
        k = min(self.config.n_positive + 1, coords.shape[1])
        pos_idx = dist.topk(k, dim=-1, largest=False).indices
        pos = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, pos_idx, True) & mask[:, None, :]
        log_prob = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        nce = -torch.logsumexp(log_prob.masked_fill(~pos, -big), dim=-1)
        nce = nce[mask].mean()
        # VICReg variance and covariance on the embedding of real cells, against collapse.
        zz = torch.cat([z1[mask], z2[mask]])
        zz = zz - zz.mean(0)
        std = torch.sqrt(zz.var(0) + 1e-4)
        var = F.relu(1.0 - std).mean()
        cov_m = zz.T @ zz / max(len(zz) - 1, 1)
        off = cov_m - torch.diag(torch.diag(cov_m))
        cov = off.pow(2).sum() / zz.shape[1]
        return nce, var, cov

    def _local_distance_loss(self, v, coords, mask):
        # Distances from each cell to its nearest true neighbours, relative to their mean square:
        # keeps neighbourhoods tight, which the global aligned MSE weights little.
        target = center(coords, mask)
        d_true = torch.cdist(target, target).masked_fill(~mask[:, None, :], float("inf"))
        d_true.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
        k = min(self.config.local_k, coords.shape[1] - 1)
        dt, idx = d_true.topk(k, dim=-1, largest=False)
        diff = v.unsqueeze(2) - torch.gather(
            v.unsqueeze(1).expand(-1, v.shape[1], -1, -1),
            2,
            idx.unsqueeze(-1).expand(-1, -1, -1, v.shape[-1]),
        )
        dp = torch.sqrt(diff.pow(2).sum(-1) + 1e-8)
        valid = mask.unsqueeze(-1) & torch.isfinite(dt)
        dt = torch.where(valid, dt, torch.zeros_like(dt))
        return ((dp - dt).pow(2) * valid).sum() / (dt.pow(2) * valid).sum().clamp_min(1e-8)

    @torch.no_grad()
    def sample(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        refine: bool = True,
        sigma_start: float | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
        prior: torch.Tensor | None = None,
        prior_weight: float = 0.5,
    ) -> torch.Tensor:
        """Layout of sets of cells: generator, then optionally the Heun-sampled refiner.

        Parameters
        ----------
        x
            ``(B, N, G)`` preprocessed expression.
        mask
            ``(B, N)`` boolean mask of real cells.
        refine
            Run the diffusion refiner after the generator.
        sigma_start
            Starting noise level in units of ``sigma_data`` (capped at the largest trained level).
        n_steps
            Number of Heun steps.
        generator
            Random generator for the starting noise.
        stochastic
            Start the refiner from Gaussian noise at ``sigma_start`` around the generator's layout (a
            sample of the layout's posterior). Otherwise start from the noise-free generator layout,
            the mode of the noised distribution, which gives the deterministic, best-scoring layout.
        prior
            ``(B, N, d)`` positions of the same cells from another placement (any frame and scale). Each
            set's prior is scaled to the generator layout's RMS, moved onto it (translation and O(d)) and
            mixed into it; the refiner then corrects the mixed layout instead of the generator's.
        prior_weight
            Weight of the prior in the mix (0: the generator's layout, 1: the prior's). With
            ``config.stretch_generator``, the (mixed) layout is then stretched to the reference tissue's
            proportions before the refiner, as in training.

        Returns
        -------
        ``(B, N, d)`` centred layouts.
        """
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        out = self.inference(x, mask, stage="refiner")
        h, v_gen = out["h"], out["v_gen"]
        _check_finite(h, "expression encoder and set context")
        _check_finite(v_gen, "generator")
        if prior is not None:
            # matched in RMS rather than by least squares, which would shrink a prior that disagrees
            p = center(prior.to(v_gen.dtype), mask)
            p = p * (rms(center(v_gen, mask), mask) / rms(p, mask).clamp_min(1e-12))[:, None, None]
            v_gen = center((1.0 - prior_weight) * v_gen + prior_weight * align(p, v_gen, mask), mask)
        sd = float(self.sigma_data)
        if not refine or sd <= 0:
            return v_gen
        v_gen = self.refiner_input(v_gen, mask)
        factor = self.config.sigma_start_factor if sigma_start is None else sigma_start
        factor = min(factor, self.config.sigma_max_factor)  # never start above the trained range
        steps = self.config.n_steps if n_steps is None else n_steps
        sigmas = edm.karras_schedule(steps, factor * sd, self.config.sigma_min_factor * sd).to(x.device)
        start = torch.zeros_like(v_gen)
        if stochastic:
            noise = torch.randn(v_gen.shape, generator=generator, device="cpu").to(x.device)
            start = start + center(sigmas[0] * noise * mask.unsqueeze(-1), mask)

        def denoise(r, s):
            return self.denoise(r, s.expand(r.shape[0]), v_gen, h, mask)

        return _check_finite(v_gen + edm.heun_sample(denoise, start, sigmas), "refiner")
