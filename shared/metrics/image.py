"""Metrics of images generated from audio: AudioToken (arXiv:2305.13050), sec. 2.2 and Table 1.

- AIS (`AudioImageSimilarity`) and IIS (`ImageImageSimilarity`): the paper's reference-based similarity, "the
  similarity of the generated image with its input audio, compared against its similarity with arbitrary audio
  from the data" (AIS, Wav2CLIP audio vs CLIP image) and likewise between the generated and the real image
  (IIS, CLIP image embeddings). The paper does not say how the comparison is scored; this follows the public
  implementation of the definition in `BurakCanBiner/SonicDiffusion`, `evaluation.py`: per generated image,
  the share of a fixed pool of other clips' embeddings whose cosine with the image is strictly lower than the
  paired embedding's (a win-rate: 0.5 is chance, 1 is above every pool entry, ties lose), averaged over the
  images. Pinned here, where that code leaves it open: the pool is given by the caller (drawn once with
  `pool_indices`, its size and seed in the config), the same on every process, and a clip's own entry in the
  pool is left out of its comparison (SonicDiffusion's pool is a cached set of random clips, without that
  exclusion).
- AIC (`AudioImageClassAgreement`): an image classifier's class for the generated image against the audio's
  label, agreeing when the two class names match; the paper's classifier is not named and its class set
  differs from the labels, so names match when the cosine of their CLIP text embeddings is above 0.75 (the
  paper's matching score; identical names always match). By default the classifier is zero-shot CLIP over
  the dataset's own class names (`CLIPImageText.zero_shot`, bare names as SonicDiffusion prompts them).
- FID (`ImageFID`): torchmetrics' `FrechetInceptionDistance` on torch-fidelity's Inception v3 (the 2048-d
  pool features), read from a local weights file; on the toy set any image encoder (the toy CLIP's image
  tower), as the audio projects use Melception.

AIS, IIS and AIC keep one value per generated image with its clip id ("cat" states gathered across
processes, `ClipMean`), so `compute()` adds the bootstrap interval over clips (`shared.metrics.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, clip_key_ids
from shared.metrics.means import ClipMean
from shared.runs import UserError

MATCH_THRESHOLD = 0.75  # AudioToken sec. 2.2: class names match above this CLIP text similarity


def pool_indices(n_candidates: int, size: int, seed: int) -> torch.Tensor:
    """`size` distinct indices of `n_candidates` (e.g. the evaluation clips), drawn once by `seed`: the pool."""
    if not 0 < size <= n_candidates:
        raise ValueError(f"a pool of {size} needs 1 to {n_candidates} candidates")
    return torch.randperm(n_candidates, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def win_rates(
    images: torch.Tensor,
    paired: torch.Tensor,
    pool: torch.Tensor,
    own: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per image, the share of pool entries less similar to it than its paired embedding (strictly) [N].

    images [N, E], paired [N, E], pool [P, E] (any scale: cosines are taken); own [N, P] bool marks each
    image's own entries in the pool, which are not compared."""
    if (
        images.dim() != 2
        or paired.shape != images.shape
        or pool.dim() != 2
        or pool.shape[1] != images.shape[1]
    ):
        raise ValueError(
            f"expected images [N, E], paired [N, E] and a pool [P, E], got {tuple(images.shape)}, "
            f"{tuple(paired.shape)}, {tuple(pool.shape)}"
        )
    images, paired, pool = (F.normalize(x.detach().double(), dim=-1) for x in (images, paired, pool))
    paired_cosine = (images * paired).sum(dim=-1, keepdim=True)
    wins = (images @ pool.T) < paired_cosine  # [N, P]
    compared = torch.ones_like(wins) if own is None else ~own.to(wins.device)
    counts = compared.sum(dim=1)
    if (counts == 0).any():
        raise ValueError("an image has no pool entry but its own to be compared with")
    return (wins & compared).sum(dim=1).double() / counts


