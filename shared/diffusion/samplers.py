"""AudioLDM2's DDPM schedule and the samplers TiVA uses, as thin layers over diffusers' schedulers.

Why wrappers at all: the schedulers are stateful, so each sampling call creates its own; and two settings
silently change the result if left to diffusers' defaults or inherited through `from_config` (reference
card tiva.md sec. 6 and 10):

- the schedule is the LDM "linear" one, betas = linspace(sqrt 0.0015, sqrt 0.0195)^2, which diffusers calls
  `scaled_linear` (its `linear` gives alphā_999 = 2.57e-5 instead of 1.42e-4);
- the sampling timesteps must start at t = 999, where the initial latent is pure noise: AudioLDM2's
  scheduler config carries `timestep_spacing="leading", steps_offset=1`, which gives 951, 913, ..., 39 for 25
  steps. Here the spacing is always set explicitly: `linspace` (999, 959, ..., 40) for DPM-Solver, as the
  original solver's time-uniform grid, and `trailing` (999, 994, ..., 4 for 200 steps) for DDPM.

The forward process (`add_noise`) is computed in float32 whatever the latents' dtype: in bfloat16 the noise
added at small t rounds away to exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B, ...], t [B]) -> ε̂ [B, ...]


class FP32NoiseDDPMScheduler(DDPMScheduler):
    """diffusers' DDPMScheduler whose `add_noise` always computes in float32 and returns the input dtype."""

    def add_noise(self, original_samples, noise, timesteps):
        dtype = original_samples.dtype
        return super().add_noise(original_samples.float(), noise.float(), timesteps).to(dtype)


def training_scheduler(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0015,
    beta_end: float = 0.0195,
    beta_schedule: str = "scaled_linear",
    prediction_type: str = "epsilon",
) -> DDPMScheduler:
    """The DDPM training schedule (AudioLDM2's defaults; TiVA sec. 4.1.1 "variance-preserving DDPM")."""
    return FP32NoiseDDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=False,
    )


class _Sampler:
    def __init__(self, training: DDPMScheduler):
        self.training = training

    def scheduler(self, steps: int, device: torch.device | str | None = None):
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoiser,
        shape: tuple[int, ...],
        steps: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        x_T: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_0 [shape] from x_T ~ N(0, I) (or the given `x_T`), with `steps` model evaluations."""
        scheduler = self.scheduler(steps, device)
        x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = denoise(x, t.to(x.device).expand(x.shape[0]))
            x = self._step(scheduler, eps, t, x, generator)
        return x

    def _step(self, scheduler, eps, t, x, generator):
        return scheduler.step(eps, t, x).prev_sample


class DPMSolverSampler(_Sampler):
    """DPM-Solver++ (2M, midpoint, lower order at the last step), deterministic (TiVA sec. 4.1.1: second-order
    DPM-Solver, 25 steps). `final_sigmas_type="zero"` (diffusers' default) makes the last step return x̂_0;
    "sigma_min" ends at the smallest training noise level, as the original solver does."""

    def __init__(
        self, training: DDPMScheduler, final_sigmas_type: str = "zero", use_lu_lambdas: bool = False
    ):
        super().__init__(training)
        self.final_sigmas_type, self.use_lu_lambdas = final_sigmas_type, use_lu_lambdas

    def scheduler(self, steps: int, device: torch.device | str | None = None) -> DPMSolverMultistepScheduler:
        scheduler = DPMSolverMultistepScheduler.from_config(
            self.training.config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            solver_type="midpoint",
            lower_order_final=True,
            timestep_spacing="linspace",
            steps_offset=0,
            final_sigmas_type=self.final_sigmas_type,
            use_lu_lambdas=self.use_lu_lambdas,
        )
        scheduler.set_timesteps(steps, device=device)
        return scheduler


class DDPMSampler(_Sampler):
    """Ancestral DDPM sampling over `steps` trailing-spaced timesteps (the slow baseline of DPM-Solver)."""

    def scheduler(self, steps: int, device: torch.device | str | None = None) -> DDPMScheduler:
        scheduler = DDPMScheduler.from_config(
            self.training.config, timestep_spacing="trailing", steps_offset=0
        )
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def _step(self, scheduler, eps, t, x, generator):
        return scheduler.step(eps, t, x, generator=generator).prev_sample
