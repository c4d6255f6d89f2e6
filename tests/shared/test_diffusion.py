"""shared.diffusion: AudioLDM2's schedule, the timestep traps, and DPM-Solver++ against a plain implementation
and against the exact probability-flow ODE of Gaussian data."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from shared.diffusion import DDPMSampler, DPMSolverOptions, DPMSolverSampler, training_scheduler


def test_schedule_is_audioldm2s_scaled_linear_one():
    alphas = training_scheduler().alphas_cumprod
    assert alphas[0].item() == pytest.approx(0.998500, abs=1e-6)
    assert alphas[999].item() == pytest.approx(1.423e-4, rel=2e-3)
    # the trap: diffusers' "linear" is not the LDM "linear"
    wrong = DDPMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="linear").alphas_cumprod
    assert wrong[999].item() == pytest.approx(2.57e-5, rel=1e-2)


def test_forward_process_runs_in_float32_for_bfloat16_latents():
    scheduler = training_scheduler()
    z = torch.zeros(4, 8, dtype=torch.bfloat16)
    noise = torch.randn(4, 8)
    noisy = scheduler.add_noise(z, noise, torch.full((4,), 1))
    assert noisy.dtype == torch.bfloat16 and noisy.abs().sum() > 0  # not rounded away at small t


def test_sampling_timesteps_start_at_pure_noise():
    training = training_scheduler()
    logsnr = DPMSolverSampler(training).scheduler(25).timesteps.tolist()  # the default spacing
    assert (
        logsnr[0] == 999 and logsnr[-1] == 0 and logsnr == sorted(logsnr, reverse=True) and len(logsnr) == 25
    )
    timesteps = (
        DPMSolverSampler(training, DPMSolverOptions(spacing="linspace")).scheduler(25).timesteps.tolist()
    )
    assert timesteps[:3] == [999, 959, 919] and timesteps[-2:] == [80, 40] and len(timesteps) == 25
    # what inheriting the spacing of AudioLDM2's scheduler config ("leading", offset 1) would have given
    inherited = DPMSolverMultistepScheduler.from_config(
        training.config, timestep_spacing="leading", steps_offset=1
    )
    inherited.set_timesteps(25)
    assert inherited.timesteps[:2].tolist() == [951, 913] and inherited.timesteps[-2:].tolist() == [77, 39]
    ddpm = DDPMSampler(training).scheduler(200).timesteps.tolist()
    assert ddpm[0] == 999 and ddpm[-1] == 4 and len(ddpm) == 200


def fixed_model(dim: int = 6):
    """A fixed, deterministic ε-model whose x̂_0 stays of unit scale: the exact ε of N(0, 1) data,
    ε = sqrt(1 - alphā_t) x, plus a squashed random linear map of x and a smooth term in t."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(dim, dim, generator=g, dtype=torch.float64) * 0.5
    ac = training_scheduler().alphas_cumprod.double()

    def model(x, t):
        sigma = (1 - ac[t.long()]).sqrt()[:, None].to(x.dtype)
        return (
            sigma * x + 0.05 * torch.tanh(x @ w.to(x.dtype)) + 0.02 * torch.cos(t[:, None].to(x.dtype) / 300)
        )

    return model


def plain_dpm_solver_pp_2m(model, x: torch.Tensor, timesteps: list[int], alphas_cumprod: torch.Tensor):
    """DPM-Solver++(2M), midpoint, written from the update rule (DPM-Solver++ arXiv:2211.01095, Algorithm 2),
    first order at the first step and at the last, which goes to sigma = 0 and returns x̂_0."""
    ac = alphas_cumprod.double()
    alpha = lambda t: ac[t].sqrt()  # noqa: E731
    sigma = lambda t: (1 - ac[t]).sqrt()  # noqa: E731
    lam = lambda t: torch.log(alpha(t) / sigma(t))  # noqa: E731
    previous = None  # (x̂_0, h) of the step before
    for i, s in enumerate(timesteps):
        eps = model(x, torch.full((x.shape[0],), s, dtype=torch.float64))
        x0 = (x - sigma(s) * eps) / alpha(s)
        if i == len(timesteps) - 1:
            return x0
        t = timesteps[i + 1]
        h = lam(t) - lam(s)
        first = sigma(t) / sigma(s) * x - alpha(t) * torch.expm1(-h) * x0
        if previous is None:
            x = first
        else:
            x0_prev, h_prev = previous
            d1 = (x0 - x0_prev) / (h_prev / h)
            x = first - 0.5 * alpha(t) * torch.expm1(-h) * d1
        previous = (x0, h)
    return x


@pytest.mark.parametrize("steps", [10, 25])
def test_dpm_solver_equals_a_plain_implementation_of_its_update_rule(steps):
    training = training_scheduler()
    model = fixed_model()
    x_T = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = DPMSolverSampler(training, DPMSolverOptions(spacing="linspace"))
    ours = sampler.sample(lambda x, t: model(x.double(), t).to(x.dtype), x_T.shape, steps, x_T=x_T.float())
    timesteps = sampler.scheduler(steps).timesteps.tolist()
    reference = plain_dpm_solver_pp_2m(model, x_T, timesteps, training.alphas_cumprod)
    assert (ours.double() - reference).abs().max().item() < 1e-5
    assert 0.5 < reference.abs().max() < 10  # a unit-scale result, not a trivial comparison


