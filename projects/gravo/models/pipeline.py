"""GRAVO / Im2Wav inference as one plain module: CLIP frames -> Low codes -> Up codes -> waveform.

Im2Wav (arXiv:2211.03089, sec. 2.3; `RoySheffer/im2wav`, `models/sample.py`) and GRAVO (Interspeech 2023,
sec. 2.4, eq. 7) generate a window of audio in three steps: the Low prior samples the hop-32 codes with
classifier-free guidance (eta = 3), the Up prior samples the hop-8 codes given them (no guidance), and the VQ-VAE
decodes only the level-0 (Up) codes. Audio longer than one window (4.096 s at paper size) is made of
overlapping windows, as Jukebox's and Im2Wav's sliding-window sampling does (`-sliding_window_total_sample_length`,
`-hop_fraction`): each window after the first is primed with the codes the window before it already produced
over their overlap and samples only the rest, at both levels; the Up window conditions on the Low codes of the
same stretch of audio.

Each window's frames are the clip's frames over that stretch, cut as Im2Wav's data loader cuts them
(`frames[int(offset * fps) : int(offset * fps + window * fps) + 1]`, 123 frames for 4.096 s at 30 fps), the last
frame repeated past the clip's end. The Low prior's time signal gets the window's offset and the clip's total
length: `SamplingSettings.total_length` (Im2Wav's inference value 160,000 samples, the 10-s clips it was
trained on), or the generated length when that is longer.

`SamplingSettings` holds every sampling choice in one object; `GravoPipeline.generate` is the only entry
point, used by `avgen generate --project gravo`, the toy pipeline's evaluation and the sampling benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from projects.gravo.models.conditioning import DEFAULT_TOTAL_LENGTH, SAMPLE_RATE
from projects.gravo.models.priors import LowPrior, UpPrior
from projects.gravo.models.vqvae import WaveVQVAE
from shared.transformer import TokenSampling

DECODE_ROWS = 32
FPS = 30.0  # Im2Wav's frame rate of the CLIP features (`Data/preprocess/collect_video_CLIP.py`)


@dataclass(frozen=True)
class SamplingSettings:
    """How a clip is sampled. Defaults are Im2Wav's (`models/sample.py`): guidance 3, temperature 1, no top-k
    or top-p; overlapping windows advance by half a window."""

    guidance_scale: float = 3.0  # eta of eq. 7 on the Low prior; 1 = conditional only
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    hop_fraction: float = 0.5  # how far each window advances past the one before, as a fraction of a window
    total_length: int = DEFAULT_TOTAL_LENGTH  # the time signal's clip length (samples) at inference
    samples: int = 1  # generations per input

    def __post_init__(self) -> None:
        if not 0 < self.hop_fraction <= 1:
            raise ValueError(f"hop_fraction must be in (0, 1], got {self.hop_fraction}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")

    @property
    def tokens(self) -> TokenSampling:
        return TokenSampling(top_k=self.top_k, top_p=self.top_p, temperature=self.temperature)


def window_starts(total: int, window: int, hop: int) -> list[int]:
    """Start positions of windows of `window` items covering `total` items (total >= window), each `hop` after
    the one before, the last one ending exactly at `total`."""
    if total <= window:
        return [0]
    starts = list(range(0, total - window, hop))
    return [*starts, total - window]


def window_frames(
    frames: torch.Tensor, offset_seconds: float, window_seconds: float, fps: float
) -> torch.Tensor:
    """The frames [B, F, D] of the stretch [offset, offset + window) as Im2Wav cuts them: frames
    int(offset * fps) to int(offset * fps + window * fps) inclusive, the last frame repeated past the end."""
    first = int(offset_seconds * fps)
    stop = int(offset_seconds * fps + window_seconds * fps) + 1
    index = torch.arange(first, stop, device=frames.device).clamp(max=frames.shape[1] - 1)
    return frames[:, index]


class GravoPipeline(nn.Module):
    """The frozen VQ-VAE and the two priors; `generate` turns per-frame CLIP embeddings into audio."""

    def __init__(self, vqvae: WaveVQVAE, low: LowPrior, up: UpPrior, fps: float = FPS):
        super().__init__()
        self.vqvae, self.low, self.up, self.fps = vqvae, low, up, fps
        self.low_hop = low.hop
        self.up_hop = vqvae.hop_lengths[0]
        self.window = low.n_ctx * self.low_hop
        if up.n_ctx * self.up_hop != self.window:
            raise ValueError(
                f"the Low window ({low.n_ctx} x {self.low_hop}) and the Up window ({up.n_ctx} x {self.up_hop})"
                " cover different lengths of audio"
            )

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @torch.no_grad()
    def generate(
        self,
        frames: torch.Tensor,
        length: int,
        settings: SamplingSettings = SamplingSettings(),
        generators: Sequence[torch.Generator] | torch.Generator | None = None,
    ) -> torch.Tensor:
        """Waveforms [B, length] at 16 kHz for per-frame CLIP embeddings [B, F, 512] at `fps` covering them
        (a still image: its embedding repeated). `generators`: one per row for per-item random streams
        (`shared.transformer.item_generators`), one for the batch, or None (torch's global stream)."""
        padded = max(self.window, math.ceil(length / self.low_hop) * self.low_hop)
        hop = max(self.low_hop, int(self.window * settings.hop_fraction) // self.low_hop * self.low_hop)
        starts = window_starts(padded, self.window, hop)
        total_length = max(settings.total_length, padded)
        window_seconds = self.window / SAMPLE_RATE
        batch, device = frames.shape[0], frames.device
        low = torch.zeros(batch, padded // self.low_hop, dtype=torch.long, device=device)
        up = torch.zeros(batch, padded // self.up_hop, dtype=torch.long, device=device)
        done = 0  # samples already generated
        for start in starts:
            clip = window_frames(frames, start / SAMPLE_RATE, window_seconds, self.fps)
            window_low = slice(start // self.low_hop, (start + self.window) // self.low_hop)
            window_up = slice(start // self.up_hop, (start + self.window) // self.up_hop)
            low_prime = low[:, start // self.low_hop : done // self.low_hop] if done > start else None
            low[:, window_low] = self.low.sample(
                clip,
                settings.tokens,
                guidance_scale=settings.guidance_scale,
                generators=generators,
                prime=low_prime,
                offset=float(start),
                total_length=float(total_length),
            )
            up_prime = up[:, start // self.up_hop : done // self.up_hop] if done > start else None
            up[:, window_up] = self.up.sample(
                low[:, window_low], clip, settings.tokens, generators=generators, prime=up_prime
            )
            done = start + self.window
        # decoded a few rows at a time: the decoder's activations of a whole evaluation batch would take GBs
        return torch.cat([self.vqvae.decode(rows) for rows in up.split(DECODE_ROWS)])[:, :length]
