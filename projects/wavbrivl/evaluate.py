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

Generation (sec. 5; the paper judges it by eye): `evaluate_generation` generates one image from the audio of
each of the first `per_class` test clips of every class (`projects.wavbrivl.generation.generate_image`, the
image tower as perceptor) and reports how the image tower's similarity between image and audio embedding
moved over the iterations (first iteration -> best), the agreement of the image tower's class head on the
generated image with the clip's class (chance 1 / classes; the head sits on the perceptor's own embedding,
so this measures whether the optimisation reached the class region of the space it optimised in, not an
independent judge's view) and the seconds per image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from projects.wavbrivl.generation import GenerationSettings, generate_image
from projects.wavbrivl.probes import (
    Embedded,
    EmbedFn,
    ProbeResult,
    ProbeSettings,
    cross_validate,
    embed_batch,
)
from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, bootstrap_interval, format_interval, mean_statistic
from shared.metrics.retrieval import CrossModalMRR

PROBES = (ProbeSettings(kind="linear"), ProbeSettings(kind="mlp"))
METRIC_NAMES = {"acc": "acc", "map": "mAP"}  # a probe's metric as a column header names it
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


def format_rows(results: dict[str, EvaluationResult], retrieval: bool = True) -> str:
    """A markdown table: one row per embedding (each probe's accuracy or mAP and, with `retrieval`, MRR both
    ways and levels), then chance."""
    metric_of = {kind: r.probes[kind].metric for r in results.values() for kind in r.probes}
    kinds = list(metric_of)
    mrr_columns = MRR_COLUMNS if retrieval else {}
    header = ["embedding", *(f"{k} {METRIC_NAMES[m]}" for k, m in metric_of.items()), *mrr_columns.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        cells = [result.probes[k].formatted() if k in result.probes else "-" for k in kinds]
        cells += [_mrr_cell(result.retrieval, m) for m in mrr_columns]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    chance = [
        next((f"{r.probes[k].chance:.4f}" for r in results.values() if k in r.probes), "-") for k in kinds
    ]
    chance += [
        next((f"{r.retrieval[f'{m}_chance']:.4f}" for r in results.values() if r.retrieval), "-")
        for m in mrr_columns
    ]
    lines.append("| " + " | ".join(["chance", *chance]) + " |")
    return "\n".join(lines)


@dataclass
class GenerationEvaluation:
    """Per generated image: its clip, the clip's class, the class the image tower's head gives the image, the
    similarity curve; and the seconds per image."""

    clip_ids: list[str]
    labels: torch.Tensor  # [N]
    predicted: torch.Tensor  # [N]
    curves: list[list[float]]
    seconds_per_image: float
    n_classes: int

    def _mean(self, values: torch.Tensor, bootstrap: Bootstrap | None) -> str:
        values = values.double()
        if bootstrap is None:
            return f"{values.mean():.3f}"
        n = len(values)
        low, high = bootstrap_interval(mean_statistic(values, torch.arange(n), n), n, bootstrap)
        return format_interval(float(values.mean()), low, high)

    def lines(self, bootstrap: Bootstrap | None = BOOTSTRAP) -> list[str]:
        first = torch.tensor([curve[0] for curve in self.curves])
        best = torch.tensor([max(curve) for curve in self.curves])
        agree = (self.predicted == self.labels).double()
        n = len(self.curves)
        return [
            f"similarity image/audio, first iteration {self._mean(first, bootstrap)} -> best "
            f"{self._mean(best, bootstrap)} (higher in {int((best > first).sum())} of {n} images)",
            f"class agreement of the generated image {self._mean(agree, bootstrap)} "
            f"(chance {1 / self.n_classes:.3f})",
            f"{self.seconds_per_image:.1f} s per image ({len(self.curves[0])} iterations)",
        ]


@torch.no_grad()
def _target(audio_tower: EmbedFn, batch: dict, row: int) -> torch.Tensor:
    length = int(batch["lengths"][row])
    return audio_tower(batch["wave"][row : row + 1, :length])[0]


def evaluate_generation(
    audio_tower: EmbedFn,
    image_tower: nn.Module,
    vqgan: nn.Module,
    datamodule,
    settings: GenerationSettings,
    per_class: int = 2,
    seed: int = 0,
) -> GenerationEvaluation:
    """One image for each of the first `per_class` test clips of every class (module docstring). The
    image tower needs a class head (`classify`); image i's optimisation is seeded by (seed, i)."""
    datamodule.setup("test")
    taken: dict[int, int] = {}
    ids, labels, predicted, curves = [], [], [], []
    start = time.perf_counter()
    for batch in datamodule.test_dataloader():
        for row, label in enumerate(batch["label"].tolist()):
            if taken.get(label, 0) == per_class:
                continue
            taken[label] = taken.get(label, 0) + 1
            generator = torch.Generator().manual_seed(seed * 1_000_003 + len(ids))
            image, curve = generate_image(
                vqgan, image_tower, _target(audio_tower, batch, row), settings, generator
            )
            with torch.no_grad():
                predicted.append(int(image_tower.classify(image[None]).argmax()))
            ids.append(batch["clip_id"][row])
            labels.append(label)
            curves.append(curve)
    if not ids:
        raise RuntimeError(f"{datamodule.dataset}: no test clips to generate from")
    seconds = (time.perf_counter() - start) / len(ids)
    return GenerationEvaluation(
        ids, torch.tensor(labels), torch.tensor(predicted), curves, seconds, datamodule.n_classes
    )
