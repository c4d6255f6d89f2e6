"""Training losses of Im2Wav's waveform VQ-VAE (Im2Wav, arXiv:2211.03089; Jukebox, arXiv:2005.00341), as `RoySheffer/im2wav` computes them (`models/vqvae/vqvae.py`, `_loss_fn` and
`VQVAE.forward`; `models/utils/audio_utils.py`, `multispectral_loss` and `calculate_bandwidth`):

    loss = sum over levels [ lmix(x, x_hat_l) + multispectral(x, x_hat_l) ] + commit x sum over levels commit_l
    lmix          = mean((x - x_hat)^2) / var  +  0.02 x mean(top-2048 squared errors of each clip) / var
    multispectral = mean over clips of  (1/3) sum_r || |STFT_r(x)| - |STFT_r(x_hat)| ||_F  /  spec_norm

with three STFT resolutions (n_fft, hop, window) = (2048, 240, 1200), (1024, 120, 600), (512, 50, 240),
centred, reflect-padded, periodic Hann. `var` and `spec_norm` are the "bandwidth" of the data: the sample
variance of the audio and the mean Frobenius norm of its magnitude STFT (n_fft 2048, hop 256, window 1536).

Bandwidth: the official code measures it once at start-up, before training, on the first `hps.duration`
seconds (5 s) of dataset audio, i.e. on the first two 4.096-s training windows (dataset items 0 and 16).
We measure it on the first training batch, windows cut as training cuts them (`WaveformReconstructionLoss`
measures on the first batch it sees; the training module discards one measured on Lightning's sanity-check
validation batch), summed over all processes, and keep it in buffers so the checkpoint carries it and a
resumed run uses the same scale; or a config gives both numbers. Same formula, a whole batch instead of two clips, no
separate pass over the dataset.

Why not a library: `auraloss.MultiResolutionSTFTLoss` (the usual choice) combines spectral convergence
and log-magnitude terms, and its linear-magnitude term is an element-wise mean (L1 or MSE), not the
per-clip Frobenius norm of the magnitude difference that Jukebox/Im2Wav train with; the lmix top-k term
and the bandwidth normalisation are in no library. The STFT itself is `torch.stft` with complex output
(the official real-valued `torch.stft` call no longer runs on torch 2).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

# (n_fft, hop, window) of the multi-resolution STFT loss (`multispec_loss_*` in `models/hparams.py`)
STFT_RESOLUTIONS = ((2048, 240, 1200), (1024, 120, 600), (512, 50, 240))
# (n_fft, hop, window) of the spectral-norm bandwidth (`DefaultSTFTValues` in `models/utils/audio_utils.py`)
BANDWIDTH_STFT = (2048, 256, 1536)


def stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int, window: int) -> torch.Tensor:
    """|STFT| of [B, T] -> [B, n_fft // 2 + 1, frames]: centred, reflect-padded, periodic Hann of `window`."""
    hann = torch.hann_window(window, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(
        wave, n_fft, hop, win_length=window, window=hann, center=True, pad_mode="reflect", return_complex=True
    )
    return spec.abs()


def multi_resolution_stft_distance(
    target: torch.Tensor, pred: torch.Tensor, resolutions=STFT_RESOLUTIONS
) -> torch.Tensor:
    """[B, T] x 2 -> [B]: the mean over resolutions of the Frobenius norm of the magnitude difference.

    `vector_norm` rather than the official sqrt of a sum: its gradient at an exact match is 0, not NaN.
    """
    distances = [
        torch.linalg.vector_norm(stft_magnitude(target, *r) - stft_magnitude(pred, *r), dim=(1, 2))
        for r in resolutions
    ]
    return torch.stack(distances).mean(0)


def lmix_loss(
    target: torch.Tensor,
    pred: torch.Tensor,
    variance: torch.Tensor | float,
    l2_weight: float = 1.0,
    linf_weight: float = 0.02,
    linf_k: int = 2048,
) -> torch.Tensor:
    """Jukebox's mixed reconstruction loss of [B, T] waveforms, scaled by the data variance (a scalar).

    The "linf" term is the mean of each clip's `linf_k` largest squared errors (all of them in a clip
    shorter than `linf_k`); it pushes on the worst samples, e.g. transients, that the mean hides.
    """
    squared = (pred - target).pow(2).reshape(target.shape[0], -1)
    worst = squared.topk(min(linf_k, squared.shape[1]), dim=1).values
    return (l2_weight * squared.mean() + linf_weight * worst.mean()) / variance


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return values


class WaveformReconstructionLoss(nn.Module):
    """lmix + multi-resolution STFT over every level's reconstruction, with the data bandwidth as buffers.

    `variance` and `spec_norm` may be given; otherwise (0 in the buffers) they are measured on the first
    batch passed to `forward` or `measure_bandwidth` (the module docstring says why and how).
    """

    def __init__(
        self,
        l2_weight: float = 1.0,
        linf_weight: float = 0.02,
        linf_k: int = 2048,
        multispectral_weight: float = 1.0,
        resolutions: list[list[int]] | tuple = STFT_RESOLUTIONS,
        variance: float | None = None,
        spec_norm: float | None = None,
    ):
        super().__init__()
        self.l2_weight, self.linf_weight, self.linf_k = l2_weight, linf_weight, linf_k
        self.multispectral_weight = multispectral_weight
        self.resolutions = [tuple(r) for r in resolutions]
        if any(len(r) != 3 for r in self.resolutions):
            raise ValueError(f"each STFT resolution is (n_fft, hop, window), got {resolutions}")
        self.register_buffer("variance", torch.tensor(float(variance or 0.0)))
        self.register_buffer("spec_norm", torch.tensor(float(spec_norm or 0.0)))

    @property
    def bandwidth_known(self) -> bool:
        return bool(self.variance > 0 and self.spec_norm > 0)

    @torch.no_grad()
    def measure_bandwidth(self, wave: torch.Tensor) -> None:
        """Set the variance and mean spectral norm from a batch [B, T] (of every process, if distributed)."""
        wave = wave.double()
        norms = torch.linalg.vector_norm(stft_magnitude(wave, *BANDWIDTH_STFT), dim=(1, 2))
        counts = torch.tensor([float(wave.numel()), float(len(wave))]).to(wave)
        sums = torch.cat([torch.stack([wave.sum(), wave.pow(2).sum(), norms.sum()]), counts])
        total, total_sq, norm_sum, n_samples, n_clips = _all_reduce_sum(sums).tolist()
        mean = total / n_samples
        variance = total_sq / n_samples - mean**2
        if variance <= 0 or norm_sum <= 0:
            raise ValueError(
                "cannot measure the audio bandwidth: every clip of the first batch is silent (or constant)"
            )
        self.variance.fill_(variance)
        self.spec_norm.fill_(norm_sum / n_clips)

    def forget_bandwidth(self) -> None:
        """Back to unknown: the next batch sets it again."""
        self.variance.zero_()
        self.spec_norm.zero_()

    def forward(self, target: torch.Tensor, reconstructions: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """target [B, T] and one [B, T] per level -> `recon_l{level}`, `multispectral_l{level}` (level 0 =
        hop 8), their sums over levels `recon` and `multispectral`, and `loss` = recon + weight x multispectral
        (the official total less the commitment term, which the quantisers give)."""
        if not self.bandwidth_known:
            self.measure_bandwidth(target)
        target = target.float()
        losses = {}
        for level, pred in enumerate(reconstructions):
            losses[f"recon_l{level}"] = lmix_loss(
                target, pred, self.variance, self.l2_weight, self.linf_weight, self.linf_k
            )
            distance = multi_resolution_stft_distance(target, pred, self.resolutions)
            losses[f"multispectral_l{level}"] = distance.mean() / self.spec_norm
        levels = range(len(reconstructions))
        losses["recon"] = sum(losses[f"recon_l{level}"] for level in levels)
        losses["multispectral"] = sum(losses[f"multispectral_l{level}"] for level in levels)
        losses["loss"] = losses["recon"] + self.multispectral_weight * losses["multispectral"]
        return losses