class ReferenceWinRate(ClipMean):
    """The reference-based win-rate of AIS and IIS against a fixed pool (`win_rates`); see the module docstring.

    `pool` [P, E]: the pool's embeddings (of audio for AIS, of real images for IIS), `pool_ids`: the clip of
    each entry (keys or int64 ids), so that a generated image is not compared with its own clip's entry.
    `update(images [N, E], paired [N, E], ids)`: the generated images' embeddings, their own clips' paired
    embeddings, their clip ids. `compute()` -> {name: the mean win-rate, `<name>_lo`, `<name>_hi`}.
    """

    higher_is_better = True

    def __init__(
        self,
        name: str,
        pool: torch.Tensor,
        pool_ids: Sequence[str] | torch.Tensor,
        bootstrap: Bootstrap | None = BOOTSTRAP,
        **kwargs,
    ):
        super().__init__(name, bootstrap, **kwargs)
        if pool.dim() != 2 or len(pool_ids) != len(pool):
            raise ValueError(
                f"expected a pool [P, E] with P clip ids, got {tuple(pool.shape)}, {len(pool_ids)}"
            )
        self.register_buffer("pool", pool.detach().double(), persistent=False)
        self.register_buffer("pool_ids", clip_key_ids(pool_ids), persistent=False)

    def update(  # type: ignore[override]
        self, images: torch.Tensor, paired: torch.Tensor, ids: Sequence[str] | torch.Tensor
    ) -> None:
        rows = clip_key_ids(ids).to(self.pool_ids.device)
        own = rows[:, None] == self.pool_ids[None, :]
        super().update(win_rates(images, paired, self.pool, own), rows)


class AudioImageSimilarity(ReferenceWinRate):
    """AIS: generated images' CLIP embeddings against their input audio's Wav2CLIP embeddings, with a pool of
    other clips' Wav2CLIP audio embeddings (Wav2CLIP's audio at 16 kHz, the rate it was trained at; the CLIP
    is the one Wav2CLIP was trained against, ViT-B/32 for the released model). Key "ais"."""

    def __init__(self, pool: torch.Tensor, pool_ids, bootstrap: Bootstrap | None = BOOTSTRAP, **kwargs):
        super().__init__("ais", pool, pool_ids, bootstrap, **kwargs)


class ImageImageSimilarity(ReferenceWinRate):
    """IIS: generated images' CLIP embeddings against their clips' real images, with a pool of other clips'
    real-image embeddings (CLIP ViT-L/14 in SonicDiffusion's code). Key "iis"."""

    def __init__(self, pool: torch.Tensor, pool_ids, bootstrap: Bootstrap | None = BOOTSTRAP, **kwargs):
        super().__init__("iis", pool, pool_ids, bootstrap, **kwargs)


def class_matches(
    predicted_names: Sequence[str],
    label_names: Sequence[str],
    predicted_embeddings: torch.Tensor,
    label_embeddings: torch.Tensor,
    threshold: float = MATCH_THRESHOLD,
) -> torch.Tensor:
    """[C_pred, C_label] bool: cosine of the names' text embeddings above `threshold`, or the same name."""
    if len(predicted_embeddings) != len(predicted_names) or len(label_embeddings) != len(label_names):
        raise ValueError("one text embedding per class name is needed")
    cosines = (
        F.normalize(predicted_embeddings.double(), dim=-1) @ F.normalize(label_embeddings.double(), dim=-1).T
    )
    same = torch.tensor([[p == lab for lab in label_names] for p in predicted_names], dtype=torch.bool)
    return (cosines.cpu() > threshold) | same


