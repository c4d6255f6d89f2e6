"""TiVA's inference as one plain module: a clip's CLIP features -> its sound (paper sec. 3.2, Fig. 3; sec. 4.1.1).

    pipeline = TiVAPipeline(semantic, layout_predictor, generator, vae, vocoder)
    out = pipeline.generate(cls, patch, length=163_840, settings=SamplingSettings())
    out["wave"]   # [samples * B, 163,840] at 16 kHz

S turns the frames' CLS tokens into the semantic condition s (eq. 2); T turns CLS and patch tokens into the
audio layout (eqs. 3-4), unless the settings ask for the clip's ground-truth layout (given by the caller:
Table 3's upper bound) or for none (zeros: Table 5's "w/o T", a G trained without layouts). G (eq. 7) is
sampled with DPM-Solver (2nd order, 25 steps; sec. 4.1.1) or ancestral DDPM, under classifier-free guidance
(scale 5.0) whose unconditional input is s zeroed (sec. 4.1.1: 10 % of s is zeroed in training) while the
layout conditions both branches. The frozen VAE decodes the latent into a log-mel and the vocoder makes the
sound. The module holds S, T, G, the VAE and the vocoder and needs no Lightning: the LightningModule
(`projects.tiva.module_tiva.TiVA`) trains S, T and G and evaluates them through it, and `avgen generate`
builds it from a run folder alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from projects.tiva.models.audioldm import HOP, decode_latents
from projects.tiva.models.generator import LayoutConditionedUNet
from projects.tiva.models.layout import layout_to_latent
from projects.tiva.models.layout_predictor import LayoutPredictor
from projects.tiva.models.semantic import SemanticEncoder
from shared.audio.mel import PRESETS
from shared.diffusion import DDPMSampler, DPMSolverOptions, DPMSolverSampler, training_scheduler
from shared.guidance import batched_guidance

Sampler = Literal["dpm_solver", "ddpm"]
# TiVA's second-order DPM-Solver: DPM-Solver++(2M) in its SDE form (noise added at every step). With guidance
# 5.0 the deterministic (probability-flow ODE) form samples another distribution than the guided DDPM process
# the model was trained for, at any number of steps (Bradley & Nakkiran, arXiv:2408.09000); the SDE form
# converges to the guided DDPM's. Figures (Gaussian data and the toy model): projects/tiva/README.md, sampling.
TIVA_DPM_SOLVER = DPMSolverOptions(algorithm_type="sde-dpmsolver++")
LayoutKind = Literal["predicted", "ground_truth", "none"]
MEL = PRESETS["audioldm"]  # the mel the VAE encodes and the vocoder inverts


@dataclass(frozen=True)
class SamplingSettings:
    """How TiVA samples (paper sec. 4.1.1 for the defaults).

    - `sampler`: "dpm_solver" (the paper's second-order DPM-Solver) or "ddpm" (ancestral, for comparison);
    - `dpm_solver`: how DPM-Solver discretises (`shared.diffusion.DPMSolverOptions`; `TIVA_DPM_SOLVER`: 2M in
      its SDE form, steps uniform in logSNR, the last one to x̂_0; `TIVA_DPM_SOLVER` and
      `DPMSolverOptions` say why; unused by "ddpm");
    - `steps`: model evaluations per sample (25);
    - `guidance_scale`: classifier-free guidance (5.0; 0 runs the unconditional branch alone, Table 5's "w/o S");
    - `layout`: G's layout input, "predicted" by T, the clip's "ground_truth" (Table 3), or "none" (zeros, for
      a G trained without layouts);
    - `samples`: generations of each clip, each from fresh noise.
    """

    sampler: Sampler = "dpm_solver"
    dpm_solver: DPMSolverOptions = TIVA_DPM_SOLVER
    steps: int = 25
    guidance_scale: float = 5.0
    layout: LayoutKind = "predicted"
    samples: int = 1

    def __post_init__(self):
        for name, kind in (("sampler", Sampler), ("layout", LayoutKind)):
            if getattr(self, name) not in get_args(kind):
                raise ValueError(
                    f"sampling.{name} must be one of {get_args(kind)}, got {getattr(self, name)!r}"
                )
        if self.steps < 1 or self.samples < 1:
            raise ValueError(f"sampling.steps and sampling.samples must be at least 1: {self}")

    @classmethod
    def from_config(cls, sampling: dict) -> SamplingSettings:
        """The settings a run's config.yaml holds (`model.init_args.sampling`, DPM-Solver's options nested)."""
        return cls(**{**sampling, "dpm_solver": replace(TIVA_DPM_SOLVER, **sampling.get("dpm_solver", {}))})


def load_parts(parts: dict[str, nn.Module], state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Copy each part's weights from a TiVA state dict, whose keys are `<part name>.<parameter>`."""
    for name, part in parts.items():
        prefix = f"{name}."
        weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"{source}: no weights for {name!r} (is it a TiVA checkpoint?)")
        part.load_state_dict(weights)


