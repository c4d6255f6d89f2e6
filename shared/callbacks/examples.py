"""Logging examples of a validation batch to TensorBoard, as pictures and as sound: one mechanism for every project.

A LightningModule that wants examples logged implements `examples(batch)`, called on the first
`n_examples` clips of the first validation batch of every `every_n_epochs`-th validation, on rank 0 only. It
returns either

- `{name: mel [N, F, T]}` with mels on its front end's compressed [0, 1] scale: each is written as a picture
  and, through Griffin-Lim on the callback's mel `preset`, as sound (SpecVQGAN's codebook and vocoder); or
- `Examples(pictures, sounds, sample_rate)`: pictures [N, H, W] in [0, 1] and sounds [N, samples] that the
  module made itself, e.g. with its own vocoder, written as they are (TiVA: generated mels beside the real
  ones, predicted layouts beside the true ones, generated and real sound).

Pictures are drawn with row 0 at the bottom (low frequencies at the bottom of a mel) under
`examples/<name>/<i>`; sounds go to `audio/<name>/<i>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from shared.audio import GriffinLimVocoder, MelFrontEnd


@dataclass
class Examples:
    """What a module shows: `pictures` {name: [N, H, W] in [0, 1], row 0 at the bottom} and `sounds`
    {name: [N, samples] in [-1, 1]} at `sample_rate`."""

    pictures: dict[str, torch.Tensor]
    sounds: dict[str, torch.Tensor] = field(default_factory=dict)
    sample_rate: int = 0


def take(batch: dict, n: int) -> dict:
    """The first n items of every tensor or list in a batch dict."""
    return {k: v[:n] for k, v in batch.items()}


class MelExampleLogger(Callback):
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

    @torch.no_grad()
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
        writer = self._writer(trainer)
        if writer is None:
            return
        examples = pl_module.examples(take(batch, self.n_examples))
        if not isinstance(examples, Examples):
            examples = self._from_mels(examples)
        step = trainer.global_step
        for name, pictures in examples.pictures.items():
            for i, picture in enumerate(pictures.float().cpu()):
                writer.add_image(f"examples/{name}/{i}", picture.flip(0).clamp(0, 1), step, dataformats="HW")
        if self.audio:
            for name, waves in examples.sounds.items():
                for i, wave in enumerate(waves.float().cpu()):
                    writer.add_audio(f"audio/{name}/{i}", wave.clamp(-1, 1)[None], step, examples.sample_rate)
