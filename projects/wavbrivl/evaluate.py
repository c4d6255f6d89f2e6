"""Table 1/2-shaped results of an audio embedding on a WavBriVL DataModule (WavBriVL arXiv:2303.04585, sec. 4).

For one audio embedding function (`wav [B, T] 16 kHz -> [B, E]`: the trained audio tower, a random-init tower,
Wav2CLIP, the mel statistics) and, where the embedding lives in the image tower's space, the frozen image tower:

- classification (Table 1, "MC"): the linear and MLP probes of `projects.wavbrivl.probes`, trained on the
  embeddings of the DataModule's train split and scored on its test split (accuracy with a bootstrap interval
  over clips, chance 1 / classes);
- cross-modal retrieval (Table 2, "CMR"): MRR audio->image and image->audio over the test clips, each clip's
  audio against the frame the DataModule gives it (the middle one in evaluation), instance and class level,
  with chance levels and intervals (`shared.metrics.retrieval.CrossModalMRR`).

`format_rows` writes one table row per evaluated embedding, and a chance row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from projects.wavbrivl.probes import (
    Embedded,
    EmbedFn,
    ProbeResult,
    ProbeSettings,
    cross_validate,
    embed_batch,
)
from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, format_interval
from shared.metrics.retrieval import CrossModalMRR

PROBES = (ProbeSettings(kind="linear"), ProbeSettings(kind="mlp"))
MRR_COLUMNS = {
    "mrr_a2i": "MRR A->I",
    "mrr_i2a": "MRR I->A",
    "mrr_a2i_class": "MRR A->I (class)",
    "mrr_i2a_class": "MRR I->A (class)",
}


@dataclass
class EvaluationResult:
    """Probe results by kind ("linear", "mlp") and the retrieval metrics (empty without an image tower)."""

    probes: dict[str, ProbeResult]
    retrieval: dict[str, float] = field(default_factory=dict)


@dataclass
class SplitEmbeddings:
    audio: torch.Tensor  # [N, E]
    image: torch.Tensor | None  # [N, E'] or None
    labels: torch.Tensor  # [N]
    clip_ids: list[str]


@torch.no_grad()
def embed_split(
    embed: EmbedFn,
    batches: Iterable[dict],
    image_tower: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> SplitEmbeddings:
    """Audio (and image) embeddings of every batch of a WavBriVL loader (keys `wave`, `lengths`, `image`,
    `label`, `clip_id`); clips of different lengths are embedded unpadded (`probes.embed_batch`)."""
    audio, image, labels, ids = [], [], [], []
    for batch in batches:
        audio.append(embed_batch(embed, batch["wave"].to(device), batch["lengths"]).cpu())
        if image_tower is not None:
            image.append(image_tower(batch["image"].to(device)).float().cpu())
        labels.append(batch["label"].cpu())
        ids += list(batch["clip_id"])
    return SplitEmbeddings(torch.cat(audio), torch.cat(image) if image else None, torch.cat(labels), ids)


def train_split_loader(datamodule) -> DataLoader:
    """The train split read once in order; its dataset takes (epoch, index) keys (epoch 0's frames)."""
    dataset = datamodule.split("train")
    batch_size = getattr(datamodule, "eval_batch_size", None) or datamodule.batch_size
    return DataLoader(dataset, batch_size=batch_size, sampler=[(0, i) for i in range(len(dataset))])


def evaluate_embedding(
    embed: EmbedFn,
    datamodule,
    image_tower: Callable[[torch.Tensor], torch.Tensor] | None = None,
    probes: Iterable[ProbeSettings] = PROBES,
    bootstrap: Bootstrap | None = BOOTSTRAP,
    device: str | torch.device = "cpu",
) -> EvaluationResult:
    """Probes (train split -> test split) and, with `image_tower`, retrieval MRR on the test split."""
    datamodule.setup("test")
    train = embed_split(embed, train_split_loader(datamodule), None, device)
    test = embed_split(embed, datamodule.test_dataloader(), image_tower, device)
    data = Embedded(
        torch.cat([train.audio, test.audio]),
        torch.cat([train.labels, test.labels]),
        ["train"] * len(train.labels) + ["test"] * len(test.labels),
        train.clip_ids + test.clip_ids,
    )
    n_classes = datamodule.n_classes
    results = {s.kind: cross_validate(data, n_classes, s, ["test"], "acc", bootstrap) for s in probes}
    retrieval = {}
    if test.image is not None:
        if test.image.shape[1] != test.audio.shape[1]:
            raise ValueError(
                f"retrieval needs audio and image embeddings in one space: {test.audio.shape[1]} vs "
                f"{test.image.shape[1]} dimensions"
            )
        mrr = CrossModalMRR(bootstrap=bootstrap)
        mrr.update(test.audio, test.image, test.labels, test.clip_ids)
        retrieval = {name: float(value) for name, value in mrr.compute().items()}
    return EvaluationResult(results, retrieval)


def _mrr_cell(retrieval: dict[str, float], name: str) -> str:
    if name not in retrieval:
        return "-"
    if f"{name}_lo" in retrieval:
        return format_interval(retrieval[name], retrieval[f"{name}_lo"], retrieval[f"{name}_hi"])
    return f"{retrieval[name]:.4f}"


def format_rows(results: dict[str, EvaluationResult]) -> str:
    """A markdown table: one row per embedding (probe accuracies, MRR both ways and levels), then chance."""
    kinds = list(dict.fromkeys(kind for r in results.values() for kind in r.probes))
    header = ["embedding", *(f"{kind} acc" for kind in kinds), *MRR_COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        cells = [result.probes[k].formatted() if k in result.probes else "-" for k in kinds]
        cells += [_mrr_cell(result.retrieval, m) for m in MRR_COLUMNS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    chance = [
        next((f"{r.probes[k].chance:.4f}" for r in results.values() if k in r.probes), "-") for k in kinds
    ]
    chance += [
        next((f"{r.retrieval[f'{m}_chance']:.4f}" for r in results.values() if r.retrieval), "-")
        for m in MRR_COLUMNS
    ]
    lines.append("| " + " | ".join(["chance", *chance]) + " |")
    return "\n".join(lines)
