"""Logging what a model makes of a few validation clips to TensorBoard: one mechanism for every project.

A LightningModule that wants examples logged implements `examples(batch)`. The callback keeps the first
`n_examples` clips of the first validation batch of every `every_n_epochs`-th epoch and calls `examples` on
them once the validation is over (after the module's `on_validation_epoch_end`, so that a module can show
what it gathered over the whole split, e.g. retrieval from it), on rank 0 only and never in the sanity check.
`examples(batch)` returns either

- `{name: mel [N, F, T]}` with mels on its front end's compressed [0, 1] scale: each is written as a picture
  and, through Griffin-Lim on the callback's mel `preset`, as sound (SpecVQGAN's stages); or
- `Examples(pictures, sounds, sample_rate, images)` that the module made itself, written as they are:
  spectrogram pictures (TiVA's generated mels beside the real ones, GRAVO's generated sound beside the real
  one), sounds made with the module's own decoder or vocoder, and RGB images (AudioToken's and WavBriVL's
  generated or retrieved frames beside the real ones).

Pictures [N, H, W] are drawn with row 0 at the bottom (low frequencies at the bottom of a mel) and RGB images
[N, 3, H, W] with row 0 at the top, both under `examples/<name>/<i>`; sounds go to `audio/<name>/<i>`. The
step is the trainer's global step, so TensorBoard's slider shows how the examples change over training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from shared.audio import PRESETS, GriffinLimVocoder, MelFrontEnd

GAP = 2  # columns of white between the pictures of `side_by_side`


@dataclass
class Examples:
    """What a module shows: `pictures` {name: [N, H, W] in [0, 1], row 0 at the bottom}, `sounds`
    {name: [N, samples] in [-1, 1]} at `sample_rate`, and `images` {name: RGB [N, 3, H, W] in [0, 1]}."""

    pictures: dict[str, torch.Tensor] = field(default_factory=dict)
    sounds: dict[str, torch.Tensor] = field(default_factory=dict)
    sample_rate: int = 0
    images: dict[str, torch.Tensor] = field(default_factory=dict)


def take(batch: dict, n: int) -> dict:
    """The first n items of every tensor or list in a batch dict (tensors copied off the batch's storage)."""
    return {k: v[:n].clone() if isinstance(v, torch.Tensor) else v[:n] for k, v in batch.items()}


def side_by_side(*pictures: torch.Tensor) -> torch.Tensor:
    """Pictures [N, H, W] or images [N, 3, H, W] of the same height, left to right, a white gap between them."""
    gap = pictures[0].new_ones(*pictures[0].shape[:-1], GAP)
    parts = [part for picture in pictures for part in (gap, picture.to(gap))][1:]
    return torch.cat(parts, dim=-1)


@lru_cache(maxsize=4)
def _picture_front_end(sample_rate: int) -> MelFrontEnd:
    config = PRESETS["specvqgan"]
    return MelFrontEnd(replace(config, sample_rate=sample_rate, f_max=min(config.f_max, sample_rate / 2)))


@torch.no_grad()
def sound_pictures(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Spectrogram pictures [N, 80, frames] in [0, 1] of sounds [N, samples] at any rate: SpecVQGAN's mel
    (`shared.audio.PRESETS["specvqgan"]`: 80 mels, hop 256, 0.8 + 0.2 log10 compression) at that rate, its
    top band at the Nyquist frequency where that is below 7.6 kHz, so that all projects draw sound alike. A
    sound shorter than half an FFT window is padded with silence to it (the STFT's reflect padding needs that)."""
    front_end = _picture_front_end(int(sample_rate))
    waves = waves.detach().float().cpu()
    shortfall = front_end.config.n_fft // 2 + 1 - waves.shape[-1]
    return front_end(torch.nn.functional.pad(waves, (0, shortfall)) if shortfall > 0 else waves)


class ExampleLogger(Callback):
    """`n_examples` clips every `every_n_epochs` epochs (every validation when validation counts steps and
    `every_n_epochs` is 1); `preset` and `audio`: the Griffin-Lim sound of a module's mels (`audio: false`
    writes no sound at all)."""

    def __init__(
        self, preset: str = "specvqgan", n_examples: int = 4, every_n_epochs: int = 1, audio: bool = True
    ):
        self.preset, self.n_examples, self.every_n_epochs, self.audio = (
            preset,
            n_examples,
            every_n_epochs,
            audio,
        )
        self._vocoder: GriffinLimVocoder | None = None
        self._batch: dict | None = None

    def _writer(self, trainer: Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def _from_mels(self, mels: dict[str, torch.Tensor]) -> Examples:
        if not self.audio:
            return Examples(mels)
        if self._vocoder is None:
            self._vocoder = GriffinLimVocoder(MelFrontEnd.from_preset(self.preset))
        sounds = {name: self._vocoder(mel.float().cpu()) for name, mel in mels.items()}
        return Examples(mels, sounds, self._vocoder.sample_rate)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs,
        batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs != 0 or not hasattr(pl_module, "examples"):
            return
        if self.n_examples > 0 and self._writer(trainer) is not None:
            self._batch = take(batch, self.n_examples)

    @torch.no_grad()
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        batch, self._batch = self._batch, None
        if batch is None or trainer.sanity_checking:
            return
        examples = pl_module.examples(batch)
        if not isinstance(examples, Examples):
            examples = self._from_mels(examples)
        self.write(self._writer(trainer), examples, trainer.global_step)

    def write(self, writer, examples: Examples, step: int) -> None:
        for name, pictures in examples.pictures.items():
            for i, picture in enumerate(pictures.float().cpu()):
                writer.add_image(f"examples/{name}/{i}", picture.flip(0).clamp(0, 1), step, dataformats="HW")
        for name, images in examples.images.items():
            for i, image in enumerate(images.float().cpu()):
                writer.add_image(f"examples/{name}/{i}", image.clamp(0, 1), step, dataformats="CHW")
        if self.audio:
            for name, waves in examples.sounds.items():
                for i, wave in enumerate(waves.float().cpu()):
                    writer.add_audio(f"audio/{name}/{i}", wave.clamp(-1, 1)[None], step, examples.sample_rate)


# the name of run configs written before the callback logged images too
MelExampleLogger = ExampleLogger
