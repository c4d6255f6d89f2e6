"""Training WavBriVL's audio tower against the frozen image tower (WavBriVL, arXiv:2303.04585, sec. 3: "freeze
the BriVL visual encoder", the audio tower learns to predict the embedding of one frame of its clip).

* Image side: a frozen image tower (`image_tower`: the folder or checkpoint of a toy image-tower run, loaded
  by `projects.wavbrivl.module_image_tower.load_image_tower`; BriVL's released checkpoint with
  `image_tower_kind: brivl`, loaded by `projects.wavbrivl.convert.load_official_brivl_image_tower`; or any
  module images [B, 3, H, W] in [0, 1] -> [B, E] unit norm). It is kept out of the LightningModule's submodules, so it is neither in checkpoints
  nor wrapped by DDP; this module moves it to its device.
* Frame embeddings are cached on disk per (clip, frame) (`frame_cache_dir`; `shared.data.cache.FeatureCache`):
  the cache's parameters hold a hash of the tower's weights and the DataModule's frame and dataset settings,
  so another tower or other frames mean another cache. A frozen tower in eval mode on un-augmented frames
  gives the same embedding every epoch; the cache only saves its compute (BriVL's random grayscale and colour
  jitter are not applied here, which is what makes the frames cacheable).
* Loss (`loss`, not stated by the paper): "moco", BriVL's cross-modal MoCo (`shared.contrastive.MoCoCrossModal`:
  queue 9600, momentum 0.99, temperature 0.07; the audio keys from a momentum copy of the audio tower, in eval
  mode; the image keys are the frozen tower's embeddings; WavLM has no batch norm, so BriVL's shuffle-BN is
  not needed), or "infonce", Wav2CLIP's in-batch symmetric InfoNCE with a learnable temperature
  (`shared.contrastive.SymmetricInfoNCE`). With the image side frozen only the audio->image term of the MoCo
  loss carries a gradient; the logged loss is BriVL's sum of both directions.
* Optimiser: Adam (Wav2CLIP's, `descriptinc/lyrebird-wav2clip`, `wav2clip/pre_training/model.py`) over the
  tower's trainable parts (and InfoNCE's temperature), with Wav2CLIP's ReduceLROnPlateau on the validation
  loss (factor 0.1, patience 5, min 1e-6). The paper config's rate, 1e-4 rather than Wav2CLIP's 1e-3, is ours:
  Wav2CLIP trains a ResNet from scratch, here pre-trained WavLM layers are tuned.
* Validation: the loss (MoCo without enqueueing) and audio -> image retrieval over the whole split: recall@1
  of the clip's own frame (`r1`, chance 1 / N) and of a frame of the same class (`class_r1`).
* TensorBoard (`shared.callbacks.ExampleLogger` in the configs): retrieval examples. After each validation,
  `examples` shows for a few validation clips one picture each: the clip's real frame, then the `example_top_k`
  frames of the validation split whose frozen embeddings are nearest to the clip's audio embedding (cosine, as
  the retrieval metrics), best first, those of the clip's class outlined in green, the others in red.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn

from projects.wavbrivl.data import FrameFeature
from projects.wavbrivl.models.audio_tower import CHECKPOINT_KEY, WavLMAudioTower
from shared.callbacks import Examples, side_by_side
from shared.contrastive import MoCoCrossModal, SymmetricInfoNCE, similarity
from shared.data.cache import FeatureCache
from shared.metrics import StageMeans
from shared.retrieval_validation import RetrievalValidation

LOSSES = ("moco", "infonce")
HIT, MISS = (0.0, 0.8, 0.0), (0.9, 0.0, 0.0)  # outlines of retrieved frames of the clip's class, of another


def outlined(image: torch.Tensor, rgb: tuple[float, float, float], width: int = 2) -> torch.Tensor:
    """An image [3, H, W] with a `width`-pixel border of colour `rgb` drawn over its edges."""
    out = image.clone()
    colour = torch.tensor(rgb, dtype=out.dtype)[:, None, None]
    for edge in (out[:, :width], out[:, -width:], out[:, :, :width], out[:, :, -width:]):
        edge.copy_(colour.expand_as(edge))
    return out


def weights_hash(module: nn.Module) -> str:
    """A hash of a module's state (names, shapes, dtypes and values): another tower, another hash."""
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


