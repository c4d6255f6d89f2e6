"""Waveform metrics of generated audio: FAD on an embedding network, KL and ACC on an audio classifier.

GRAVO (Interspeech 2023, sec. 3.3), after Im2Wav (arXiv:2211.03089, sec. 4):
- FAD: the Fréchet distance between Gaussian fits of the embeddings of real and generated audio (Kilgour et
  al., arXiv:1812.08466; google-research `frechet_audio_distance`), on VGGish (`shared.encoders.VGGish`),
  every window of a clip a row (`FrechetDistance`);
- KL: KL(p_real || p_generated) of the classifier's softmax over its logits, each generated clip against the
  real clip it was made for, averaged over generated clips (`MeanKLDivergence`; audiocraft's PaSST KL,
  `facebookresearch/audiocraft` `audiocraft/metrics/kld.py`, is the same sum with the same 1e-6 on the
  generated side);
- ACC: the classifier's top class after zeroing the softmax of the classes Im2Wav calls general, counted a
  hit when it is in the label set of the condition's class (`LabelSetAccuracy`).

On the real datasets the classifier is PaSST (527 AudioSet classes); on the toy set both networks are a
classifier trained on the toy clips. The networks declare the rate they read (`sample_rate`): audio is
resampled to it (torchaudio's sinc resampler) and mixed to mono by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio
from torch import nn

from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, clip_key_ids, with_intervals
from shared.metrics.frechet import FrechetDistance
from shared.metrics.kl import MeanKLDivergence
from shared.metrics.means import ClipMean


def top_class_hits(
    logits: torch.Tensor, targets: torch.Tensor, ignored_classes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit [N] bool, scored [N] bool): is the top class of softmax(logits), with the ignored classes' probabilities
    set to zero, a target? `targets` is a class index per row [N] or a label set per row [N, C] (bool); a row
    whose label set is empty is not scored (GRAVO scores ACC only on the VGGSound classes that map to
    ImageHear's)."""
    probs = logits.float().softmax(dim=1)
    if ignored_classes is not None and len(ignored_classes):
        if len(ignored_classes) >= probs.shape[1]:
            raise ValueError("every class is ignored: ACC has no class left to choose")
        probs = probs.index_fill(1, ignored_classes.to(probs.device), 0.0)
    top = probs.argmax(dim=1)
    if targets.dim() == 1:
        return top == targets.to(top.device), torch.ones_like(top, dtype=torch.bool)
    if targets.shape != logits.shape:
        raise ValueError(
            f"label sets {tuple(targets.shape)} must be [N, C] like the logits {tuple(logits.shape)}"
        )
    targets = targets.to(top.device).bool()
    return targets.gather(1, top[:, None])[:, 0], targets.any(dim=1)


class LabelSetAccuracy(ClipMean):
    """ACC with ignored classes and a label-set match (`top_class_hits`), as a fraction of the scored rows, with
    its bootstrap interval over clips.

    `update(logits [N, C], targets [N] or [N, C], ids)`; `compute()` -> {name, `<name>_lo`, `<name>_hi`}."""

    def __init__(
        self,
        ignored_classes: Sequence[int] = (),
        name: str = "acc",
        bootstrap: Bootstrap | None = BOOTSTRAP,
        **kwargs,
    ):
        super().__init__(name, bootstrap=bootstrap, **kwargs)
        self.register_buffer("ignored_classes", torch.tensor(list(ignored_classes), dtype=torch.long))

    def update(  # type: ignore[override]
        self, logits: torch.Tensor, targets: torch.Tensor, ids: Sequence[str] | torch.Tensor
    ) -> None:
        if logits.dim() != 2 or len(ids) != len(logits):
            raise ValueError(f"expected logits [N, C] and N clip ids, got {tuple(logits.shape)}, {len(ids)}")
        hits, scored = top_class_hits(logits, targets, self.ignored_classes)
        keep = scored.nonzero()[:, 0].tolist()
        # an update with no scored row still adds (empty) states, so every process has something to gather
        ids = ids[scored.cpu()] if isinstance(ids, torch.Tensor) else [ids[i] for i in keep]
        super().update(hits[scored].double(), ids)


