"""Diffusion schedules and samplers on top of diffusers' schedulers (TiVA sec. 3.2.2 and 4.1.1; later GRAVO).

- `training_scheduler`: AudioLDM2's DDPM schedule (1000 steps, scaled-linear betas 0.0015-0.0195, ε-pred.).
- `DPMSolverSampler`: DPM-Solver++ with that schedule's noise levels (`DPMSolverOptions`: 2M, logSNR-uniform
  steps by default), `DDPMSampler`: ancestral DDPM, both `sample(denoise, shape, steps, generator)` for any
  ε-model `denoise(x_t, t) -> ε̂`.
"""

from shared.diffusion.samplers import DDPMSampler, DPMSolverOptions, DPMSolverSampler, training_scheduler

__all__ = ["DDPMSampler", "DPMSolverOptions", "DPMSolverSampler", "training_scheduler"]
