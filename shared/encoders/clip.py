"""Per-frame CLIP features of a video: the CLS and patch tokens of chosen layers (TiVA sec. 3.2.1, 4.1.1).

TiVA reads, for every frame at 10 fps, the CLS and patch tokens of CLIP layers 4, 8 and 11: S maps the layer-11
CLS token to the semantic condition, T pools the patch tokens of all three layers (eqs. 2-4). Here any open_clip
vision tower serves: `model.visual.forward_intermediates` returns the raw residual stream after the given blocks
(before `ln_post`, not projected to the embedding width). The indices are open_clip's, 0-based block
indices; the paper's "4, 8, 11" of a 12-block ViT-B read as (4, 8, 11) here, 11 being the last block (the
paper does not say which convention it used). Frames are preprocessed as CLIP expects (shorter side to the
model's image size, bicubic, centre crop, the model's mean and std).

Patch tokens are stored averaged over the image, per layer: T's eq. 3 pools them anyway, and all tokens of three
layers of a 10-s clip would take 24-94 MB (about 103 frames x 3 layers x 50 (ViT-B/32) or 197 (ViT-B/16)
tokens x 768 x 2 bytes in fp16). So a clip's feature is float32 [N, 2, L, D]: index
0 of the second axis is the CLS token, index 1 the mean patch token (`split_clip_feature`).

`pretrained` is an open_clip tag (e.g. "openai", downloaded to open_clip's cache on first use), a local
checkpoint file, or None: random weights from `seed` (toy runs and tests, which must not download). A small
architecture for toy runs is given by `model_cfg`, open_clip's config keys (`embed_dim`, `vision_cfg`,
`text_cfg`) that override those of `model_name`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import open_clip
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from shared.data.records import ClipRecord
from shared.encoders.frames import loop_frames
from shared.video import load_video


def _pretrained_identity(pretrained: str | None, seed: int) -> str:
    if pretrained is None:
        return f"random(seed={seed})"
    path = Path(pretrained)
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CLIP checkpoint file not found")
        return "sha1:" + hashlib.sha1(path.read_bytes()).hexdigest()
    return f"open_clip:{pretrained}"


class FrozenCLIPVisual(nn.Module):
    """A frozen open_clip vision tower with CLIP's image preprocessing; subclasses choose what they read of it."""

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        model_cfg: dict | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ):
        super().__init__()
        _pretrained_identity(pretrained, seed)  # a missing local file fails here, naming it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=pretrained, **(model_cfg or {}))
        self.visual = model.visual.requires_grad_(False)
        self.model_name, self.batch_size = model_name, batch_size
        config = self.visual.preprocess_cfg
        self.image_size = int(
            config["size"][0] if isinstance(config["size"], (tuple, list)) else config["size"]
        )
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenCLIPVisual:
        """Frozen: stays in eval mode whatever a parent module asks."""
        return super().train(False)

    def fit_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> uint8 [N, 3, S, S]: CLIP's bicubic resize of the shorter side and centre crop
        (frames already S x S pass unchanged)."""
        x = TF.resize(frames, [self.image_size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        return TF.center_crop(x, [self.image_size, self.image_size])

    def fit_decoded_frame(self, rgb: np.ndarray) -> np.ndarray:
        """`fit_frames` of one decoded frame, uint8 [H, W, 3] -> [S, S, 3]: applied while a video decodes, so a
        long high-resolution clip is never held in memory at full size."""
        return self.fit_frames(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> normalised float [N, 3, S, S] (`fit_frames`, then the model's mean and std)."""
        x = self.fit_frames(frames).to(self.mean.device, torch.float32) / 255.0
        return (x - self.mean) / self.std


class CLIPFrameFeatures(FrozenCLIPVisual):
    """Frozen per-frame CLIP token features: frames [N, 3, H, W] (uint8) -> {"cls", "patch": [N, L, D]}."""

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        layers: tuple[int, ...] = (4, 8, 11),
        model_cfg: dict | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ):
        super().__init__(model_name, pretrained, model_cfg, batch_size, seed)
        n_blocks = len(self.visual.transformer.resblocks)
        if not all(0 <= i < n_blocks for i in layers):
            raise ValueError(f"layers {tuple(layers)} outside the {n_blocks} blocks of {model_name}")
        self.layers = list(layers)

    @property
    def dim(self) -> int:
        return self.visual.transformer.width

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        cls, patch = [], []
        for start in range(0, frames.shape[0], self.batch_size):
            x = self.preprocess(frames[start : start + self.batch_size])
            out = self.visual.forward_intermediates(
                x, indices=self.layers, intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
            )
            cls.append(torch.stack([t[:, 0] for t in out["image_intermediates_prefix"]], dim=1))
            patch.append(torch.stack([t.mean(dim=1) for t in out["image_intermediates"]], dim=1))
        return {"cls": torch.cat(cls).float(), "patch": torch.cat(patch).float()}


def split_clip_feature(feature: np.ndarray | torch.Tensor):
    """A cached clip feature [N, 2, L, D] -> (cls [N, L, D], patch [N, L, D])."""
    return feature[:, 0], feature[:, 1]


class CLIPFeature:
    """A clip's per-frame CLIP tokens for the feature cache: float32 [N, 2, L, D] (see the module docstring),
    N = floor(duration x fps) frames (shorter videos are looped, as the audio is)."""

    name = "clip"

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        layers: tuple[int, ...] = (4, 8, 11),
        fps: float = 10.0,
        duration: float = 10.24,
        model_cfg: dict | None = None,
        batch_size: int = 32,
        seed: int = 0,
        device: str = "cpu",
    ):
        self.kwargs = dict(
            model_name=model_name, pretrained=pretrained, layers=tuple(layers), model_cfg=model_cfg,
            batch_size=batch_size, seed=seed,
        )  # fmt: skip
        self.fps, self.duration, self.device = float(fps), float(duration), device
        self._pretrained_id = _pretrained_identity(pretrained, seed)
        self._model: CLIPFrameFeatures | None = None

    @property
    def num_frames(self) -> int:
        return math.floor(self.duration * self.fps + 1e-6)

    @property
    def model(self) -> CLIPFrameFeatures:
        if self._model is None:
            self._model = CLIPFrameFeatures(**self.kwargs).to(self.device)
        return self._model

    def params(self) -> dict:
        kw = self.kwargs
        return {
            "model_name": kw["model_name"], "model_cfg": kw["model_cfg"], "weights": self._pretrained_id,
            "layers": list(kw["layers"]), "fps": self.fps, "frame_sampling": "ffmpeg-fps-near",
            "duration": self.duration, "loop": True, "tokens": ["cls", "mean_patch"],
        }  # fmt: skip

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}  # workers rebuild the network instead of unpickling it

    def extract(self, path: str | Path) -> torch.Tensor:
        frames = load_video(
            path,
            fps=self.fps,
            max_seconds=self.duration,
            rounding="near",
            transform=self.model.fit_decoded_frame,
        )
        out = self.model(frames)
        return loop_frames(torch.stack([out["cls"], out["patch"]], dim=1), self.num_frames)

    def __call__(self, record: ClipRecord) -> np.ndarray:
        return self.extract(record.path).cpu().numpy().astype(np.float32)
