"""Our samplers on Gaussian data, where the exact answer is known: what 25 DPM-Solver steps lose, and where.

    python -m benchmarks.dpm_solver_gaussian [--guidance 1 5] [--settings dpm-25 ddpm-200 ...]
        [--samples 65536] [--out runs/dpm_solver_gaussian.json]

Run it from the repository root (it takes its settings from `benchmarks.tiva_sampling`); it takes well under
a minute on one CPU thread.

What it measures. Each named setting of `benchmarks/tiva_sampling.py`'s SETTINGS (DPM-Solver++ with other
spacings, final steps and orders, its SDE variant, more steps, DDPM-200/1000) runs our own sampling code:
`shared.diffusion.DPMSolverSampler` with those `DPMSolverOptions`, or `DDPMSampler`, over AudioLDM2's schedule
(`training_scheduler()`), with the noise prediction guided by `shared.guidance.batched_guidance` as
`projects/tiva/models/pipeline.py` guides it (the condition's and the null condition's branch in one batch),
at guidance scales w = 1 (no guidance) and w = 5. TiVA (doi:10.1145/3664647.3681027, sec. 4.1.1) samples with
second-order DPM-Solver, 25 steps, classifier-free guidance (Ho & Salimans, arXiv:2207.12598) at 5.0. The
model is the exact noise prediction of data that are Gaussian in each dimension (`GaussianData`), so every
difference from the exact output distribution is the sampler's.

Why Gaussian data give an exact reference. For x_0 ~ N(μ, s²) and x_t = α_t x_0 + σ_t ε, write y = x_t / α_t
and σ = σ_t / α_t (the noise level of Karras et al., arXiv:2206.00364, sec. 2). The ideal denoiser
E[x_0 | x_t] is then affine, D(y; σ) = μ + s² / (s² + σ²) (y - μ); so is the guided one, D_u + w (D_c - D_u),
and so is every step of every sampler. A deterministic sampler therefore maps x_T ~ N(0, 1) to a Gaussian whose
mean is its output for x_T = 0 and whose std is how much that output moves for x_T = 1: exact, nothing drawn.
The stochastic ones (DDPM's ancestral steps, SDE-DPM-Solver++) add Gaussian noise on the way, so their output
is Gaussian too; its mean and std are estimated from `--samples` draws. The references are the first two
moments of the continuous processes the samplers discretise, per-dimension linear ODEs that scipy integrates
(DOP853, rtol 1e-12) in log σ from t = 999 (from N(0, 1), as the samplers start) to t = 0:

- the probability-flow ODE dy/dσ = (y - D(y; σ)) / σ, which DPM-Solver (arXiv:2206.00927) and DPM-Solver++
  (arXiv:2211.01095) solve: with D = a y + b and ' = d/dlog σ, mean' = mean - D(mean), std' = (1 - a) std;
- the reverse SDE dy = -2σ ∇log p(y; σ) dσ + sqrt(2σ) dω̄ (Karras et al. eq. 6 with β(t) = σ̇(t)/σ(t)), which
  DDPM's ancestral step and SDE-DPM-Solver++ (arXiv:2211.01095; diffusers' `sde-dpmsolver++`) discretise:
  mean' = 2 (mean - D(mean)), var' = 4 (1 - a) var - 2σ²;

each followed by the jump to x̂_0 = D(y; σ_0) at t = 0, the lowest noise level the model was trained on. That
is the limit, as the steps grow, of every setting whose grid ends at t = 0 with that jump: DPM-Solver with
logSNR-uniform steps (the DPM-Solver paper's step-size schedule, sec. 3.3) or Karras steps and
final_sigmas_type "zero", and DDPM-1000. Settings that end elsewhere converge elsewhere, and that difference is
part of what they lose: time-uniform DPM-Solver grids jump to x̂_0 from t = 40 at 25 steps (σ = 0.27) and from
t = 10 at 100 (σ = 0.13), DDPM-200 from t = 4 (σ = 0.087), and "sigma_min" stops at t = 0 without the jump,
its noise σ_0 = 0.039 left in.

Without guidance the ODE and the SDE have the same marginals, so their outputs agree from the data's own
distribution at t = 999; from N(0, 1) they differ a little, because this schedule's alphā_999 = 1.4e-4 is
not 0 and the ODE carries that mismatch to the end while the SDE forgets it (the header prints both
distances; DDPM-1000 against the SDE reference checks the claim by sampling). With guidance they do not: the
guided denoiser is not the denoiser of any diffused distribution, and guided DDPM and guided ODE solvers
sample different distributions (Bradley & Nakkiran, arXiv:2408.09000). Every row is compared with both.

Columns: `NFE` guided model evaluations (each one batch of both branches); `last t` the last timestep the
model sees and `end` what the sampler returns from it (x̂_0, or x at σ_min); `FD ODE` and `FD SDE` the Fréchet
distance (`shared.metrics.frechet_distance`, FAD's formula, here on diagonal covariances) from the reference
of that process, and for a Monte-Carlo row, in brackets, the distance that sampling error alone gives on
average; `std / ref` each dimension's output std over the reference std of the setting's own process (ODE
for deterministic settings, SDE for stochastic ones), dimensions in `GaussianData.stds`' order, the reference
stds in the header. Nothing is timed: a setting's cost is its NFE.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import DDPMScheduler
from scipy.integrate import solve_ivp

from benchmarks.tiva_sampling import SETTINGS, Setting
from shared.diffusion import DDPMSampler, DPMSolverOptions, DPMSolverSampler, training_scheduler
from shared.guidance import batched_guidance
from shared.metrics.frechet import frechet_distance

DEFAULT_SETTINGS = [
    "dpm-25",
    "dpm-25-linspace",
    "dpm-25-sigma_min",
    "dpm-25-linspace-sigma_min",
    "dpm-25-karras",
    "dpm-25-3m",
    "dpm-25-sde",
    "dpm-50",
    "dpm-100",
    "dpm-100-linspace",
    "ddpm-200",
    "ddpm-1000",
]
Process = Literal["ode", "sde"]
Start = Literal["noise", "marginal"]
CHUNK = 16_384  # Monte-Carlo draws per sampler call: larger batches fall out of the CPU caches


@dataclass(frozen=True)
class GaussianData:
    """Per dimension, unconditional data N(0, s²) and conditional data N(shift s, (narrowing s)²).

    The stds run from just above the noise level at t = 0 (σ = 0.039) past those where the coarser grids end
    (0.087 at t = 4, 0.27 at t = 40) to 2. The condition moves each dimension by half its spread and narrows
    it to 60 %: informative, not deterministic, as a clip's features are for its sound.
    """

    stds: tuple[float, ...] = (0.05, 0.15, 0.4, 1.0, 2.0)
    shift: float = 0.5
    narrowing: float = 0.6

    def moments(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance [B, D] of the data under condition [B, 1] (1: conditional, 0: the null one)."""
        s = torch.tensor(self.stds, dtype=torch.float64)
        c = condition.to(torch.float64)
        return c * self.shift * s, (c * self.narrowing**2 + 1 - c) * s**2

    def guided_denoiser(self, sigma: float, w: float) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) [D] of the guided denoiser D_u + w (D_c - D_u) = a y + b at noise level σ."""
        mean, var = (m.numpy() for m in self.moments(torch.tensor([[0.0], [1.0]])))
        slope = var / (var + sigma**2)
        a, b = slope, (1 - slope) * mean  # [2, D]: unconditional, conditional
        return a[0] + w * (a[1] - a[0]), b[0] + w * (b[1] - b[0])

    def noise_model(self, alphas_cumprod: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The exact ε-model ε(x_t, t, condition) of this data under the schedule `alphas_cumprod`.

        With D = μ + k (y - μ), k = s² / (s² + σ²), the noise prediction ε = (x_t - α_t D) / σ_t is
        (1 - k) (x_t - α_t μ) / σ_t: tabulated once per timestep and condition, so that a call costs two
        element-wise operations and the Monte-Carlo rows stay fast."""
        alpha_bar = alphas_cumprod.double()[:, None, None]  # [T, 1, 1] against [condition, D]
        alpha, sigma_t = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        mean, var = self.moments(torch.tensor([[0.0], [1.0]]))
        sigma2 = sigma_t**2 / alpha_bar
        gain, centre = sigma2 / (var + sigma2) / sigma_t, alpha * mean  # [T, 2, D]

        def model(x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
            index = (t.long(), condition.long().view(-1))
            return gain[index].to(x.dtype) * (x - centre[index].to(x.dtype))

        return model


@dataclass(frozen=True)
class Gaussian:
    mean: np.ndarray
    std: np.ndarray

    def distance(self, other: Gaussian) -> float:
        return frechet_distance(self.mean, np.diag(self.std**2), other.mean, np.diag(other.std**2))


def noise_levels(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """σ_t / α_t = sqrt((1 - alphā_t) / alphā_t) of each training timestep."""
    alpha_bar = alphas_cumprod.double().numpy()
    return np.sqrt((1 - alpha_bar) / alpha_bar)


def exact_reference(
    data: GaussianData, alphas_cumprod: torch.Tensor, w: float, process: Process, start: Start = "noise"
) -> Gaussian:
    """The output distribution of the continuous `process` from t = 999 to t = 0, then x̂_0 at t = 0 (module
    docstring), starting from x_T ~ N(0, 1) as the samplers do, or from the conditional data's own
    distribution at t = 999 ("marginal")."""
    sigmas = noise_levels(alphas_cumprod)
    dims = len(data.stds)

    def derivative(log_sigma: float, state: np.ndarray) -> np.ndarray:
        sigma = np.exp(log_sigma)
        a, b = data.guided_denoiser(sigma, w)
        mean, spread = state[:dims], state[dims:]  # spread: the std (ODE) or the variance (SDE)
        if process == "ode":
            return np.concatenate([(1 - a) * mean - b, (1 - a) * spread])
        return np.concatenate([2 * ((1 - a) * mean - b), 4 * (1 - a) * spread - 2 * sigma**2])

    if start == "noise":  # y_T = x_T / α_T
        mean, var = np.zeros(dims), np.full(dims, sigmas[-1] ** 2 + 1)
    else:
        mean, var = (m[0].numpy() for m in data.moments(torch.ones(1, 1)))
        var = var + sigmas[-1] ** 2
    spread = np.sqrt(var) if process == "ode" else var
    solution = solve_ivp(
        derivative,
        (np.log(sigmas[-1]), np.log(sigmas[0])),
        np.concatenate([mean, spread]),
        method="DOP853",
        rtol=1e-12,
        atol=1e-14,
    )
    if not solution.success:
        raise RuntimeError(f"the {process} reference did not integrate: {solution.message}")
    mean, spread = solution.y[:dims, -1], solution.y[dims:, -1]
    std = spread if process == "ode" else np.sqrt(spread)
    a, b = data.guided_denoiser(sigmas[0], w)
    return Gaussian(a * mean + b, np.abs(a) * std)


def is_stochastic(setting: Setting) -> bool:
    return setting.sampler == "ddpm" or setting.options.get("algorithm_type") == "sde-dpmsolver++"


def sampler_of(setting: Setting, training: DDPMScheduler) -> DPMSolverSampler | DDPMSampler:
    if setting.sampler == "ddpm":
        return DDPMSampler(training)
    return DPMSolverSampler(training, DPMSolverOptions(**setting.options))


def output_distribution(
    setting: Setting, data: GaussianData, training: DDPMScheduler, samples: int, seed: int = 0
) -> tuple[Gaussian, int]:
    """The setting's output distribution, and the number of draws it rests on (0: exact, from the outputs for
    x_T = 0 and x_T = 1). Monte-Carlo draws run in float32 like a real model's; DPM-Solver's steps compute in
    float32 whatever the input."""
    dims = len(data.stds)
    sampler = sampler_of(setting, training)
    model = data.noise_model(training.alphas_cumprod)

    def run(x_T: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        batch = torch.ones(len(x_T), 1)
        denoise = batched_guidance(model, batch, torch.zeros_like(batch), setting.guidance_scale)
        return (
            sampler.sample(denoise, x_T.shape, setting.steps, generator=generator, x_T=x_T).double().numpy()
        )

    if not is_stochastic(setting):
        out = run(torch.stack([torch.zeros(dims), torch.ones(dims)]).double())
        return Gaussian(out[0], np.abs(out[1] - out[0])), 0
    starts, noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    out = np.concatenate(
        [
            run(torch.randn(min(CHUNK, samples - done), dims, generator=starts), noise)
            for done in range(0, samples, CHUNK)
        ]
    )
    return Gaussian(out.mean(0), out.std(0)), samples


def ending(setting: Setting, training: DDPMScheduler) -> tuple[int, str]:
    """The last timestep the model sees, and what the sampler returns from there."""
    last_t = int(sampler_of(setting, training).scheduler(setting.steps).timesteps[-1])
    keeps_noise = setting.sampler == "dpm_solver" and setting.options.get("final_sigmas_type") == "sigma_min"
    return last_t, "x at σ_min" if keeps_noise else "x̂_0"


def evaluate(names: list[str], scales: list[float], samples: int) -> dict:
    training = training_scheduler()
    data = GaussianData()
    results = {"data": asdict(data), "samples": samples, "torch": torch.__version__, "scales": {}}
    for w in scales:
        ode, sde = (exact_reference(data, training.alphas_cumprod, w, p) for p in ("ode", "sde"))
        ode_from_data, sde_from_data = (
            exact_reference(data, training.alphas_cumprod, w, p, start="marginal") for p in ("ode", "sde")
        )
        rows = {}
        for name in names:
            setting = replace(SETTINGS[name], guidance_scale=w)
            output, draws = output_distribution(setting, data, training, samples)
            own = sde if draws else ode
            last_t, end = ending(setting, training)
            rows[name] = {
                "nfe": setting.steps,
                "last_t": last_t,
                "end": end,
                "fd_ode": output.distance(ode),
                "fd_sde": output.distance(sde),
                # the mean FD of `draws` exact samples: per dimension s²/N from the mean, s²/(2N) from the std
                "fd_sampling": 1.5 * float((own.std**2).sum()) / draws if draws else 0.0,
                "std_ratio": (output.std / own.std).tolist(),
                "mean": output.mean.tolist(),
                "std": output.std.tolist(),
            }
        results["scales"][str(w)] = {
            "ode": {"mean": ode.mean.tolist(), "std": ode.std.tolist()},
            "sde": {"mean": sde.mean.tolist(), "std": sde.std.tolist()},
            "fd_ode_sde": ode.distance(sde),
            "fd_ode_sde_from_data": ode_from_data.distance(sde_from_data),
            "settings": rows,
        }
    return results


def print_table(results: dict) -> None:
    print(f"Gaussian data, stds {results['data']['stds']}; torch {results['torch']}")
    for w, block in results["scales"].items():
        print(f"\nguidance w = {w}")
        for process in ("ode", "sde"):
            ref = block[process]
            print(
                f"  {process.upper()} reference: std {np.round(ref['std'], 4).tolist()}, "
                f"mean {np.round(ref['mean'], 4).tolist()}"
            )
        print(
            f"  FD(ODE, SDE) = {block['fd_ode_sde']:.2e} from N(0, 1) at t = 999, "
            f"{block['fd_ode_sde_from_data']:.2e} from the data's distribution at t = 999"
        )
        print(f"{'setting':<27}{'NFE':>5}{'last t':>7}  {'end':<11}{'FD ODE':>9}{'FD SDE':>9}   std / ref")
        for name, row in block["settings"].items():
            sampling = f"  ({row['fd_sampling']:.0e})" if row["fd_sampling"] else ""
            ratios = " ".join(f"{r:6.3f}" for r in row["std_ratio"])
            print(
                f"{name:<27}{row['nfe']:>5}{row['last_t']:>7}  {row['end']:<11}"
                f"{row['fd_ode']:>9.1e}{row['fd_sde']:>9.1e}   {ratios}{sampling}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--settings", nargs="+", default=DEFAULT_SETTINGS, help="names of tiva_sampling SETTINGS"
    )
    parser.add_argument("--guidance", nargs="+", type=float, default=[1.0, 5.0], help="guidance scales w")
    parser.add_argument(
        "--samples", type=int, default=65_536, help="Monte-Carlo draws of a stochastic setting"
    )
    parser.add_argument("--out", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if unknown := [n for n in args.settings if n not in SETTINGS]:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    torch.set_num_threads(1)
    results = evaluate(args.settings, args.guidance, args.samples)
    print_table(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
