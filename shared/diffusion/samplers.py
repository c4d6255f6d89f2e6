"""AudioLDM2's DDPM schedule and the samplers TiVA uses, as thin layers over diffusers' schedulers.

Why wrappers at all: the schedulers are stateful, so each sampling call creates its own; and two settings
silently change the result if left to diffusers' defaults or inherited through `from_config` (AudioLDM2's
scheduler config, `cvssp/audioldm2` `scheduler/scheduler_config.json`):

- the schedule is the LDM "linear" one, betas = linspace(sqrt 0.0015, sqrt 0.0195)^2, which diffusers calls
  `scaled_linear` (its `linear` gives alphā_999 = 2.57e-5 instead of 1.42e-4);
- the sampling timesteps must start at t = 999, where the initial latent is pure noise: AudioLDM2's
  scheduler config carries `timestep_spacing="leading", steps_offset=1`, which gives 951, 913, ..., 39 for 25
  steps. Here the spacing is always set explicitly: uniform in logSNR (999, 966, ..., 1, 0) for DPM-Solver
  (`DPMSolverOptions` says why) and `trailing` (999, 994, ..., 4 for 200 steps) for DDPM.

The forward process (`add_noise`) is computed in float32 whatever the latents' dtype: in bfloat16 the noise
added at small t rounds away to exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

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
        """x_0 [shape] from x_T ~ N(0, I) (or the given `x_T`), with `steps` model evaluations; `generator`
        also draws the noise of stochastic samplers."""
        scheduler = self.scheduler(steps, device)
        x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = denoise(x, t.to(x.device).expand(x.shape[0]))
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return x


Spacing = Literal["logsnr", "linspace", "trailing", "karras"]
FinalSigma = Literal["zero", "sigma_min"]
Algorithm = Literal["dpmsolver++", "sde-dpmsolver++"]


@dataclass(frozen=True)
class DPMSolverOptions:
    """How `DPMSolverSampler` discretises the ODE (TiVA sec. 4.1.1 names only "second-order DPM-Solver" and 25
    steps; Lu et al., DPM-Solver arXiv:2206.00927 and DPM-Solver++ arXiv:2211.01095). The defaults, and why:

    - `spacing="logsnr"` (diffusers' `use_lu_lambdas`): steps uniform in λ = log(α/σ), the DPM-Solver paper's
      step-size schedule (sec. 3.3), 999, 966, ..., 3, 1, 0 for 25 steps. The time-uniform grid ("linspace",
      999, 959, ..., 40; "trailing" is the same grid ending at 39) is what `LuChengTHU/dpm-solver` recommends
      for guided sampling (`skip_type="time_uniform"`), but with AudioLDM2's schedule its last model call is
      at t = 40 (σ/α = 0.27): from there the last step either jumps to x̂_0 (`final_sigmas_type="zero"`), the
      posterior mean, which washes out every detail finer than that noise, or stops at σ_min (t = 0) with
      the noise of that step left unremoved ("sigma_min", as the official code does). "karras" (Karras et al.
      arXiv:2206.00364) also ends at t = 0. The figures on Gaussian data and on the toy model:
      projects/tiva/README.md (sampling).
    - `final_sigmas_type="zero"`: the last step, from t = 0 with logSNR spacing, returns x̂_0.
    - `solver_order=2` (the paper's order; midpoint, first order at the last step); `algorithm_type`
      "dpmsolver++" (the probability-flow ODE, deterministic, data prediction) or "sde-dpmsolver++" (diffusers'
      SDE form, its noise from the sampling generator), which TiVA uses: under strong classifier-free
      guidance the ODE's limit is not the guided DDPM's (`projects.tiva.models.pipeline.TIVA_DPM_SOLVER`).
    """

    spacing: Spacing = "logsnr"
    final_sigmas_type: FinalSigma = "zero"
    solver_order: int = 2
    algorithm_type: Algorithm = "dpmsolver++"

    def __post_init__(self):
        for name, kind in (
            ("spacing", Spacing),
            ("final_sigmas_type", FinalSigma),
            ("algorithm_type", Algorithm),
        ):
            allowed = get_args(kind)
            if getattr(self, name) not in allowed:
                raise ValueError(f"DPM-Solver {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.solver_order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver solver_order must be 1, 2 or 3, got {self.solver_order}")
        if (
            self.spacing in ("logsnr", "karras")
            and self.final_sigmas_type == "sigma_min"
            and self.solver_order > 2
        ):
            # these grids already end at σ_min: the extra step has h = 0, which diffusers' 3M divides by
            raise ValueError(
                f"{self.spacing} spacing with final_sigmas_type 'sigma_min' needs solver_order <= 2"
            )

    def scheduler_config(self) -> dict:
        """DPMSolverMultistepScheduler's keywords for these options."""
        return {
            # explicit, so AudioLDM2's "leading" + offset 1 is never inherited (module docstring)
            "timestep_spacing": "trailing" if self.spacing == "trailing" else "linspace",
            "steps_offset": 0,
            "use_lu_lambdas": self.spacing == "logsnr",
            "use_karras_sigmas": self.spacing == "karras",
            "final_sigmas_type": self.final_sigmas_type,
            "solver_order": self.solver_order,
            "algorithm_type": self.algorithm_type,
            "solver_type": "midpoint",
            "lower_order_final": True,
        }


class DPMSolverSampler(_Sampler):
    """DPM-Solver++ (multistep, data prediction) over AudioLDM2's schedule, discretised as `options` say."""

    def __init__(self, training: DDPMScheduler, options: DPMSolverOptions = DPMSolverOptions()):
        super().__init__(training)
        self.options = options

    def scheduler(self, steps: int, device: torch.device | str | None = None) -> DPMSolverMultistepScheduler:
        scheduler = DPMSolverMultistepScheduler.from_config(
            self.training.config, **self.options.scheduler_config()
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