class AudioImageClassAgreement(ClipMean):
    """AIC: does the image classifier's class for a generated image match its audio's label (`class_matches`)?

    `match` [C_pred, C_label] bool (`from_text_encoder` builds it). `update(predicted [N], labels [N], ids)`:
    class indices into the classifier's classes and into the labels. `compute()` -> {"aic": the share of
    agreeing images, "aic_lo", "aic_hi"}. The default classifier, zero-shot CLIP over the dataset's names:

        aic = AudioImageClassAgreement.from_text_encoder(clip, class_names)
        aic.update(clip.zero_shot(images, class_names, template="{}"), batch["label"], batch["clip_id"])
    """

    higher_is_better = True

    def __init__(self, match: torch.Tensor, bootstrap: Bootstrap | None = BOOTSTRAP, **kwargs):
        super().__init__("aic", bootstrap, **kwargs)
        if match.dim() != 2 or match.dtype != torch.bool:
            raise ValueError(
                f"expected a bool match table [C_pred, C_label], got {match.dtype} {tuple(match.shape)}"
            )
        self.register_buffer("match", match, persistent=False)

    @classmethod
    def from_text_encoder(
        cls,
        text_encoder,
        label_names: Sequence[str],
        predicted_names: Sequence[str] | None = None,
        threshold: float = MATCH_THRESHOLD,
        **kwargs,
    ) -> AudioImageClassAgreement:
        """Match table from `text_encoder.encode_texts` (a `shared.encoders.CLIPImageText`) of the bare names;
        the classifier's classes are the labels unless `predicted_names` are given."""
        predicted_names = list(label_names if predicted_names is None else predicted_names)
        match = class_matches(
            predicted_names,
            label_names,
            text_encoder.encode_texts(predicted_names),
            text_encoder.encode_texts(list(label_names)),
            threshold,
        )
        return cls(match, **kwargs)

    def update(  # type: ignore[override]
        self, predicted: torch.Tensor, labels: torch.Tensor, ids: Sequence[str] | torch.Tensor
    ) -> None:
        predicted, labels = predicted.reshape(-1).long(), labels.reshape(-1).long()
        if len(predicted) != len(labels):
            raise ValueError(f"{len(predicted)} predicted classes need as many labels, got {len(labels)}")
        agree = self.match[predicted.to(self.match.device), labels.to(self.match.device)]
        super().update(agree.double(), ids)


class ImageFeatures(nn.Module):
    """An image encoder (`encode_images(images [B, 3, H, W] in [-1, 1]) -> [B, E]`, `embed_dim` E, e.g. a
    `CLIPImageText`) as torchmetrics' FID wants a custom feature module (`num_features`)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.num_features = encoder.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_images(images)


class ImageFID(FrechetInceptionDistance):
    """FID of generated against real images (AudioToken Table 1), torchmetrics' `FrechetInceptionDistance`.

    `update(images [B, 3, H, W] in [-1, 1], real: bool)`; `compute()` -> the FID (states are sums, reduced
    across processes by torchmetrics).

    `feature` an int (64, 192, 768 or 2048, the pool features of the paper's FID): torch-fidelity's Inception
    v3 (the TF Inception of Heusel et al.'s FID, ported), loaded from `weights_path`, a local copy of
    torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`; nothing is downloaded (without a path this
    refuses rather than letting torch-fidelity fetch it). The pinned input policy: images mapped to [0, 255]
    and rounded to 8 bits (torchmetrics' own `normalize=True` truncates instead), resized inside torchmetrics to
    299 x 299 by bilinear interpolation with antialiasing (`antialias=True`, torchmetrics' default; False gives
    torch-fidelity's TF1-compatible bilinear without antialiasing, the original FID's), aspect not kept, then
    (x - 128) / 128 as torch-fidelity does.

    `feature` a module: any image encoder with `encode_images` and `embed_dim` (`ImageFeatures`), which gets
    the [-1, 1] images as they are (the toy CLIP's image tower preprocesses them itself).
    """

    def __init__(
        self,
        feature: int | nn.Module = 2048,
        weights_path: str | Path | None = None,
        antialias: bool = True,
        reset_real_features: bool = True,
        **kwargs,
    ):
        if isinstance(feature, int):
            if weights_path is None or not Path(weights_path).is_file():
                raise UserError(
                    f"{weights_path}: FID needs a local copy of torch-fidelity's Inception weights "
                    "(weights-inception-2015-12-05-6726825d.pth); nothing is downloaded"
                )
            super().__init__(
                feature,
                reset_real_features=reset_real_features,
                feature_extractor_weights_path=str(weights_path),
                antialias=antialias,
                **kwargs,
            )
        else:
            feature = feature if hasattr(feature, "num_features") else ImageFeatures(feature)
            super().__init__(feature, reset_real_features=reset_real_features, normalize=True, **kwargs)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] as the feature network reads them (the input policy above)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        if not self.used_custom_model:
            images = ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return images

    def update(self, images: torch.Tensor, real: bool) -> None:  # type: ignore[override]
        super().update(self._inputs(images), real=real)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The features FID compares, [B, D] float64, for a distance computed elsewhere (e.g. with a bootstrap
        interval: `shared.metrics.FrechetDistance`)."""
        return self.inception(self._inputs(images)).double().reshape(len(images), -1)
