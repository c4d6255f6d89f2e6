"""BEATs: an audio transformer over 16 x 16 fbank patches (Chen et al., arXiv:2212.09058), and its official files.

AudioToken (arXiv:2305.13050, sec. 2.1) feeds its Embedder the outputs of blocks 4, 8 and 12 of the frozen
BEATs fine-tuned on AudioSet-2M (`BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`), concatenated on channels.
The architecture and the front end are the official ones (`microsoft/unilm`, `beats/BEATs.py`,
`beats/backbone.py`), with the official submodule names, so an official `{'cfg', 'model'}` file loads key for
key (`load_beats`):

- preprocessing (`BEATs.preprocess`, BEATs sec. 3.1): waveform x 2^15, `torchaudio.compliance.kaldi.fbank` per
  clip (128 mel bins, 16 kHz, 25 ms frames every 10 ms, Kaldi's other defaults: povey window, dither 0,
  pre-emphasis 0.97, DC removal, snip_edges), then (fbank - 15.41663) / (2 x 6.55582);
- `patch_embedding`: Conv2d 1 -> embed_dim over 16 x 16 patches of the [M, 128] fbank, flattened time-major
  (token n = 8 t + f for 128 bins), `layer_norm`, then `post_extract_proj` to the encoder width;
- `encoder.pos_conv`: a grouped convolution along the flattened token index, weight-normalised over its kernel
  axis (`weight_g`, `weight_v`), GELU, added to the tokens; `encoder.layer_norm` (post-norm models);
- `encoder.layers.i`: fairseq-style transformer layers, post-norm with DeepNorm (the residual scaled by
  (2 L)^(1/4)) in the released models, with a bucketed relative position bias shared by all layers (T5-style
  buckets, `relative_attention_bias`) whose scale each query gates (`grep_linear`, `grep_a`: BEATs follows
  WavLM's gated relative position bias, arXiv:2110.13900 sec. 3.2);
- `predictor` (fine-tuned releases): a linear layer per token, averaged over tokens.

The official code is not packaged (no pip release, no transformers class), so the model is written here. The
attention uses `F.scaled_dot_product_attention` with the gated bias as an additive mask; the official code
computes the same softmax with the logits shifted by their maximum (a no-op for the softmax), so the two agree
to float rounding.

`BEATs(cfg, layers=(4, 8, 12))(wav [B, T] at 16 kHz in [-1, 1]) -> [B, N, len(layers) * D]`: the outputs of
those blocks (1-based, each after its final LayerNorm in post-norm models), concatenated on channels, with
N = floor(M / 16) * 8 tokens for M = 1 + floor((T - 400) / 160) fbank frames (leftover frames are dropped).
Resampling to 16 kHz happens before: the fbank assumes it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from shared.files import atomic_path
from shared.runs import UserError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MEL_BINS = 128
FBANK_MEAN = 15.41663  # official `preprocess` defaults (AudioSet statistics)
FBANK_STD = 6.55582
WAVE_SCALE = 2**15  # the fbank is computed on 16-bit integer amplitudes


@dataclass
class BEATsConfig:
    """The official `BEATsConfig` fields and defaults; `from_dict` reads a checkpoint's `cfg`.

    The released AS-2M models set input_patch_size 16, layer_norm_first False, deep_norm True,
    relative_position_embedding True (320 buckets, max distance 800), gru_rel_pos True and, fine-tuned,
    finetuned_model True with a 527-class predictor. `layer_wise_gradient_decay_ratio` only scales gradients
    in the official fine-tuning; it is kept so that files round-trip but not applied.
    """

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: dict) -> BEATsConfig:
        """A config from an official `cfg` dict; keys this model has no use for are ignored (logged)."""
        names = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(set(cfg) - names)
        if ignored:
            log.debug("BEATs cfg keys not used: %s", ignored)
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def check(self) -> None:
        if self.input_patch_size <= 0:
            raise ValueError(f"BEATs input_patch_size must be positive, got {self.input_patch_size}")
        if self.deep_norm and self.layer_norm_first:
            raise ValueError("BEATs deep_norm applies to post-norm layers only (layer_norm_first False)")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                f"BEATs width {self.encoder_embed_dim} is not a multiple of "
                f"{self.encoder_attention_heads} heads"
            )
        if self.activation_fn not in ACTIVATIONS:
            raise ValueError(f"BEATs activation_fn {self.activation_fn!r} not one of {sorted(ACTIVATIONS)}")


# fairseq's activation names (the official `get_activation_fn`) for the feed-forward layers
ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_accurate": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}


def beats_tokens(n_samples: int, patch: int = 16) -> int:
    """Tokens of a clip of `n_samples` at 16 kHz: floor(M / patch) * (128 / patch), M fbank frames."""
    frames = 1 + (n_samples - 400) // 160
    return frames // patch * (MEL_BINS // patch)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> torch.Tensor:
    """[length, length] bucket of key j for query i (T5's bidirectional buckets, as the official code).

    Half the buckets for keys after the query; in each half distances below a quarter of the buckets get one
    bucket each, longer ones share buckets on a log scale up to `max_distance`.
    """
    position = torch.arange(length)
    relative = position[None, :] - position[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    max_exact = half // 2
    # the same float32 operations in the same order as the official code, so the truncation agrees
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class GatedRelativeAttention(nn.Module):
    """Multi-head self-attention with a gated relative position bias (the official `MultiheadAttention`).

    Per head h and query i: gate = a (b g_h - 1) + 2, where (a, b) = sigmoid of the two 4-sums of
    `grep_linear` applied to the query's head slice (the q projection before scaling) and g_h = `grep_a`;
    the logits q k^T / sqrt(d) get gate x bias[h, i, j] added before the softmax.
    """

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        dim, heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = cfg.attention_dropout
        self.gru_rel_pos = cfg.gru_rel_pos
        if cfg.relative_position_embedding:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, heads)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B, H, N, d]

    def gated_bias(self, q: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """q [B, H, N, d] (the projection before scaling), bias [H, N, N] -> [B, H, N, N]."""
        if not self.gru_rel_pos:
            return bias.unsqueeze(0)
        b, h, n, _ = q.shape
        gates = torch.sigmoid(self.grep_linear(q).view(b, h, n, 2, 4).sum(-1))
        gate_a, gate_b = gates.chunk(2, dim=-1)
        return (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        mask = None if position_bias is None else self.gated_bias(q, position_bias).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))


class BEATsLayer(nn.Module):
    """One transformer layer (the official `TransformerSentenceEncoderLayer`): post-norm with the DeepNorm
    residual scale (2 L)^(1/4) when `deep_norm`, or pre-norm when `layer_norm_first`."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.residual_scale = math.pow(2 * cfg.encoder_layers, 1 / 4) if cfg.deep_norm else 1.0
        self.self_attn = GatedRelativeAttention(cfg)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.activation = ACTIVATIONS[cfg.activation_fn]()
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.fc2(self.dropout2(self.activation(self.fc1(x)))))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), position_bias))
            return x + self._feed_forward(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(
            x * self.residual_scale + self.dropout1(self.self_attn(x, position_bias))
        )
        return self.final_layer_norm(x * self.residual_scale + self._feed_forward(x))


class WeightNormConv1d(nn.Module):
    """A grouped Conv1d with `torch.nn.utils.weight_norm(..., dim=2)`'s parameters (`weight_g` [1, 1, K],
    `weight_v`): weight = g v / ||v||, the norm over all axes but the kernel's. Written out because torch's
    current weight norm (`parametrizations.weight_norm`) stores other key names than the official files."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        weight = torch.empty(channels, channels // groups, kernel)
        # the official initialisation: normal with std sqrt(4 / (K C)), zero bias, g = ||v||
        nn.init.normal_(weight, std=math.sqrt(4 / (kernel * channels)))
        self.weight_g = nn.Parameter(weight.norm(dim=(0, 1), keepdim=True))
        self.weight_v = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.groups = groups
        self.padding = kernel // 2
        self.trim = 1 if kernel % 2 == 0 else 0  # the official `SamePad`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        y = F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)
        return y[..., : y.shape[-1] - self.trim]


class BEATsEncoder(nn.Module):
    """The official `TransformerEncoder`: convolutional positions, LayerNorm (post-norm), the layers."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(WeightNormConv1d(dim, cfg.conv_pos, cfg.conv_pos_groups), nn.GELU())
        self.layers = nn.ModuleList(BEATsLayer(cfg) for _ in range(cfg.encoder_layers))
        if cfg.relative_position_embedding:
            # one bias table for all layers, listed under every layer's name (as in the official files)
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = self.layers[0].self_attn.relative_attention_bias
        self.layer_norm_first = cfg.layer_norm_first
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layerdrop = cfg.encoder_layerdrop
        self.relative = cfg.relative_position_embedding
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self._init_official(cfg)

    def _init_official(self, cfg: BEATsConfig) -> None:
        """fairseq's BERT initialisation, then DeepNorm's scaled Xavier init (the official encoder's)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        if cfg.deep_norm:
            beta = math.pow(8 * cfg.encoder_layers, -1 / 4)
            for layer in self.layers:
                attn = layer.self_attn
                for linear, gain in [
                    (attn.k_proj, 1.0),
                    (attn.v_proj, beta),
                    (attn.q_proj, 1.0),
                    (attn.out_proj, beta),
                    (layer.fc1, beta),
                    (layer.fc2, beta),
                ]:
                    nn.init.xavier_normal_(linear.weight, gain=gain)

    def position_bias(self, n: int) -> torch.Tensor | None:
        if not self.relative:
            return None
        table = self.layers[0].self_attn.relative_attention_bias
        buckets = relative_position_buckets(n, self.num_buckets, self.max_distance).to(table.weight.device)
        return table(buckets).permute(2, 0, 1)  # [H, N, N]

    def forward(self, x: torch.Tensor, n_blocks: int) -> list[torch.Tensor]:
        """x [B, N, D] -> the outputs of the first `n_blocks` blocks (a dropped layer repeats its input)."""
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        bias = self.position_bias(x.shape[1])
        outputs = []
        for layer in self.layers[:n_blocks]:
            if not (self.training and torch.rand(()).item() < self.layerdrop):
                x = layer(x, bias)
            outputs.append(x)
        return outputs


class BEATs(nn.Module):
    """BEATs: `forward(wav [B, T]) -> [B, N, len(layers) * D]` (see the module docstring).

    `predictor=True` adds the fine-tuned releases' head (`logits`); the toy stage trains it, the features do
    not use it.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, cfg: BEATsConfig, layers: Sequence[int] = (4, 8, 12), predictor: bool = False):
        super().__init__()
        cfg.check()
        layers = tuple(layers)
        if not layers or not all(1 <= k <= cfg.encoder_layers for k in layers):
            raise ValueError(f"BEATs layers must be in 1..{cfg.encoder_layers} (1-based), got {layers}")
        self.cfg = cfg
        self.layers = layers
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        patch = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, patch, stride=patch, bias=cfg.conv_bias)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = BEATsEncoder(cfg)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        if predictor:
            self.predictor_dropout = nn.Dropout(cfg.predictor_dropout)
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        else:
            self.predictor = None
        self.frozen = False

    @property
    def out_dim(self) -> int:
        return len(self.layers) * self.cfg.encoder_embed_dim

    def freeze(self) -> BEATs:
        """Eval mode for good, no gradients: a frozen encoder inside a model being trained stays frozen when
        the parent's `.train()` reaches it."""
        self.frozen = True
        return self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> BEATs:
        return super().train(mode and not self.frozen)

    @staticmethod
    def preprocess(wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] at 16 kHz in [-1, 1] -> the normalised fbank [B, M, 128] (the official `preprocess`)."""
        if wav.dim() != 2:
            raise ValueError(f"BEATs expects a batch of waveforms [B, T], got shape {tuple(wav.shape)}")
        fbanks = [
            kaldi.fbank(
                clip.unsqueeze(0) * WAVE_SCALE,
                num_mel_bins=MEL_BINS,
                sample_frequency=SAMPLE_RATE,
                frame_length=25,
                frame_shift=10,
            )
            for clip in wav.float()
        ]
        return (torch.stack(fbanks) - FBANK_MEAN) / (2 * FBANK_STD)

    def tokens(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] -> the patch tokens [B, N, D] that enter the encoder (time-major)."""
        patch = self.cfg.input_patch_size
        fbank = self.preprocess(wav)
        if fbank.shape[1] < patch:
            raise ValueError(
                f"BEATs needs at least {patch} fbank frames ({400 + 160 * (patch - 1)} samples at 16 kHz), "
                f"got {fbank.shape[1]} from {wav.shape[1]} samples"
            )
        x = self.patch_embedding(fbank.unsqueeze(1)).flatten(2).transpose(1, 2)
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.dropout_input(x)

    def block_outputs(self, wav: torch.Tensor, n_blocks: int | None = None) -> list[torch.Tensor]:
        """The outputs [B, N, D] of blocks 1..n_blocks (all by default)."""
        return self.encoder(self.tokens(wav), n_blocks or self.cfg.encoder_layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        outputs = self.block_outputs(wav, max(self.layers))
        return torch.cat([outputs[k - 1] for k in self.layers], dim=-1)

    def logits(self, wav: torch.Tensor) -> torch.Tensor:
        """The predictor's class logits [B, classes]: per-token logits of the last layer's output, averaged
        over tokens (the official fine-tuned head, before its sigmoid)."""
        if self.predictor is None:
            raise RuntimeError("this BEATs has no predictor (build it with predictor=True)")
        x = self.block_outputs(wav)[-1]
        if self.cfg.layer_norm_first:
            x = self.encoder.layer_norm(x)
        return self.predictor(self.predictor_dropout(x)).mean(dim=1)


# ---------------------------------------------------------------------------------------------------------
# Official files: {'cfg': dict, 'model': state_dict} (+ 'label_dict' in fine-tuned releases)

OFFICIAL_FILE = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
FILE_IN_RUN = "beats.pt"  # what the toy stage writes next to its checkpoints


def save_official(module: BEATs, path: str | Path) -> None:
    """Write `module` as an official BEATs file ({'cfg': dict, 'model': state_dict}), atomically.

    `finetuned_model` in the cfg says whether the predictor is there, as in the official files."""
    cfg = dataclasses.asdict(module.cfg)
    cfg["finetuned_model"] = module.predictor is not None
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"cfg": cfg, "model": state}, tmp)


