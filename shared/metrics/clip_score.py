"""CS: how well generated audio matches its visual condition in CLIP's image space (GRAVO, Interspeech 2023,
sec. 3.3, "clip-score"; Wav2CLIP is arXiv:2110.11499).

CS = 100 x cos(Wav2CLIP(generated audio), CLIP image embedding of the condition), averaged over the generated
samples. For an image the condition is its one embedding; for a video it is the mean of the per-frame
embeddings (the papers do not say how frames are aggregated; the mean is what Wav2CLIP was trained against).
Im2Wav's CLIP features are L2-normalised per frame (`RoySheffer/im2wav`,
`Data/preprocess/collect_video_CLIP.py`) and are averaged as given; the cosine then normalises the mean.

The metric takes embeddings, so the caller runs the frozen Wav2CLIP (`shared.encoders.load_wav2clip`, whose
per-item normalisation makes a sample's embedding independent of the batch it is embedded in). The per-sample
values and their clip ids are "cat" states (torchmetrics gathers them across processes), and `compute()`
adds the bootstrap interval over clips (`shared.metrics.bootstrap`), as `ClipMean` does for any per-row value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap
from shared.metrics.means import ClipMean


def clip_score(audio_embeddings: torch.Tensor, image_embeddings: torch.Tensor) -> torch.Tensor:
    """100 x cosine of audio [N, D] with image [N, D] (one image) or the frame mean of [N, F, D] (a video) -> [N]."""
    if image_embeddings.dim() == 3:
        image_embeddings = image_embeddings.mean(dim=1)
    if audio_embeddings.dim() != 2 or audio_embeddings.shape != image_embeddings.shape:
        raise ValueError(
            f"expected audio embeddings [N, D] and image embeddings [N, D] or [N, F, D], got "
            f"{tuple(audio_embeddings.shape)} and {tuple(image_embeddings.shape)}"
        )
    return 100 * F.cosine_similarity(audio_embeddings.double(), image_embeddings.double(), dim=-1)


class CLIPScore(ClipMean):
    """`update(audio [N, D], image [N, D] or [N, F, D], ids)`; `compute()` -> {"cs": mean over all generated
    samples of all processes, "cs_lo", "cs_hi": its bootstrap interval over clips (without a bootstrap: "cs")}.

    `ids` name each sample's clip (several samples of one clip are resampled together)."""

    higher_is_better = True

    def __init__(self, bootstrap: Bootstrap | None = BOOTSTRAP, **kwargs):
        super().__init__("cs", bootstrap, **kwargs)

    def update(
        self,
        audio_embeddings: torch.Tensor,
        image_embeddings: torch.Tensor,
        ids: Sequence[str] | torch.Tensor,
    ) -> None:
        super().update(clip_score(audio_embeddings.detach(), image_embeddings.detach()), ids)
