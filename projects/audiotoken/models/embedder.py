"""AudioToken's Embedder: audio-encoder features -> one pseudo-word token (AudioToken arXiv:2305.13050, sec. 2.1).

The paper maps the concatenated BEATs layers [B, N, C_in] with "two linear layers and attentive pooling" to one
vector e_audio in the text encoder's input-embedding space. The official code (`guyyariv/AudioToken`,
`modules/AudioToken/embedder.py`, class `FGAEmbedder`) makes the pooling the single-utility case of Factor Graph
Attention (`modules/FGA/atten.py`, `Atten(util_e=[D], pairwise_flag=False)`): per frame t a unary potential u_t
and a self-pairwise potential p_t are combined by a bias-free 1x1 convolution into a score a_t, and the token is
sum_t softmax_t(a)_t x_t. The module names below reproduce that file's state-dict keys exactly (fc1, fc2,
fga.un_models.0.*, fga.pp_models.0.*, fga.reduce_potentials.0), so an official `embedder_learned_embeds.bin`
loads with strict=True. Written here because no library provides FGA; only its single-utility path exists.

Difference from the official code: the unary branch's p = 0.5 dropout there ignores `module.training`
(`F.dropout` without `training=`), so inference tokens are random. Here it follows `module.training`;
`official_dropout=True` reproduces the always-on behaviour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UnaryPotential(nn.Module):
    """u_t = W_r dropout(ReLU(W_e x_t + b_e)) + b_r: how much frame t matters on its own (FGA's `Unary`)."""

    def __init__(self, dim: int, dropout: float = 0.5, official_dropout: bool = False):
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, 1)
        self.feature_reduce = nn.Conv1d(dim, 1, 1)
        self.dropout = dropout
        self.official_dropout = official_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D, T] -> [B, T]."""
        hidden = F.dropout(
            F.relu(self.embed(x)), self.dropout, training=self.training or self.official_dropout
        )
        return self.feature_reduce(hidden).squeeze(1)


class SelfPairwisePotential(nn.Module):
    """p_t = mean_j <x̂_t, ŷ_j>, x̂ and ŷ two l2-normalised 1x1 projections: how much frame t agrees with the
    others (FGA's `Pairwise` for self-interaction without spatial sizes, so no batch norm, plain mean)."""

    def __init__(self, dim: int):
        super().__init__()
        self.embed_X = nn.Conv1d(dim, dim, 1)
        self.embed_Y = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D, T] -> [B, T]."""
        queries = F.normalize(self.embed_X(x), dim=1)
        keys = F.normalize(self.embed_Y(x), dim=1)
        return torch.einsum("bdt,bds->bts", queries, keys).mean(dim=2)


class AttentivePooling(nn.Module):
    """Softmax pooling over frames with scores a_t = w_1 u_t + w_2 p_t (FGA's `Atten` for one utility, no
    prior). The list/dict containers exist only to give the official key names (`un_models.0`, `pp_models.0`,
    `reduce_potentials.0`)."""

    def __init__(self, dim: int, official_dropout: bool = False):
        super().__init__()
        self.un_models = nn.ModuleList([UnaryPotential(dim, official_dropout=official_dropout)])
        self.pp_models = nn.ModuleDict({"0": SelfPairwisePotential(dim)})
        # inputs ordered [unary, pairwise] as the official code concatenates them
        self.reduce_potentials = nn.ModuleList([nn.Conv1d(2, 1, 1, bias=False)])

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> alpha [B, T], non-negative, summing to 1 over T."""
        channels_first = x.transpose(1, 2)
        potentials = torch.stack(
            [self.un_models[0](channels_first), self.pp_models["0"](channels_first)], dim=1
        )
        return self.reduce_potentials[0](potentials).squeeze(1).softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> sum_t alpha_t x_t [B, D]."""
        return torch.einsum("bt,btd->bd", self.weights(x), x)


class Embedder(nn.Module):
    """fc1 (C_in -> C_in), GELU, fc2 (C_in -> D) per frame, then attentive pooling over frames (arXiv:2305.13050,
    sec. 2.1; `guyyariv/AudioToken`, `modules/AudioToken/embedder.py`).

    input_size is 3 x BEATs' width (layers 4, 8, 12: 2304 for the released BEATs); output_size is the text
    encoder's hidden size (768 for SD 1.x, 1024 for SD 2.x). forward(feats [B, N, C_in]) -> token [B, D].
    """

    def __init__(self, input_size: int = 2304, output_size: int = 768, official_dropout: bool = False):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.fc1 = nn.Linear(input_size, input_size)
        self.fc2 = nn.Linear(input_size, output_size)
        self.fga = AttentivePooling(output_size, official_dropout=official_dropout)

    def frames(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, N, C_in] -> per-frame vectors [B, N, D] that the pooling averages."""
        if feats.ndim != 3 or feats.shape[-1] != self.input_size:
            raise ValueError(f"Embedder expects features [B, N, {self.input_size}], got {list(feats.shape)}")
        return self.fc2(F.gelu(self.fc1(feats)))

    def attention_weights(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, N, C_in] -> pooling weights alpha [B, N] (sum to 1 over N)."""
        return self.fga.weights(self.frames(feats))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fga(self.frames(feats))