def test_dpm_solver_converges_to_the_exact_ode_solution_on_gaussian_data():
    """Data N(mu, s^2): the exact ε-model is known and the probability-flow ODE maps x_T to
    mu + s (x_T - a_T mu) / sqrt(a_T^2 s^2 + σ_T^2)."""
    training = training_scheduler()
    ac = training.alphas_cumprod.double()
    mu, s = (
        torch.tensor([1.5, -0.5, 0.0, 2.0], dtype=torch.float64),
        torch.tensor([0.3, 1.0, 2.0, 0.1], dtype=torch.float64),
    )

    def exact_eps(x, t):
        a, sig = ac[t.long()].sqrt()[:, None], (1 - ac[t.long()]).sqrt()[:, None]
        return sig * (x.double() - a * mu) / (a**2 * s**2 + sig**2)

    x_T = torch.randn(256, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a_T, sig_T = ac[999].sqrt(), (1 - ac[999]).sqrt()
    exact = mu + s * (x_T - a_T * mu) / (a_T**2 * s**2 + sig_T**2).sqrt()
    errors = {}
    for spacing in ("linspace", "logsnr"):  # time-uniform and logSNR-uniform (the default) steps
        for steps in (10, 25, 50, 200):
            sampler = DPMSolverSampler(training, DPMSolverOptions(spacing=spacing))
            out = sampler.sample(lambda x, t: exact_eps(x, t).to(x.dtype), x_T.shape, steps, x_T=x_T)
            errors[spacing, steps] = (out - exact).abs().max().item()
    print("DPM-Solver max error against the exact ODE solution (spacing, steps):", errors)
    uniform = [errors["linspace", n] for n in (10, 25, 50, 200)]
    assert uniform == sorted(uniform, reverse=True) and uniform[-1] < uniform[0] / 4
    # logSNR spacing: second order until a floor of about 0.02, where diffusers' integer timesteps (the
    # model is called at round(t)) no longer match the exact noise levels of that spacing
    assert (
        errors["logsnr", 10] / errors["logsnr", 25] > 4
        and errors["logsnr", 25] < 0.05
        and errors["logsnr", 25] < uniform[1] / 5
    )


def test_last_step_keeps_the_detail_above_its_noise_level():
    """Data N(0, s^2) with s of the order of the last noise levels: the sampler is linear in x_T, so the
    output for x_T = 1 is its standard deviation. The exact ODE gives s (up to the tiny a_T s term). A last
    step that jumps from VE noise level σ to x̂_0 (`final_sigmas_type="zero"`) returns the posterior mean,
    which keeps s / sqrt(s^2 + σ^2) of it: time-uniform steps end at t = 40 (σ = 0.27) and lose most of the
    detail at s = 0.06; logSNR steps end at t = 0 (σ = 0.039), the smallest noise the model was trained on."""
    training = training_scheduler()
    ac = training.alphas_cumprod.double()
    s = torch.tensor([0.06, 0.2, 1.0], dtype=torch.float64)

    def exact_eps(x, t):
        a, sig = ac[t.long()].sqrt()[:, None], (1 - ac[t.long()]).sqrt()[:, None]
        return sig * x / (a**2 * s**2 + sig**2)

    exact = s / (ac[999] * s**2 + 1 - ac[999]).sqrt()
    for spacing, last_t in (("linspace", 40), ("logsnr", 0)):
        kept = (
            DPMSolverSampler(training, DPMSolverOptions(spacing=spacing)).sample(
                exact_eps, (1, 3), 25, x_T=torch.ones(1, 3, dtype=torch.float64)
            )[0]
            / exact
        )
        sigma_last = ((1 - ac[last_t]) / ac[last_t]).sqrt()
        derived = s / (s**2 + sigma_last**2).sqrt()
        assert torch.allclose(kept, derived, rtol=0.03), (spacing, kept, derived)
    assert derived[0] > 0.8  # logSNR spacing keeps most of the fine dimension, time-uniform a fifth


def test_a_zero_length_last_step_of_third_order_is_refused():
    # logSNR spacing ends at t = 0 = σ_min already; diffusers' 3M would return NaN for the extra step
    with pytest.raises(ValueError, match="solver_order"):
        DPMSolverOptions(final_sigmas_type="sigma_min", solver_order=3)
    with pytest.raises(ValueError, match="spacing"):
        DPMSolverOptions(spacing="uniform")


def test_ddpm_sampler_is_ancestral_and_reproducible():
    training = training_scheduler()
    model = fixed_model()
    run = lambda seed: DDPMSampler(training).sample(  # noqa: E731
        lambda x, t: model(x.double(), t).to(x.dtype),
        (3, 6),
        20,
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(run(0), run(0)) and not torch.allclose(run(0), run(1))
    assert np.isfinite(run(2).numpy()).all()
