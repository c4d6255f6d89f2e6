"""PaSST: the AudioSet tagger behind GRAVO's KL and ACC, with its mel front end and a loader for its weights.

Koutini et al., "Efficient Training of Audio Transformers with Patchout" (arXiv:2110.05069); GRAVO
(Interspeech 2023, sec. 3.3) measures KL and ACC on "PaSST, an audio classifier of 527 classes". The model is
the released PaSST-S (`kkoutini/PaSST`, `passt-s-f128-p16-s10-ap.476-swa.pt`; the package `hear21passt`,
`models/passt.py`, `models/preprocess.py`, `base.py`, builds it as `passt_s_swa_p16_128_ap476` with
`fstride=tstride=10`), at inference:

- front end (`AugmentMelSTFT` in eval mode): 32 kHz mono; pre-emphasis y[n] = x[n+1] - 0.97 x[n] (one sample
  shorter); power STFT with n_fft 1024, hop 320, a 800-sample symmetric Hann window, centred with reflect
  padding; 128 Kaldi mel bands (`torchaudio.compliance.kaldi.get_mel_banks`, 0-15,000 Hz: fmax is
  16,000 - 2000 // 2 for the package's `fmax_aug_range=2000`; a zero column for the Nyquist bin); log(mel +
  1e-5); (x + 4.5) / 5. No masking or band augmentation at inference.
- network: DeiT-B distilled with 16 x 16 patches at stride 10 x 10 (a Conv2d) over the [128, frames] mel:
  a 12 x T' grid (T' = 99 for 10 s); a learned frequency embedding [768, 12, 1] and time embedding [768, 1, 99]
  added to the grid (the time one cut to T' for shorter input); the cls and distillation tokens, each plus its
  own learned embedding (`new_pos_embed`), before the 12 x T' patch tokens; 12 pre-LN blocks (768 wide, 12
  heads, MLP 3072 with exact GELU, qkv bias, LayerNorm eps 1e-6); final LayerNorm; the mean of the cls and
  distillation outputs through `head` (LayerNorm eps 1e-5, Linear 768 -> 527) gives the logits. `head_dist` is
  in the file and loaded but, as in the released forward, not used. Patchout (structured and unstructured
  token dropping) is a training device only and is not implemented: this module is for inference.

Attention runs through `scaled_dot_product_attention` (the same softmax(q k^T / sqrt(d)) v). The package is
not used: it needs `timm`, which the pinned stack does not have, and downloads its weights when built.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from shared.encoders.vggish import read_tensor_file
from shared.runs import UserError

SAMPLE_RATE = 32000
N_FFT, HOP, WINDOW, N_MELS = 1024, 320, 800, 128
F_MIN, F_MAX = 0.0, 15000.0
PREEMPHASIS = 0.97
N_CLASSES = 527


class PaSSTMel(nn.Module):
    """Waveforms [B, T] at 32 kHz -> PaSST's normalised log-mel [B, 128, 1 + (T - 1) // 320]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW, periodic=False), persistent=False)
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            N_MELS, N_FFT, float(SAMPLE_RATE), F_MIN, F_MAX, 100.0, -500.0, 1.0
        )
        self.register_buffer("mel_basis", F.pad(banks, (0, 1)), persistent=False)  # [128, 513]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave.float()
        emphasised = wave[:, 1:] - PREEMPHASIS * wave[:, :-1]
        spec = torch.stft(
            emphasised,
            N_FFT,
            hop_length=HOP,
            win_length=WINDOW,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        mel = self.mel_basis @ spec.abs().pow(2)
        return (torch.log(mel + 1e-5) + 4.5) / 5.0


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, stride)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.proj(mel)  # [B, dim, F', T']


class PaSST(nn.Module):
    """`forward(mel [B, 1, 128, frames])` -> (logits [B, 527], features [B, 768]); `logits(wave [B, T] at
    32 kHz)` -> [B, 527]. Attribute names follow the released state dict. Defaults: PaSST-S at stride 10 for
    10-s input (grid 12 x 99); `dim`, `depth`, `heads` and `n_classes` only shrink it for tests."""

    def __init__(
        self,
        n_classes: int = N_CLASSES,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        patch: int = 16,
        stride: int = 10,
        input_size: tuple[int, int] = (128, 998),
    ):
        super().__init__()
        grid = (input_size[0] // stride, input_size[1] // stride)
        self.patch_embed = PatchEmbed(dim, patch, stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, dim))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, dim, grid[0], 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, dim, 1, grid[1]))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, n_classes))
        self.head_dist = nn.Linear(dim, n_classes)
        for p in (
            self.cls_token,
            self.dist_token,
            self.new_pos_embed,
            self.freq_new_pos_embed,
            self.time_new_pos_embed,
        ):
            nn.init.trunc_normal_(p, std=0.02)
        self.mel = PaSSTMel()
        self.sample_rate, self.n_classes, self.embedding_dim = SAMPLE_RATE, n_classes, dim

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed(mel)  # [B, D, F', T']
        if x.shape[2] != self.freq_new_pos_embed.shape[2] or x.shape[3] > self.time_new_pos_embed.shape[3]:
            raise ValueError(
                f"a mel of {tuple(mel.shape[-2:])} gives a patch grid {tuple(x.shape[2:])}; PaSST has "
                f"{self.freq_new_pos_embed.shape[2]} frequency rows and at most {self.time_new_pos_embed.shape[3]} "
                "time columns (10 s at 32 kHz)"
            )
        x = x + self.time_new_pos_embed[..., : x.shape[3]] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)  # frequency-major order, as the released model flattens
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed
        x = torch.cat([tokens.expand(len(x), -1, -1), x], dim=1)
        x = self.norm(self.blocks(x))
        features = (x[:, 0] + x[:, 1]) / 2
        return self.head(features), features

    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        return self(self.mel(wave).unsqueeze(1))[0]


def load_passt(path: str | Path) -> PaSST:
    """The released `passt-s-f128-p16-s10-ap.476-swa.pt` (a state dict, or one under `model`) -> a frozen
    PaSST-S in eval mode; every key must be used."""
    state = read_tensor_file(path, "PaSST weights")
    model = PaSST()
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise UserError(
            f"{path}: not PaSST-S's layout (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shapes {wrong[:4]})"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().requires_grad_(False)