IMAGE_TOWER_KINDS = ("run", "brivl")


def build_image_tower(
    image_tower: str | nn.Module, kind: str = "run", tower_args: dict | None = None
) -> nn.Module:
    """The frozen image tower: a module as given, else from a path, the folder or checkpoint of an image-tower
    run (`kind="run"`) or BriVL's released checkpoint (`kind="brivl"`, with `tower_args` describing its
    architecture: BriVL-1.0's B5 at 380 px by default)."""
    if isinstance(image_tower, nn.Module):
        return image_tower
    if kind == "brivl":
        from projects.wavbrivl.convert import load_official_brivl_image_tower

        return load_official_brivl_image_tower(image_tower, **(tower_args or {}))
    if kind != "run":
        raise ValueError(f"image_tower_kind must be one of {IMAGE_TOWER_KINDS}, not {kind!r}")
    from projects.wavbrivl.module_image_tower import load_image_tower

    return load_image_tower(image_tower)


class WavBriVLTraining(RetrievalValidation, LightningModule):
    """Batch keys used: `wave` [B, T] float32 at 16 kHz, `lengths` [B] valid samples, `image` [B, 3, H, W] in
    [0, 1], `clip_id` list of B str and `frame_index` [B] (the frame cache's key), `label` [B] (evaluation)."""

    def __init__(
        self,
        audio_tower: WavLMAudioTower,
        image_tower: str | nn.Module,
        image_tower_kind: str = "run",
        image_tower_args: dict | None = None,
        loss: str = "moco",
        queue_size: int = 9600,
        momentum: float = 0.99,
        temperature: float = 0.07,
        lr: float = 1e-4,
        lr_factor: float = 0.1,
        lr_patience: int = 5,
        min_lr: float = 1e-6,
        frame_cache_dir: str | None = "data/cache",
        example_top_k: int = 4,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        self.save_hyperparameters(ignore=["audio_tower", "image_tower"])
        self.audio_tower = audio_tower
        tower = (
            build_image_tower(image_tower, image_tower_kind, image_tower_args).requires_grad_(False).eval()
        )
        if tower.embed_dim != audio_tower.embed_dim:
            raise ValueError(
                f"the image tower's embedding is {tower.embed_dim}-d, the audio tower's {audio_tower.embed_dim}-d"
            )
        self._image_tower = (tower,)  # a tuple: not a submodule, so not in checkpoints nor in DDP
        self.image_tower_hash = weights_hash(tower)
        if loss == "moco":
            self.loss_fn = MoCoCrossModal(audio_tower.embed_dim, queue_size, temperature, momentum)
            self.audio_momentum = copy.deepcopy(audio_tower).requires_grad_(False).eval()
        else:
            self.loss_fn = SymmetricInfoNCE(temperature, learnable=True)
        self._frame_cache: FeatureCache | None = None
        self.eval_means = StageMeans(["loss"])
        self.init_retrieval()

    @property
    def image_tower(self) -> nn.Module:
        tower = self._image_tower[0]
        if next(tower.parameters()).device != self.device:
            tower.to(self.device)
        return tower

    def train(self, mode: bool = True) -> WavBriVLTraining:
        super().train(mode)
        if self.hparams.loss == "moco":
            self.audio_momentum.eval()  # keys without dropout
        return self

    def frame_cache(self) -> FeatureCache | None:
        """The frame-embedding cache for this tower and the DataModule's frames (None without a cache folder
        or a DataModule that describes its frames)."""
        if self._frame_cache is None and self.hparams.frame_cache_dir is not None:
            datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            if not isinstance(getattr(datamodule, "clip", None), FrameFeature):
                return None
            params = {
                "image_tower": self.image_tower_hash,
                "frames": datamodule.clip.params(),
                **datamodule.dataset.identity(),
            }
            root = Path(self.hparams.frame_cache_dir) / datamodule.dataset.name
            self._frame_cache = FeatureCache(root, "image_tower_emb", params)
        return self._frame_cache

    @torch.no_grad()
    def frame_embeddings(self, batch: dict) -> torch.Tensor:
        """The frozen image tower's embedding of each item's frame [B, E], from the cache where it is there."""
        cache = self.frame_cache()
        if cache is None:
            return self.image_tower(batch["image"].float())
        keys = [
            f"{clip}@{int(frame)}" for clip, frame in zip(batch["clip_id"], batch["frame_index"], strict=True)
        ]
        missing = [i for i, key in enumerate(keys) if not cache.has(key)]
        found = {i: torch.from_numpy(cache.load(key)) for i, key in enumerate(keys) if i not in missing}
        if missing:
            computed = self.image_tower(batch["image"][missing].float()).float()
            for i, embedding in zip(missing, computed, strict=True):
                cache.save(keys[i], embedding.cpu().numpy().astype(np.float32))
                found[i] = embedding.cpu()
        return torch.stack([found[i] for i in range(len(keys))]).to(self.device)

    def losses(
        self, batch: dict, enqueue: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(the loss terms, the audio embeddings [B, E], the frame embeddings [B, E])."""
        images = self.frame_embeddings(batch)
        audio = self.audio_tower(batch["wave"].float(), batch["lengths"])
        if self.hparams.loss == "infonce":
            return {"loss": self.loss_fn(audio, images)}, audio, images
        if enqueue:
            self.loss_fn.update_momentum_copy(self.audio_tower, self.audio_momentum)
        with torch.no_grad():
            keys = self.audio_momentum(batch["wave"].float(), batch["lengths"])
        out = self.loss_fn(audio, keys, images, images, enqueue=enqueue)
        return {"loss": out["loss"], "audio2image": out["a2b"], "image2audio": out["b2a"]}, audio, images

    def on_fit_start(self) -> None:
        batch_size = getattr(self.trainer.datamodule, "batch_size", None) if self.trainer.datamodule else None
        if self.hparams.loss == "moco" and batch_size is not None:
            self.loss_fn.check_batch(batch_size * self.trainer.world_size)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms, _, _ = self.losses(batch, enqueue=True)
        size = len(batch["wave"])
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=size)
        for name in ("audio2image", "image2audio"):
            if name in terms:
                self.log(f"train/{name}", terms[name], batch_size=size)
        if self.hparams.loss == "infonce":
            self.log("train/logit_scale", self.loss_fn.logit_scale.exp(), batch_size=size)
        return terms["loss"]

    def _evaluate(self, batch: dict, stage: str) -> None:
        terms, audio, images = self.losses(batch, enqueue=False)
        self.eval_means.log(self, stage, {"loss": terms["loss"]}, len(audio))
        self.update_retrieval(stage, audio, images, batch["label"], batch.get("index"))

    @torch.no_grad()
    def examples(self, batch: dict) -> Examples:
        """Retrieval examples (module docstring): RGB [N, 3, S, (1 + k) S + gaps], from the validation split the
        last validation gathered (`retrieval_split`; its frames are read again from the validation dataset)."""
        split = self.retrieval_split.get("val")
        if split is None:
            raise RuntimeError("retrieval examples need a finished validation whose batches give `index`")
        audio = self.audio_tower(batch["wave"].float(), batch["lengths"])
        k = min(self.hparams.example_top_k, len(split["image"]))
        nearest = similarity(audio.float(), split["image"].float()).topk(k, dim=1).indices.cpu()
        dataset = self.trainer.val_dataloaders.dataset
        labels, indices = split["label"].cpu(), split["index"].cpu()
        pictures = []
        for frame, label, positions in zip(batch["image"].cpu(), batch["label"].cpu(), nearest, strict=True):
            retrieved = [
                outlined(dataset[int(indices[p])]["image"], HIT if labels[p] == label else MISS)
                for p in positions
            ]
            pictures.append(side_by_side(frame[None], *(image[None] for image in retrieved)))
        return Examples(images={"retrieval": torch.cat(pictures)})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.audio_tower.settings()

    def configure_optimizers(self):
        params = [p for p in self.audio_tower.parameters() if p.requires_grad]
        if self.hparams.loss == "infonce":
            params.append(self.loss_fn.logit_scale)
        optimizer = torch.optim.Adam(params, lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=self.hparams.lr_factor,
            patience=self.hparams.lr_patience,
            min_lr=self.hparams.min_lr,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