def _read_official(path: Path, allow_pickle: bool) -> tuple[dict, dict]:
    if path.is_dir():
        path = path / FILE_IN_RUN
    if not path.is_file():
        raise UserError(f"{path}: no such BEATs file (official ones are like {OFFICIAL_FILE})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        raise UserError(
            f"{path}: holds objects beyond tensors and plain containers, which weights_only loading refuses "
            f"({str(error).splitlines()[0]}); if you trust the file, pass allow_pickle=True"
        ) from error
    except (RuntimeError, EOFError, ValueError) as error:
        raise UserError(f"{path}: not a readable BEATs file ({str(error).splitlines()[0]})") from error
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("cfg"), dict)
        or not isinstance(ckpt.get("model"), dict)
    ):
        raise UserError(
            f"{path}: expected an official BEATs file, a dict with a 'cfg' dict and a 'model' state dict"
        )
    return ckpt["cfg"], ckpt["model"]


def load_beats(path: str | Path, layers: Sequence[int] = (4, 8, 12), allow_pickle: bool = False) -> BEATs:
    """An official BEATs file (or a folder holding the toy stage's `beats.pt`) as a frozen `BEATs`
    (`BEATs.freeze`: eval mode, no gradients), built from the file's `cfg`.

    Trust: the file is read with `torch.load(weights_only=True)`, which rebuilds tensors and plain containers
    (the `cfg` is a plain dict of numbers, strings and booleans; `label_dict` maps strings) and executes no
    pickled code; `allow_pickle=True` lifts that for a file you trust. The fine-tuned releases' `predictor.*`
    tensors and `label_dict` are ignored. Any other missing or unexpected tensor, or a shape that differs
    from what the cfg builds, is a `UserError` naming the file and the keys.
    """
    path = Path(path)
    cfg_dict, state = _read_official(path, allow_pickle)
    try:
        cfg = BEATsConfig.from_dict(cfg_dict)
        model = BEATs(cfg, layers)
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: its BEATs cfg does not build a model ({error})") from error
    state = {k: v for k, v in state.items() if not k.startswith("predictor.")}
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if problems:
        raise UserError(f"{path}: does not fit BEATs ({len(problems)} problems: {'; '.join(problems[:8])})")
    model.load_state_dict(state)
    log.info("%s: loaded BEATs (%d tensors), layers %s", path, len(state), layers)
    return model.freeze()
