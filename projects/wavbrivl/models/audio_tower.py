"""WavBriVL's audio tower: WavLM, a learned weighted sum of its hidden states, a mean over time and a linear
projection into the image tower's joint space (WavBriVL, arXiv:2303.04585, sec. 3: "the WavLM embedding as
the weighted average of all transformer layer outputs, with the weights learned").

* WavLM is transformers' `WavLMModel`, built from a local folder (its `config.json`, and its weights when the
  folder has them: microsoft/wavlm-base-plus as downloaded) or from a `WavLMConfig` / a dict of its fields
  (random weights: the toy).
* The weighted sum is `WavLMForSequenceClassification`'s `use_weighted_layer_sum` rule: one weight per hidden
  state (the CNN features' projection and each transformer layer: 13 for Base / Base+, 25 for Large),
  initialised equal, softmax-normalised.
* The pooling is the mean over the valid frames (WavLM's feature-vector mask from the clips' `lengths`: 50
  frames a second, 5 s -> 249); the padded samples are also masked in WavLM's self-attention.
* The projection is a Linear to the joint dimension (BriVL's 2048), and the output is l2-normalised as
  BriVL's embeddings are.

Which parts train (`trainable`, not stated by the paper, whose title says "efficient-tuned" and whose sec. 3
says fine-tuning "involves updating the parameters of WavLM"): "projection" (the layer weights and the
projection only), "top:N" (those and the top N transformer layers) or "all". The default "top:2" follows
what BriVL itself does when it adapts pre-trained towers (only the upper blocks of its EfficientNet and
RoBERTa are tuned, `BAAI-WuDao/BriVL`): the top layers, the most task-specific ones, adapt to the image
space while the lower ones, and the 94M parameters in all, are not refitted on 20,000 clips. Frozen parts
stay in eval mode (no dropout or SpecAugment masking there) whatever the module's mode; WavLM's time masking
runs only with "all". LayerDrop is switched off: it would drop hidden states from the weighted sum.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import WavLMConfig, WavLMModel

from shared.runs import UserError

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CHECKPOINT_KEY = "audio_tower_settings"  # where a training checkpoint keeps `WavLMAudioTower.settings()`


def build_wavlm(wavlm: str | Path | dict | WavLMConfig, random_init: bool = False) -> WavLMModel:
    """A `WavLMModel` from a local folder (with weights; `random_init=True` accepts a folder with only its
    `config.json`), a `WavLMConfig` or a dict of its fields (random weights)."""
    if isinstance(wavlm, (str, Path)):
        folder = Path(wavlm)
        if not (folder / "config.json").is_file():
            raise UserError(
                f"{folder}: no config.json; give a WavLM folder such as microsoft/wavlm-base-plus"
            )
        if any((folder / name).is_file() for name in WEIGHT_FILES) and not random_init:
            return WavLMModel.from_pretrained(folder)
        if not random_init:
            raise UserError(
                f"{folder}: no weights ({' or '.join(WEIGHT_FILES)}); download them, or set "
                "random_init: true to build the model with random weights"
            )
        return WavLMModel(WavLMConfig.from_pretrained(folder))
    config = wavlm if isinstance(wavlm, WavLMConfig) else WavLMConfig(**wavlm)
    return WavLMModel(config)


def parse_trainable(trainable: str, layers: int) -> int | None:
    """The number of top transformer layers that train: "projection" -> 0, "top:N" -> N, "all" -> None."""
    if trainable == "all":
        return None
    if trainable == "projection":
        return 0
    if trainable.startswith("top:") and trainable[4:].isdigit() and 0 <= int(trainable[4:]) <= layers:
        return int(trainable[4:])
    raise ValueError(
        f"trainable must be 'projection', 'top:N' (0 <= N <= {layers}) or 'all', not {trainable!r}"
    )


class WeightedLayerSum(nn.Module):
    """sum_l softmax(w)_l h_l over the L hidden states [L, B, T, D] -> [B, T, D]; w starts equal, so the
    softmax weights start at 1/L each."""

    def __init__(self, n_states: int):
        super().__init__()
        self.layer_weights = nn.Parameter(torch.ones(n_states) / n_states)

    @property
    def weights(self) -> torch.Tensor:
        return self.layer_weights.softmax(dim=0)

    def forward(self, hidden_states: tuple[torch.Tensor, ...] | torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(tuple(hidden_states))
        if stacked.shape[0] != self.layer_weights.numel():
            raise ValueError(f"expected {self.layer_weights.numel()} hidden states, got {stacked.shape[0]}")
        return torch.einsum("l,lbtd->btd", self.weights.to(stacked.dtype), stacked)


class WavLMAudioTower(nn.Module):
    """`forward(wave [B, T] float at 16 kHz, lengths [B] valid samples or None) -> [B, embed_dim]`, unit norm
    (module docstring). `frame_mask(lengths, frames)` gives the valid WavLM frames."""

    def __init__(
        self,
        wavlm: str | dict | WavLMConfig,
        embed_dim: int = 2048,
        trainable: str = "top:2",
        random_init: bool = False,
    ):
        super().__init__()
        self.wavlm = build_wavlm(wavlm, random_init)
        config = self.wavlm.config
        # LayerDrop skips whole layers in training, and a skipped layer's hidden state is then missing from
        # the outputs the weighted sum needs (one per layer)
        config.layerdrop = 0.0
        self.embed_dim, self.trainable = embed_dim, trainable
        self.top_layers = parse_trainable(trainable, config.num_hidden_layers)
        self.layer_sum = WeightedLayerSum(config.num_hidden_layers + 1)
        self.projection = nn.Linear(config.hidden_size, embed_dim)
        self.wavlm.requires_grad_(False)
        for module in self.trained_wavlm_parts():
            module.requires_grad_(True)
        self.train()

    def settings(self) -> dict:
        """The arguments that rebuild this tower without its WavLM folder (WavLM's whole config as a dict)."""
        return {
            "wavlm": self.wavlm.config.to_dict(),
            "embed_dim": self.embed_dim,
            "trainable": self.trainable,
        }

    def trained_wavlm_parts(self) -> list[nn.Module]:
        """The parts of WavLM that train: all of it, or its top layers (with the final layer norm that the
        stable-layer-norm layout, WavLM Large's, applies to the top layer's output)."""
        if self.top_layers is None:
            return [self.wavlm]
        if self.top_layers == 0:
            return []
        encoder = self.wavlm.encoder
        parts = list(encoder.layers[-self.top_layers :])
        return [*parts, encoder.layer_norm] if self.wavlm.config.do_stable_layer_norm else parts

    def train(self, mode: bool = True) -> WavLMAudioTower:
        super().train(mode)
        if self.top_layers is not None:
            self.wavlm.eval()
            for module in self.trained_wavlm_parts():
                module.train(mode)
        return self

    def frame_mask(self, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """[B, frames] bool: the WavLM frames computed from valid samples only."""
        valid = self.wavlm._get_feat_extract_output_lengths(lengths.long())
        return torch.arange(frames, device=lengths.device)[None, :] < valid[:, None]

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"expected wave [B, T] at 16 kHz, got {tuple(wave.shape)}")
        attention_mask = None
        if lengths is not None:
            attention_mask = (
                torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]
            ).long()
        out = self.wavlm(wave, attention_mask=attention_mask, output_hidden_states=True)
        states = self.layer_sum(out.hidden_states)
        if lengths is None:
            pooled = states.mean(dim=1)
        else:
            mask = self.frame_mask(lengths.to(wave.device), states.shape[1]).to(states.dtype)
            pooled = (states * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return F.normalize(self.projection(pooled), dim=-1)


def load_audio_tower(path: str | Path) -> WavLMAudioTower:
    """The audio tower of a run folder (its best.ckpt, else last.ckpt) or of a checkpoint file of the audio
    tower stage (`module_audio_tower.WavBriVLTraining`), frozen, in eval mode. The checkpoint carries the
    tower's settings with WavLM's whole config, so no WavLM folder is needed."""
    from shared.runs import run_checkpoint

    path = Path(path)
    ckpt_path = run_checkpoint(path) if path.is_dir() else path
    if not ckpt_path.is_file():
        raise UserError(f"{ckpt_path}: no such checkpoint")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    settings = ckpt.get(CHECKPOINT_KEY)
    if not isinstance(settings, dict):
        raise UserError(
            f"{ckpt_path}: not a checkpoint of the WavBriVL audio tower stage (no {CHECKPOINT_KEY})"
        )
    tower = WavLMAudioTower(**settings)
    prefix = "audio_tower."
    tower.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    return tower.requires_grad_(False).eval()
