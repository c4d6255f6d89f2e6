"""AudioToken's inference: audio -> BEATs -> Embedder -> token in "a photo of <*>" -> Stable Diffusion
(AudioToken arXiv:2305.13050, sec. 2.1 and Fig. 2; `guyyariv/AudioToken`, `inference.py`).

Sampling is diffusers' `StableDiffusionPipeline` (the same library the official code uses): its denoising loop,
classifier-free guidance and schedulers are well kept, and it accepts `prompt_embeds` /
`negative_prompt_embeds`, so the audio token enters through the same `TokenInjector` as in training and no
embedding row of the text encoder is ever written. Differences from the official inference, all deliberate:

- the pipeline is built once from the loaded parts (the official code calls `from_pretrained` per clip);
- clips are batched, each prompt with its own token (the official code writes the token into embedding row
  49408, so one clip at a time);
- the Embedder's dropout is off at inference (the official unary dropout is always on; `Embedder` has the flag);
- no safety checker (the official pipeline keeps SD's);
- the scheduler is a setting: PNDM (SD 1.4's default, what the official inference used), DDIM, DPM-Solver++
  or DDPM, all made from the model's own scheduler config, so they share its noise schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
)
from torch import nn

from projects.audiotoken.models.embedder import Embedder
from projects.audiotoken.models.injection import (
    PROMPT,
    TokenInjector,
    add_placeholder,
    audio_prompt_ids,
    prompt_ids,
)
from projects.audiotoken.models.stable_diffusion import (
    SD14_PNDM_OPTIONS,
    StableDiffusionParts,
    inference_pipeline,
)

SCHEDULERS = ("pndm", "ddim", "dpmsolver++", "ddpm")


@dataclass
class SamplingSettings:
    """How images are sampled. Defaults are the official inference's (50 steps, guidance 7.5, 512 x 512, SD
    1.4's PNDM scheduler, "a photo of <*>"); the official prompt also had the suffix ", 4k, high resolution".
    `seed` seeds one generator for the whole batch when `generate` is given none."""

    steps: int = 50
    guidance: float = 7.5
    scheduler: str = "pndm"
    prompt: str = PROMPT
    suffix: str = ""
    height: int = 512
    width: int = 512
    seed: int | None = 0

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")


def make_scheduler(name: str, config):
    """An inference scheduler on the noise schedule of `config` (the model's DDPM training schedule)."""
    if name == "pndm":
        return PNDMScheduler.from_config(config, **SD14_PNDM_OPTIONS)
    if name == "ddim":  # SD 1.x's DDIM settings (diffusers' SD docs)
        return DDIMScheduler.from_config(config, steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


class AudioTokenPipeline(nn.Module):
    """Frozen audio encoder + Embedder + Stable Diffusion, for inference only (every parameter frozen).

    `audio_encoder` is any module wav [B, T] (16 kHz) -> features [B, N, C] (BEATs' layers 4, 8, 12 for the
    paper); `embedder` maps them to tokens of the text encoder's width.
    """

    def __init__(self, audio_encoder: nn.Module, embedder: Embedder, parts: StableDiffusionParts):
        super().__init__()
        width = parts.text_encoder.config.hidden_size
        if embedder.output_size != width:
            raise ValueError(
                f"the Embedder makes {embedder.output_size}-d tokens but the text encoder is {width} wide"
            )
        self.audio_encoder, self.embedder = audio_encoder, embedder
        self.text_encoder, self.vae, self.unet = parts.text_encoder, parts.vae, parts.unet
        self.requires_grad_(False).eval()
        self.tokenizer = parts.tokenizer
        self.injector = TokenInjector(parts.text_encoder, add_placeholder(parts.tokenizer))
        self.noise_schedule = parts.noise_scheduler.config
        self.stable_diffusion = inference_pipeline(parts)  # no safety checker; its scheduler is set per call
        self.stable_diffusion.set_progress_bar_config(disable=True)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def audio_tokens(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] at 16 kHz -> tokens [B, D]."""
        return self.embedder(self.audio_encoder(wav.to(self.device)))

    @torch.no_grad()
    def generate(
        self,
        wav: torch.Tensor,
        settings: SamplingSettings | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ):
        """One image per clip of wav [B, T] (16 kHz): a list of PIL images, or with output_type "pt" a float
        tensor [B, 3, H, W] in [0, 1]. A list of B generators makes each image independent of the batch."""
        return self.generate_from_tokens(self.audio_tokens(wav), settings, generator, output_type)

    @torch.no_grad()
    def generate_from_tokens(
        self,
        tokens: torch.Tensor,
        settings: SamplingSettings | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ):
        """Images of `settings.prompt + settings.suffix` with tokens [B, D] in place of the placeholder (also
        the random-token baseline)."""
        settings = settings or SamplingSettings()
        ids = audio_prompt_ids(self.tokenizer, tokens.shape[0], settings.prompt, settings.suffix)
        prompt_embeds = self.injector.encode(ids, tokens.to(self.device))
        return self._sample(prompt_embeds, settings, generator, output_type)

    @torch.no_grad()
    def generate_from_text(
        self,
        prompts: list[str],
        settings: SamplingSettings | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ):
        """Images of plain text prompts + `settings.suffix` (the paper's text-label baseline, "a photo of a
        <class>"), sampled exactly as the audio prompts are."""
        settings = settings or SamplingSettings()
        prompt_embeds = self._text_embeds([prompt + settings.suffix for prompt in prompts])
        return self._sample(prompt_embeds, settings, generator, output_type)

    def _text_embeds(self, prompts: list[str]) -> torch.Tensor:
        ids = prompt_ids(self.tokenizer, prompts).to(self.device)
        return self.text_encoder(input_ids=ids).last_hidden_state

    def _sample(self, prompt_embeds, settings: SamplingSettings, generator, output_type: str):
        if generator is None and settings.seed is not None:
            generator = torch.Generator().manual_seed(settings.seed)
        self.stable_diffusion.scheduler = make_scheduler(settings.scheduler, self.noise_schedule)
        return self.stable_diffusion(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=self._text_embeds([""] * prompt_embeds.shape[0]),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            height=settings.height,
            width=settings.width,
            generator=generator,
            output_type=output_type,
        ).images
