"""Per-frame CLIP image embeddings of a video or a still image: Im2Wav's and GRAVO's visual condition.

Im2Wav (arXiv:2211.03089, sec. 3; `RoySheffer/im2wav`, `Data/preprocess/collect_video_CLIP.py`) embeds every
frame of a clip with CLIP ViT-B/32's `encode_image` (the projected 512-d image embedding) and divides each
embedding by its L2 norm; GRAVO (Interspeech 2023, sec. 3.1) keeps these features at 30 fps and pads videos
with fewer frames with their first and last frames. Here the frames are sampled on the video's own
timeline at `fps`: frame k is the source frame on screen at k / fps (`shared.video.load_video`, rounding
"down"), so a 30-fps video gives every decoded frame, as the official extraction does, and a 25-fps video
repeats every fifth frame instead of running fast. Times before the first decoded frame show the first
frame; with `duration`, a video that ends early is padded with its last frame up to floor(duration x fps)
frames (GRAVO's padding). A still image (jpg, png) gives one row: GRAVO uses each image "as a 4-second video
clip", which the data modules make by repeating that row over the window's frames.

`pretrained` is an open_clip tag ("openai": the weights of OpenAI's ViT-B/32, which the official code loads
through the `clip` package), a local checkpoint, or None: random weights from `seed`, with `model_cfg`
overriding the architecture (toy runs and tests, which must not download).

`Im2WavCLIPFiles` reads the official feature pickles instead, `<stem>.pickle` = {stem: float32 (n, 512)}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from shared.data.indexes import IMAGE_SUFFIXES
from shared.data.records import ClipRecord
from shared.encoders.clip import FrozenCLIPVisual, _pretrained_identity
from shared.encoders.official import load_pickle
from shared.video import load_image, load_video


class CLIPImageEmbedder(FrozenCLIPVisual):
    """Frozen CLIP image embeddings: frames uint8 [N, 3, H, W] -> float32 [N, embed_dim], each of unit L2 norm
    (open_clip's `encode_image`, the vision tower with its output projection, then `/ norm`)."""

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        model_cfg: dict | None = None,
        batch_size: int = 64,
        seed: int = 0,
    ):
        super().__init__(model_name, pretrained, model_cfg, batch_size, seed)

    @property
    def dim(self) -> int:
        return self.visual.output_dim

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        embeddings = []
        for start in range(0, frames.shape[0], self.batch_size):
            embedding = self.visual(self.preprocess(frames[start : start + self.batch_size])).float()
            embeddings.append(embedding / embedding.norm(dim=-1, keepdim=True))
        return torch.cat(embeddings)


def pad_with_last(feats: torch.Tensor, length: int) -> torch.Tensor:
    """[N, ...] -> [max(N, length), ...]: rows past the end repeat the last row."""
    if feats.shape[0] >= length:
        return feats
    return torch.cat([feats, feats[-1:].expand(length - feats.shape[0], *feats.shape[1:])])


class CLIPEmbeddingFeature:
    """A clip's per-frame CLIP image embeddings for the feature cache: float32 [N, D] (module docstring).

    Video: N = floor(seconds x fps) frames, seconds = `duration` (shorter videos padded with the last
    frame, longer ones cut) or, with `duration=None`, the video's own length. Image: N = 1.
    """

    name = "clip_emb"
    # torch threads while preparing (`prepare_features`): one per process, the preparation's worker processes
    # give the parallelism; a toy model's small operations ran many times slower on two threads than on one
    threads = 1

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        fps: float = 30.0,
        duration: float | None = None,
        model_cfg: dict | None = None,
        batch_size: int = 64,
        seed: int = 0,
        device: str = "cpu",
    ):
        self.kwargs = dict(
            model_name=model_name,
            pretrained=pretrained,
            model_cfg=model_cfg,
            batch_size=batch_size,
            seed=seed,
        )
        self.fps, self.duration, self.device = float(fps), duration, device
        self._pretrained_id = _pretrained_identity(pretrained, seed)
        self._model: CLIPImageEmbedder | None = None

    @property
    def model(self) -> CLIPImageEmbedder:
        if self._model is None:
            self._model = CLIPImageEmbedder(**self.kwargs).to(self.device)
        return self._model

    @property
    def dim(self) -> int:
        return self.model.dim

    def params(self) -> dict:
        kw = self.kwargs
        return {
            "model_name": kw["model_name"], "model_cfg": kw["model_cfg"], "weights": self._pretrained_id,
            "output": "encode_image/l2", "fps": self.fps, "frame_sampling": "on-screen", "duration": self.duration,
            "padding": "first/last frame", "image": "one row",
        }  # fmt: skip

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}  # workers rebuild the network instead of unpickling it

    def extract(self, path: str | Path) -> torch.Tensor:
        """[N, D] for a video, [1, D] for an image (see the class docstring)."""
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return self.model(load_image(path))
        frames = load_video(
            path,
            fps=self.fps,
            max_seconds=self.duration,
            rounding="down",
            transform=self.model.fit_decoded_frame,
        )
        embeddings = self.model(frames)
        if self.duration is None:
            return embeddings
        return pad_with_last(embeddings, int(np.floor(self.duration * self.fps + 1e-6)))

    def __call__(self, record: ClipRecord) -> np.ndarray:
        return self.extract(record.path).cpu().numpy().astype(np.float32)


class Im2WavCLIPFiles:
    """Im2Wav's released per-frame CLIP features as a feature for the cache: float32 [n, 512].

    `root` holds one `<stem>.pickle` per clip, {stem: float32 (n_frames, 512)} (written by
    `Data/preprocess/collect_video_CLIP.py`), the stem being the clip id (VGGSound `<ytid>_<start>_<end>`).
    Each file is read once, safely (`shared.encoders.official.load_pickle`), and cached as `.npy`.
    """

    name = "im2wav_clip_emb"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def params(self) -> dict:
        return {"im2wav_clip_files": str(self.root.resolve())}

    def __call__(self, record: ClipRecord) -> np.ndarray:
        stem = record.clip_id.rsplit("/", 1)[-1]
        path = self.root / f"{stem}.pickle"
        content = load_pickle(path)
        if not isinstance(content, dict) or stem not in content:
            raise ValueError(f"{path}: expected a dict {{{stem!r}: float32 (n_frames, 512)}}")
        array = np.asarray(content[stem])
        if array.ndim != 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"{path}: expected frame embeddings (n_frames, 512), found {array.dtype} {array.shape}"
            )
        return array.astype(np.float32, copy=False)
