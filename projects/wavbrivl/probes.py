"""The downstream probes of WavBriVL's Table 1 (arXiv:2303.04585, sec. 4): classifiers on frozen embeddings.

The paper's "MC" is an MLP classifier with one output per class, trained on the frozen embeddings with the same
scheme for every compared embedding; it states neither the MLP's size nor its training. Ours (`ProbeSettings`):
the inputs standardised with the training fold's per-dimension mean and std, then a linear layer (`linear`) or
one hidden ReLU layer of 512 (`mlp`, torchvision's `MLP`), cross-entropy, Adam at 1e-2 for 300 epochs over full
batches (or mini-batches at a chosen lr and epochs), seeded; no early stopping, so no validation split is spent.

Each dataset's own folds: ESC-50's 5 and UrbanSound8K's 10 folds by cross-validation (train on all other
folds, test on one; the figure is the mean over folds, as those datasets are reported), VGGSound's test split
against the rest. The figure is top-1 accuracy for the single-label sets and, for VGGSound, mAP: torchmetrics'
`MulticlassAveragePrecision` (macro) on the softmax, which is the per-class AP with one-hot targets averaged
over classes. Accuracy comes with a bootstrap interval over clips (`shared.metrics.bootstrap`: the fold-mean
accuracy recomputed on clip resamples) and its chance level 1 / classes.

Any embedding function `wav [B, T] float at 16 kHz -> [B, E]` goes through the same protocol (`embed_clips`):
WavBriVL's audio tower, a random-init tower, `shared.encoders.Wav2CLIP`, `shared.encoders.MelStatisticsEmbedding`,
so each row of Table 1 is one `probe_embedding` call. Clips of different lengths are never padded into one
call: each batch is split into groups of equal length (padding would be heard as silence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAveragePrecision
from torchvision.ops import MLP

from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, bootstrap_interval, format_interval

EmbedFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Embedded:
    """Embeddings of a dataset's clips: `x` [N, E] float32, `labels` [N] int64, `folds` and `clip_ids` (N str)."""

    x: torch.Tensor
    labels: torch.Tensor
    folds: list[str]
    clip_ids: list[str]