class TiVAPipeline(nn.Module):
    def __init__(
        self,
        semantic: SemanticEncoder,
        layout_predictor: LayoutPredictor,
        generator: LayoutConditionedUNet,
        vae: AutoencoderKL,
        vocoder: nn.Module,
    ):
        super().__init__()
        self.semantic, self.layout_predictor, self.generator = semantic, layout_predictor, generator
        self.vae, self.vocoder = vae, vocoder
        self.scheduler = training_scheduler()

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def sample_rate(self) -> int:
        return MEL.sample_rate

    def layout(
        self,
        cls: torch.Tensor,
        patch: torch.Tensor,
        kind: str,
        true_layout: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G's layout input [B, M, C]: T's prediction, the given ground truth, or zeros ("none")."""
        if kind == "predicted":
            return self.layout_predictor(cls, patch)
        if kind == "ground_truth":
            if true_layout is None:
                raise ValueError("sampling.layout 'ground_truth' needs the clips' ground-truth layouts")
            return true_layout
        return cls.new_zeros(cls.shape[0], *self.layout_predictor.layout_size)

    def latent_shape(self, length: int) -> tuple[int, int, int]:
        """(c, h, w) of the latent of `length` audio samples: the VAE's x4 (or x2^levels) down in time and mel."""
        down = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return self.vae.config.latent_channels, length // HOP // down, MEL.n_mels // down

    @torch.no_grad()
    def sample(
        self,
        s: torch.Tensor,
        layout: torch.Tensor,
        length: int,
        settings: SamplingSettings,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Latents [samples * B, c, h, w], sample-major (the B clips, then again), all in one sampler call, from
        s [B, N, D] and layouts [B, M, C]."""
        shape = (settings.samples * len(s), *self.latent_shape(length))
        layout = layout_to_latent(layout, shape[-2:]).repeat(settings.samples, 1, 1, 1)
        s = s.repeat(settings.samples, 1, 1)
        denoise = batched_guidance(
            # the layout conditions both branches; only s is dropped
            lambda x, t, c: self.generator(x, layout.repeat(len(x) // len(layout), 1, 1, 1), t, c),
            s,
            torch.zeros_like(s),
            settings.guidance_scale,
        )
        if settings.sampler == "dpm_solver":
            sampler = DPMSolverSampler(self.scheduler, settings.dpm_solver)
        else:
            sampler = DDPMSampler(self.scheduler)
        return sampler.sample(denoise, shape, steps=settings.steps, generator=generator, device=self.device)

    @torch.no_grad()
    def generate(
        self,
        cls: torch.Tensor,
        patch: torch.Tensor,
        length: int,
        settings: SamplingSettings,
        generator: torch.Generator | None = None,
        true_layout: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | float | None]:
        """From the CLIP tokens cls, patch [B, N, L, D] of B clips: {"logmel": [samples * B, 64, T], "wave":
        [samples * B, length] at 16 kHz, "layout": G's layout input [B, M, C] (None with `layout` "none"),
        "seconds": the time from the features to the decoded mels (S, T, the sampler, the VAE decoder; not the
        vocoder, as the paper measures it, sec. 4.1.3)}. `true_layout` [B, M, C] is needed for "ground_truth"."""
        start = time.perf_counter()
        layout = self.layout(cls, patch, settings.layout, true_layout)
        latents = self.sample(self.semantic(cls), layout, length, settings, generator)
        logmel = decode_latents(self.vae, latents)
        if logmel.device.type == "cuda":
            torch.cuda.synchronize(logmel.device)
        seconds = time.perf_counter() - start
        wave = self.vocoder(logmel)
        wave = F.pad(wave, (0, max(0, length - wave.shape[-1])))[..., :length]
        return {
            "logmel": logmel,
            "wave": wave,
            "layout": None if settings.layout == "none" else layout,
            "seconds": seconds,
        }
