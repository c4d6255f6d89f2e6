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

`evaluate_run` is an audio-tower run's retrieval and generation evaluated this way for `avgen evaluate`
(`shared.evaluation`).
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
    similarity curve, the image ([3, H, W] in [0, 1]); and the seconds per image."""

    clip_ids: list[str]
    labels: torch.Tensor  # [N]
    predicted: torch.Tensor  # [N]
    curves: list[list[float]]
    seconds_per_image: float
    n_classes: int
    images: list[torch.Tensor] = field(default_factory=list)

    def per_image(self) -> dict[str, torch.Tensor]:
        """The similarity at the first and the best iteration, and the class agreement, of every image."""
        return {
            "similarity_first": torch.tensor([curve[0] for curve in self.curves]),
            "similarity_best": torch.tensor([max(curve) for curve in self.curves]),
            "class_agreement": (self.predicted == self.labels).double(),
        }

    def values(self, bootstrap: Bootstrap | None = BOOTSTRAP) -> dict[str, float]:
        """`per_image`'s means with their intervals over images (`<name>_lo`, `<name>_hi`), the agreement's
        chance level and the seconds per image."""
        out = {"class_agreement_chance": 1 / self.n_classes, "seconds_per_image": self.seconds_per_image}
        for name, values in self.per_image().items():
            mean, low, high = _mean_interval(values, bootstrap)
            out[name] = mean
            if bootstrap is not None:
                out[f"{name}_lo"], out[f"{name}_hi"] = low, high
        return out

    def lines(self, bootstrap: Bootstrap | None = BOOTSTRAP) -> list[str]:
        first, best, agree = self.per_image().values()
        n = len(self.curves)
        return [
            f"similarity image/audio, first iteration {_formatted(first, bootstrap)} -> best "
            f"{_formatted(best, bootstrap)} (higher in {int((best > first).sum())} of {n} images)",
            f"class agreement of the generated image {_formatted(agree, bootstrap)} "
            f"(chance {1 / self.n_classes:.3f})",
            f"{self.seconds_per_image:.1f} s per image ({len(self.curves[0])} iterations)",
        ]


def _mean_interval(values: torch.Tensor, bootstrap: Bootstrap | None) -> tuple[float, float, float]:
    """The mean of per-image values and its bootstrap interval over images (NaN without a bootstrap)."""
    values, n = values.double(), len(values)
    if bootstrap is None:
        return float(values.mean()), float("nan"), float("nan")
    low, high = bootstrap_interval(mean_statistic(values, torch.arange(n), n), n, bootstrap)
    return float(values.mean()), low, high


def _formatted(values: torch.Tensor, bootstrap: Bootstrap | None) -> str:
    mean, low, high = _mean_interval(values, bootstrap)
    return f"{mean:.3f}" if bootstrap is None else format_interval(mean, low, high)


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
    per_class: int | None = 2,
    seed: int = 0,
    batches: Iterable[dict] | None = None,
) -> GenerationEvaluation:
    """One image for each of the first `per_class` test clips of every class (all with None; module
    docstring), of `batches` when given, else of the datamodule's test loader. The image tower needs a class
    head (`classify`); image i's optimisation is seeded by (seed, i)."""
    if batches is None:
        datamodule.setup("test")
        batches = datamodule.test_dataloader()
    taken: dict[int, int] = {}
    ids, labels, predicted, curves, images = [], [], [], [], []
    start = time.perf_counter()
    for batch in batches:
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
            images.append(image.detach().cpu())
    if not ids:
        raise RuntimeError(f"{datamodule.dataset}: no test clips to generate from")
    seconds = (time.perf_counter() - start) / len(ids)
    return GenerationEvaluation(
        ids, torch.tensor(labels), torch.tensor(predicted), curves, seconds, datamodule.n_classes, images
    )


DIRECTION = "audio->image"  # what `evaluate_run` scores (`avgen evaluate`)
SYSTEMS = {"toy_audio_tower": "WavBriVL", "toy_audio_tower_infonce": "WavBriVL (InfoNCE)"}  # `avgen compare`


def add_options(parser) -> None:
    """`avgen evaluate` options of a WavBriVL run (an audio-tower stage's run folder)."""
    parser.add_argument(
        "--vqgan", help="the VQGAN run folder or checkpoint (default: <prefix>_vqgan beside the run)"
    )
    parser.add_argument(
        "--steps", type=int, help="optimisation steps per image (default: the toy pipeline's)"
    )
    parser.add_argument("--cutouts", type=int, help="cutouts per step (default: the toy pipeline's)")


def evaluate_run(
    run,
    split: str = "test",
    device: str = "cpu",
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = None,
    judges=None,  # the common metrics' judges: WavBriVL's metrics are in its own towers' space
    vqgan: str | None = None,
    steps: int | None = None,
    cutouts: int | None = None,
):
    """An audio-tower stage's run on `split`: Table 2's retrieval MRR between its audio embeddings and the
    frozen image tower's embeddings of the clips' frames (instance and class level, with chance levels), and
    sec. 5's generation, one image per clip (`evaluate_generation`: the VQGAN's latents optimised towards the
    audio embedding with the image tower as perceptor; the toy pipeline's `TOY_GENERATION` for a toy run):
    the similarity at the first and the best iteration, the image tower's class agreement, seconds per image."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from projects.wavbrivl.generate import load_image_tower_of, vqgan_frame_size
    from projects.wavbrivl.models.audio_tower import load_audio_tower
    from projects.wavbrivl.module_vqgan import load_vqgan
    from projects.wavbrivl.pipeline import TOY_GENERATION
    from shared.data.loaders import eval_loader
    from shared.evaluation import RunOutputs, evaluation_clips, run_datamodule
    from shared.runs import UserError, run_checkpoint, sibling_run

    if samples not in (None, 1):
        raise UserError(f"WavBriVL's evaluation makes one image per clip, not {samples}")
    run = Path(run)
    prefix = run.parent.name.split("_")[0]
    vqgan = Path(vqgan) if vqgan else sibling_run(run, f"{prefix}_vqgan", "--vqgan")
    audio_tower = load_audio_tower(run).to(device).eval()
    image_tower = load_image_tower_of(run, None).to(device).eval()
    settings = TOY_GENERATION if prefix == "toy" else GenerationSettings(size=vqgan_frame_size(vqgan))
    settings = replace(settings, **{k: v for k, v in {"steps": steps, "cutouts": cutouts}.items() if v})
    datamodule = run_datamodule(run)
    dataset, clips = evaluation_clips(datamodule.split(split), clips_per_class)
    batch_size = datamodule.eval_batch_size or datamodule.batch_size

    def batches():
        for batch in eval_loader(dataset, batch_size):
            yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    embedded = embed_split(audio_tower, batches(), image_tower, device)
    mrr = CrossModalMRR()
    mrr.update(embedded.audio, embedded.image, embedded.labels, embedded.clip_ids)
    generation = evaluate_generation(
        audio_tower, image_tower, load_vqgan(vqgan).to(device), datamodule, settings, None, seed, batches()
    )
    return RunOutputs(
        direction=DIRECTION,
        checkpoint=run_checkpoint(run),
        clips=clips,
        labels=list(datamodule.labels),
        item_ids=generation.clip_ids,
        items=torch.stack(generation.images) * 2 - 1,
        metrics={name: float(value) for name, value in mrr.compute().items()} | generation.values(),
        settings={"generation": asdict(settings), "vqgan": str(vqgan)},
    )