@torch.no_grad()
def embed_batch(embed: EmbedFn, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """wave [B, T] (zero-padded to the longest, valid `lengths` [B]) -> [B, E], each clip embedded unpadded:
    one call of `embed` per distinct length."""
    if lengths is None:
        return embed(wave).float()
    out: torch.Tensor | None = None
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero()[:, 0]
        values = embed(wave[rows.to(wave.device), : int(length)]).float()
        if out is None:
            out = values.new_empty(len(wave), values.shape[1])
        out[rows.to(out.device)] = values
    assert out is not None
    return out


def embed_clips(embed: EmbedFn, batches: Iterable[dict], device: str | torch.device = "cpu") -> Embedded:
    """Embed every batch of a `FoldedAudioDataModule` loader (keys `wave`, `lengths`, `label`, `fold`, `clip_id`)."""
    xs, labels, folds, ids = [], [], [], []
    for batch in batches:
        xs.append(embed_batch(embed, batch["wave"].to(device), batch["lengths"]).cpu())
        labels.append(batch["label"].cpu())
        folds += list(batch["fold"])
        ids += list(batch["clip_id"])
    return Embedded(torch.cat(xs), torch.cat(labels), folds, ids)


@dataclass(frozen=True)
class ProbeSettings:
    """How a probe is trained; the same for every embedding compared. `batch_size` None: full batch."""

    kind: str = "mlp"  # "linear" or "mlp"
    hidden: int = 512
    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("linear", "mlp"):
            raise ValueError(f"probe kind must be 'linear' or 'mlp', not {self.kind!r}")
        if self.epochs < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1 and lr > 0, got {self}")


class Probe(nn.Module):
    """Standardisation with the training fold's statistics, then a linear layer or an MLP: [N, E] -> logits."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int, settings: ProbeSettings):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-6))
        dim = len(mean)
        mlp = settings.kind == "mlp"
        self.head = MLP(dim, [settings.hidden, n_classes]) if mlp else nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x - self.mean) / self.std)


def train_probe(x: torch.Tensor, labels: torch.Tensor, n_classes: int, settings: ProbeSettings) -> Probe:
    """Train a probe on embeddings x [N, E] with class ids [N]; seeded, leaving the global RNG untouched, and
    with gradients on even where the caller embeds under `torch.no_grad()`."""
    x = x.float().detach()
    cuda = [x.device] if x.device.type == "cuda" else []  # mini-batch orders are drawn on x's device
    with torch.random.fork_rng(devices=cuda), torch.enable_grad():
        torch.manual_seed(settings.seed)
        probe = Probe(x.mean(0), x.std(0), n_classes, settings).to(x.device)
        optimiser = torch.optim.Adam(probe.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        batch = settings.batch_size or len(x)
        probe.train()
        for _ in range(settings.epochs):
            order = torch.randperm(len(x), device=x.device) if batch < len(x) else torch.arange(len(x))
            for start in range(0, len(x), batch):
                rows = order[start : start + batch]
                loss = F.cross_entropy(probe(x[rows]), labels[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return probe.eval().requires_grad_(False)


@dataclass
class ProbeResult:
    """`metric` ("acc" or "map") of a probe: `value` the mean over test folds, `per_fold`, `interval` (95 % over
    clips, accuracy only; NaN otherwise), `chance` (1 / classes for accuracy, the mean class prevalence of the
    test clips for mAP)."""

    metric: str
    value: float
    per_fold: dict[str, float]
    interval: tuple[float, float]
    chance: float

    def formatted(self) -> str:
        if self.interval[0] == self.interval[0]:  # not NaN
            return format_interval(self.value, *self.interval)
        return f"{self.value:.4f}"


def _fold_mean_accuracy(hits: torch.Tensor, fold_of: torch.Tensor, n_folds: int) -> Callable:
    """Statistic over clip multiplicities counts [B, n] -> the mean over folds of each fold's accuracy."""
    one_hot = F.one_hot(fold_of, n_folds).double()  # [n, folds]
    hits = hits.double()

    def statistic(counts: torch.Tensor) -> torch.Tensor:
        counts = counts.double()
        return ((counts @ (one_hot * hits[:, None])) / (counts @ one_hot)).mean(dim=1)

    return statistic


def cross_validate(
    data: Embedded,
    n_classes: int,
    settings: ProbeSettings,
    test_folds: list[str] | None = None,
    metric: str = "acc",
    bootstrap: Bootstrap | None = BOOTSTRAP,
) -> ProbeResult:
    """For each test fold, train a probe on the clips of all other folds and score the fold's clips.

    `test_folds` None: every fold in turn (ESC-50, UrbanSound8K); ["test"] for VGGSound. `metric`: "acc" or
    "map" (macro average precision)."""
    if metric not in ("acc", "map"):
        raise ValueError(f"metric must be 'acc' or 'map', not {metric!r}")
    folds = test_folds or sorted(set(data.folds), key=lambda f: (len(f), f))
    fold_names = torch.tensor([folds.index(f) if f in folds else -1 for f in data.folds])
    per_fold, hits, tested = {}, [], []
    for k, fold in enumerate(folds):
        test = fold_names == k
        if not test.any() or test.all():
            raise ValueError(f"fold {fold!r} has no test clips or no training clips")
        probe = train_probe(data.x[~test], data.labels[~test], n_classes, settings)
        with torch.no_grad():
            logits = probe(data.x[test].to(probe.mean.device)).cpu()
        targets = data.labels[test].cpu()
        if metric == "acc":
            fold_hits = logits.argmax(1) == targets
            per_fold[fold] = fold_hits.double().mean().item()
            hits.append(fold_hits)
            tested.append(torch.full((len(targets),), k))
        else:
            ap = MulticlassAveragePrecision(num_classes=n_classes, average="macro")
            per_fold[fold] = ap(logits.softmax(1), targets).item()
    value = sum(per_fold.values()) / len(per_fold)
    interval = (float("nan"), float("nan"))
    if metric == "acc":
        chance = 1.0 / n_classes
        if bootstrap is not None:
            statistic = _fold_mean_accuracy(torch.cat(hits), torch.cat(tested), len(folds))
            interval = bootstrap_interval(statistic, len(torch.cat(hits)), bootstrap)
    else:
        tested_labels = data.labels[fold_names >= 0]
        chance = torch.bincount(tested_labels, minlength=n_classes).double().div(len(tested_labels))
        chance = chance[chance > 0].mean().item()
    return ProbeResult(metric, value, per_fold, interval, chance)


def probe_embedding(
    embed: EmbedFn,
    batches: Iterable[dict],
    n_classes: int,
    settings: Iterable[ProbeSettings] = (ProbeSettings(kind="linear"), ProbeSettings(kind="mlp")),
    test_folds: list[str] | None = None,
    metric: str = "acc",
    device: str | torch.device = "cpu",
    bootstrap: Bootstrap | None = BOOTSTRAP,
) -> dict[str, ProbeResult]:
    """One row of Table 1: embed every clip once, then cross-validate each probe kind -> {kind: result}.
    The embedding and the probes' training run on `device`."""
    data = embed_clips(embed, batches, device)
    data = Embedded(data.x.to(device), data.labels.to(device), data.folds, data.clip_ids)
    return {s.kind: cross_validate(data, n_classes, s, test_folds, metric, bootstrap) for s in settings}