def to_rate(wave: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """[B, T] float at `sample_rate` -> at `target_rate`."""
    wave = wave.float()
    return (
        wave if sample_rate == target_rate else torchaudio.functional.resample(wave, sample_rate, target_rate)
    )


class AudioGenerationMetrics(nn.Module):
    """FAD on `embedder`, KL and ACC on `classifier`, of generated waveforms against real ones.

    `embedder.embed(wave [B, T])` -> [B, D] or [B, W, D] (W windows per clip, each a row of FAD);
    `embedder.embedding_dim` = D. `classifier.logits(wave [B, T])` -> [B, C]. Both have `sample_rate`; they
    stay frozen and in eval mode whatever `train()` their parent calls. Made for a LightningModule's
    `test_step`: `update` per batch, `compute` at the end (reduced over all processes), then `reset`.

        metrics.update(real=wave, real_ids=ids, sample_rate=16000)                       # each real clip once
        metrics.update(fake=samples, fake_ids=ids, fake_targets=label_sets, sample_rate=16000)
        metrics.compute()   # {"fad", "kl", "acc" (and "acc_real"), each with "<name>_lo", "<name>_hi"}

    ACC is measured on the generated clips (`accuracy`, key "acc") and, for the paper's "Reference" row, on
    the real ones (`real_accuracy`, key "acc_real"); each then needs its `*_targets`: a class index per clip
    [B] or a label set [B, C] over the classifier's classes (clips with an empty set are left out of ACC).
    `ignored_classes`: classes whose probability is zeroed before the top class is taken.
    """

    def __init__(
        self,
        embedder: nn.Module,
        classifier: nn.Module,
        ignored_classes: Sequence[int] = (),
        accuracy: bool = True,
        real_accuracy: bool = False,
        reset_real_features: bool = True,
        bootstrap: Bootstrap | None = BOOTSTRAP,
    ):
        super().__init__()
        self.embedder = embedder.eval().requires_grad_(False)
        self.classifier = classifier.eval().requires_grad_(False)
        self.fad = FrechetDistance(
            embedder.embedding_dim, reset_real_features=reset_real_features, bootstrap=bootstrap
        )
        self.kl = MeanKLDivergence(bootstrap=bootstrap)
        kinds = ["fake"] * accuracy + ["real"] * real_accuracy
        self.accuracies = nn.ModuleDict(
            {
                kind: LabelSetAccuracy(
                    ignored_classes, "acc" if kind == "fake" else "acc_real", bootstrap=bootstrap
                )
                for kind in kinds
            }
        )
        self.bootstrap = bootstrap

    def train(self, mode: bool = True) -> AudioGenerationMetrics:
        super().train(mode)
        self.embedder.eval()
        self.classifier.eval()
        return self

    @torch.no_grad()
    def update(
        self,
        real: torch.Tensor | None = None,
        real_ids: Sequence[str] | torch.Tensor | None = None,
        fake: torch.Tensor | None = None,
        fake_ids: Sequence[str] | torch.Tensor | None = None,
        real_targets: torch.Tensor | None = None,
        fake_targets: torch.Tensor | None = None,
        sample_rate: int = 16000,
    ) -> None:
        """Add real and/or generated mono waveforms [B, T] at `sample_rate` with their clip ids."""
        for wave, ids, targets, is_real in (
            (real, real_ids, real_targets, True),
            (fake, fake_ids, fake_targets, False),
        ):
            if wave is None:
                continue
            if wave.dim() != 2 or ids is None or len(ids) != len(wave):
                raise ValueError(
                    f"{'real' if is_real else 'fake'} audio must be [B, T] with B clip ids, "
                    f"got {tuple(wave.shape)} and {None if ids is None else len(ids)} ids"
                )
            embeddings = self.embedder.embed(to_rate(wave, sample_rate, self.embedder.sample_rate))
            rows = clip_key_ids(ids).to(embeddings.device)
            if embeddings.dim() == 3:  # every window a row, named by its clip
                rows = rows.repeat_interleave(embeddings.shape[1])
                embeddings = embeddings.flatten(0, 1)
            self.fad.update(embeddings, real=is_real, ids=rows)
            logits = self.classifier.logits(to_rate(wave, sample_rate, self.classifier.sample_rate))
            self.kl.update(logits, ids, real=is_real)
            kind = "real" if is_real else "fake"
            if kind in self.accuracies:
                if targets is None:
                    raise ValueError(f"ACC of the {kind} clips needs {kind}_targets")
                self.accuracies[kind].update(logits, targets, ids)

    def compute(self) -> dict[str, torch.Tensor]:
        values = {"fad": self.fad.compute(), "kl": self.kl.compute()}
        if self.bootstrap is not None:
            values = with_intervals(
                values, {"fad": self.fad.intervals()["fid"], "kl": self.kl.intervals()["mkl"]}
            )
        for acc in self.accuracies.values():
            values |= acc.compute()  # with its interval
        return values

    def reset(self) -> None:
        for metric in (self.fad, self.kl, *self.accuracies.values()):
            metric.reset()
