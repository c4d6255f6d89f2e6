"""Per-frame ResNet features of a video: SpecVQGAN's "ResNet-50 (RGB)" condition (paper sec. 6.1.1).

What the official extraction does (`v-iashin/SpecVQGAN`, `feature_extraction/demo_utils.py`: `ExtractResNet50`,
`LeftmostCropOrTile`), and how it is done here:

| official | here |
| --- | --- |
| video re-encoded by FFmpeg to 21.5 fps, cut to 10 s | `load_video(fps=21.5, max_seconds=10, rounding="near")`: the frames FFmpeg's fps filter picks |
| torchvision ResNet-50, ImageNet weights (`pretrained=True`, i.e. `IMAGENET1K_V1`), fc = identity | the same torchvision model, `fc` replaced by `nn.Identity` -> 2048-d |
| PIL resize of the shorter side to 256, centre crop 224, ImageNet mean/std | shorter side scaled to 256 by swscale while decoding, `center_crop` 224, same mean/std |
| videos shorter than 10 s: features tiled to 215 frames | `loop_frames` to floor(duration x fps) = 215 frames |

The released pickles confirm the frame sampling and the tiling: where a 15.25 fps VAS clip's frames repeat
under FFmpeg's rounding, its official features are nearly constant, and the pickles of 6 s and 8 s clips
are periodic with exactly the 129 and 172 frames that `load_video` gives for them (see the tests).
Bit-exact agreement with those pickles is not expected: the official frames went through a lossy H.264
re-encode and PIL's resize.

torchvision and not timm: the official features come from torchvision's ResNet-50 and its weights, which
torchvision (a dependency already) builds and loads by name; timm's ResNet-50 weights are different ones.
The network is a frozen feature extractor: always in eval mode (BatchNorm statistics never update) and run
under `torch.inference_mode` in batches.

`weights` is a local file with a torchvision-format state dict (`.pt`/`.pth` via `torch.load(weights_only=
True)`, or `.safetensors`; `fc.*` keys are ignored), a torchvision weights name of the architecture
(`"IMAGENET1K_V1"`, which torchvision downloads into its cache on first use), or None: random
initialisation from `seed` (toy runs and tests, which must not download anything).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.transforms.v2 import functional as TF

from shared.data.records import ClipRecord
from shared.encoders.frames import FPS, loop_frames
from shared.video import load_video, video_info

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_FAMILY = ("resnet", "resnext", "wide_resnet")


def _is_path(weights: str) -> bool:
    return Path(weights).suffix in (".pt", ".pth", ".bin", ".ckpt", ".safetensors") or Path(weights).exists()


def weights_identity(arch: str, weights: str | Path | None, seed: int = 0) -> str:
    """What makes the weights what they are, for cache keys: a file's content hash, a torchvision name, or the seed."""
    if weights is None:
        return f"random(seed={seed})"
    if _is_path(str(weights)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such weights file")
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return f"file(sha1={digest.hexdigest()})"
    return f"torchvision({_weights_enum(arch, str(weights))})"


def _weights_enum(arch: str, name: str):
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[name]
    except KeyError:
        raise ValueError(
            f"{name}: neither an existing weights file nor a torchvision weights name of {arch} "
            f"(one of {', '.join(enum.__members__)})"
        ) from None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a state dict ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (a torchvision model's state_dict())")
    return state


def build_resnet(arch: str = "resnet50", weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """A torchvision ResNet with `fc` = identity, its output width in `.num_features` (see the module docstring
    for `weights`)."""
    if not arch.startswith(RESNET_FAMILY) or arch not in torchvision.models.list_models(torchvision.models):
        resnets = [
            m for m in torchvision.models.list_models(torchvision.models) if m.startswith(RESNET_FAMILY)
        ]
        raise ValueError(f"{arch}: not a torchvision ResNet (one of {', '.join(resnets)})")
    builder = torchvision.models.get_model_builder(arch)
    with torch.device("meta"):
        dim = builder(weights=None).fc.in_features
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = builder(weights=None)
    elif _is_path(str(weights)):
        path = Path(weights)
        state = {  # float32 whatever the file holds (a half-precision copy loads as float32)
            k: v.float() if v.is_floating_point() else v
            for k, v in _read_state_dict(path).items()
            if not k.startswith("fc.")
        }
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            net = builder(weights=None)
        net.fc = nn.Identity()
        try:
            net.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as err:
            raise ValueError(f"{path}: does not fit a torchvision {arch}: {err}") from err
    else:
        net = builder(weights=_weights_enum(arch, str(weights)))  # torchvision downloads into its cache
    net.fc = nn.Identity()
    net.num_features = dim
    return net


class ResNetFrameFeatures(nn.Module):
    """Frozen per-frame ResNet features of a video: path -> float32 [T, D] (D = 2048 for ResNet-50).

    fps: frame rate of the features (21.5); image_size: centre crop (224); resize: shorter side before the
    crop (default image_size x 256/224, i.e. 256); duration: seconds of video used (10, so at most 215
    frames; None: all of it); loop: tile shorter videos to floor(duration x fps) frames as the official
    code does (False: keep the frames there are); batch_size: frames per forward pass. A toy setting such
    as `arch="resnet18", image_size=64` runs in well under a second per 2 s clip on a CPU.

    Calling the module on a path (str or Path) extracts that video's features; on a uint8 tensor
    [N, 3, H, W] it preprocesses and embeds the frames; on a float tensor it treats it as already
    normalised [N, 3, S, S] input.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        weights: str | Path | None = None,
        fps: float = FPS,
        image_size: int = 224,
        resize: int | None = None,
        duration: float | None = 10.0,
        loop: bool = True,
        batch_size: int = 32,
        seed: int = 0,
    ):
        super().__init__()
        self.arch, self.fps, self.image_size = arch, float(fps), int(image_size)
        self.resize = int(resize) if resize is not None else round(self.image_size * 256 / 224)
        if self.resize < self.image_size:
            raise ValueError(f"resize {self.resize} is smaller than the crop {self.image_size}")
        self.duration, self.loop, self.batch_size = duration, loop, batch_size
        self.net = build_resnet(arch, weights, seed)
        self.net.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    @property
    def dim(self) -> int:
        return self.net.num_features

    @property
    def num_frames(self) -> int | None:
        """Frames per clip after looping: floor(duration x fps) (215 for 10 s), or None (as decoded)."""
        if self.duration is None or not self.loop:
            return None
        return math.floor(self.duration * self.fps + 1e-6)

    def train(self, mode: bool = True) -> ResNetFrameFeatures:
        """Frozen: stays in eval mode whatever a parent module asks."""
        return super().train(False)

    def decode_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) with the shorter side scaled to `resize`, as torchvision's Resize(int) computes it."""
        short, long = (height, width) if height <= width else (width, height)
        new_long = int(self.resize * long / short)
        return (self.resize, new_long) if height <= width else (new_long, self.resize)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> normalised float [N, 3, S, S]: shorter side to `resize`, centre crop, mean/std."""
        if min(frames.shape[-2:]) != self.resize:
            frames = TF.resize(frames, [self.resize], antialias=True)
        frames = TF.center_crop(frames, [self.image_size, self.image_size])
        x = frames.to(self.mean.device, torch.float32) / 255.0
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, H, W] (uint8, or float already normalised to the crop size) -> [N, D], in batches."""
        out = []
        for start in range(0, frames.shape[0], self.batch_size):
            batch = frames[start : start + self.batch_size]
            x = self.preprocess(batch) if batch.dtype == torch.uint8 else batch.to(self.mean.device)
            out.append(self.net(x).float())
        return torch.cat(out) if out else torch.empty(0, self.dim, device=self.mean.device)

    def load_frames(self, path: str | Path) -> torch.Tensor:
        """The video's frames at `fps` as FFmpeg's fps filter picks them, shorter side at `resize`: uint8 [T, 3, H, W]."""
        info = video_info(path)
        return load_video(
            path,
            fps=self.fps,
            size=self.decode_size(info.height, info.width),
            max_seconds=self.duration,
            rounding="near",
        )

    @torch.inference_mode()
    def extract(self, path: str | Path) -> torch.Tensor:
        """A video's features float32 [T, D]: T = floor(duration x fps) with looping, else the decoded frames."""
        feats = self.embed(self.load_frames(path))
        return loop_frames(feats, self.num_frames) if self.num_frames is not None else feats

    def forward(self, video: str | Path | torch.Tensor) -> torch.Tensor:
        if isinstance(video, (str, Path)):
            return self.extract(video)
        return self.embed(video)


class ResNetFeature:
    """A clip's per-frame ResNet features for the feature cache: float32 [T, D] (see `ResNetFrameFeatures`).

    `params()` holds everything that changes the output (architecture, the weights' identity: a file's
    content hash, a torchvision name or the random seed, frame rate, sizes, duration and looping). The
    network is built on first use, in the process that computes (preparation workers each build their own).
    """

    name = "resnet50"  # the cache folder's name, as `avgen prepare --features resnet50` writes it

    def __init__(
        self,
        arch: str = "resnet50",
        weights: str | Path | None = "IMAGENET1K_V1",
        fps: float = FPS,
        image_size: int = 224,
        resize: int | None = None,
        duration: float | None = 10.0,
        loop: bool = True,
        batch_size: int = 32,
        seed: int = 0,
        device: str = "cpu",
    ):
        self.kwargs = dict(
            arch=arch,
            weights=str(weights) if weights is not None else None,
            fps=fps,
            image_size=image_size,
            resize=resize,
            duration=duration,
            loop=loop,
            batch_size=batch_size,
            seed=seed,
        )
        self.device = device
        self._weights_id = weights_identity(arch, self.kwargs["weights"], seed)
        self._model: ResNetFrameFeatures | None = None

    @property
    def model(self) -> ResNetFrameFeatures:
        if self._model is None:
            self._model = ResNetFrameFeatures(**self.kwargs).to(self.device)
        return self._model

    def params(self) -> dict:
        kw = self.kwargs
        resize = kw["resize"] if kw["resize"] is not None else round(kw["image_size"] * 256 / 224)
        return {
            "arch": kw["arch"],
            "weights": self._weights_id,
            "fps": kw["fps"],
            "frame_sampling": "ffmpeg-fps-near",
            "resize": resize,
            "image_size": kw["image_size"],
            "normalize": [IMAGENET_MEAN, IMAGENET_STD],
            "duration": kw["duration"],
            "loop": kw["loop"],
        }

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}  # workers rebuild the network instead of unpickling it

    def __call__(self, record: ClipRecord) -> np.ndarray:
        return self.model.extract(record.path).cpu().numpy().astype(np.float32)
