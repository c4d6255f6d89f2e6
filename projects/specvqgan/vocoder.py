"""The vocoder V of SpecVQGAN's generation (arXiv:2110.08791, sec. 3.3): SpecVQGAN mel [B, 80, T] in [0, 1]
-> sound.

    vocoder = load_vocoder("runs/specvqgan/vggsound_vocoder/default/checkpoints/best.ckpt")  # ours
    vocoder = load_vocoder("SpecVQGAN/vocoder/logs/vggsound")   # the official release (best_netG.pt + args.yml)
    vocoder = load_vocoder(None)                                 # Griffin-Lim (sec. 3.3)
    wave = vocoder(mel)                                          # [B, 256 T] at vocoder.sample_rate

Whatever the source, the result is a `Vocoder`: inference only (eval mode, no gradients), mel in, waveform
[B, hop x T] in [-1, 1] out, so generation code does not care which one it got.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from projects.specvqgan.convert_melgan import load_official_melgan
from projects.specvqgan.models.melgan import MelGANGenerator
from projects.specvqgan.module_vocoder import GENERATOR_CONFIG_KEY
from shared.audio import GriffinLimVocoder, MelFrontEnd


class Vocoder(nn.Module):
    """A MelGAN generator or Griffin-Lim behind one call: mel [B, n_mels, T] -> waveform [B, hop * T].

    Griffin-Lim gives hop x (T - 1) samples (the centre of the last frame); it is padded with hop
    zeros at the end so both kinds give the same length. `kind` is "melgan" or "griffin-lim".
    """

    def __init__(self, net: nn.Module, kind: str, sample_rate: int, hop_length: int):
        super().__init__()
        self.net, self.kind, self.sample_rate, self.hop_length = net, kind, sample_rate, hop_length
        self.eval()

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        wave = self.net(mel.float())
        if wave.dim() == 3:
            wave = wave.squeeze(1)
        return F.pad(wave, (0, self.hop_length * mel.shape[-1] - wave.shape[-1]))


def _melgan(generator: MelGANGenerator, preset: str) -> Vocoder:
    cfg = MelFrontEnd.from_preset(preset).config
    if generator.hop_length != cfg.hop_length:
        raise ValueError(
            f"generator hop {generator.hop_length} differs from the {preset!r} mel's {cfg.hop_length}"
        )
    return Vocoder(generator.eval().remove_weight_norm(), "melgan", cfg.sample_rate, cfg.hop_length)


def _read_safely(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: holds Python objects beyond tensors and plain values; refusing to unpickle it "
            f"(torch.load weights_only=True): {str(err).splitlines()[0]}"
        ) from err


def _generator_from_checkpoint(ckpt: dict, path: Path) -> MelGANGenerator:
    if GENERATOR_CONFIG_KEY not in ckpt:
        raise ValueError(
            f"{path}: a Lightning checkpoint but not of the vocoder stage (no '{GENERATOR_CONFIG_KEY}')"
        )
    generator = MelGANGenerator(**ckpt[GENERATOR_CONFIG_KEY])
    prefix = "generator."
    generator.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    return generator.eval()


def load_generator_checkpoint(path: str | Path) -> MelGANGenerator:
    """The generator of a checkpoint of our vocoder stage (`module_vocoder.MelGANVocoder`), in eval mode.

    Read with `weights_only=True`, so nothing in the file is executed; the generator's sizes are stored
    in the checkpoint next to its weights."""
    return _generator_from_checkpoint(_read_safely(Path(path)), Path(path))


def load_vocoder(path: str | Path | None, preset: str = "specvqgan", griffin_lim_iters: int = 32) -> Vocoder:
    """A vocoder for `preset` mels from `path`:

    * a checkpoint of our vocoder stage (`.ckpt`, Lightning, with `state_dict`),
    * the official MelGAN release: its folder (`best_netG.pt` + `args.yml`) or the `.pt` state dict,
    * None: Griffin-Lim (`shared.audio.GriffinLimVocoder`, `griffin_lim_iters` iterations, momentum 0.99).
    """
    front_end = MelFrontEnd.from_preset(preset)
    if path is None:
        gl = GriffinLimVocoder(front_end, n_iter=griffin_lim_iters)
        return Vocoder(gl, "griffin-lim", front_end.sample_rate, front_end.config.hop_length)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such vocoder checkpoint, file or folder")
    if path.is_file():
        ckpt = _read_safely(path)
        if isinstance(ckpt, dict) and "state_dict" in ckpt:
            return _melgan(_generator_from_checkpoint(ckpt, path), preset)
    return _melgan(load_official_melgan(path), preset)
