"""Scoring generations as GRAVO's Tables 1-2 do (GRAVO, Interspeech 2023, sec. 3.3; Im2Wav, arXiv:2211.03089).

VGGSound-style clips (`evaluate_clips`): each test clip's first window is generated from its CLIP frames
(`GravoPipeline.generate`, the window's length) and scored against the real window:
FAD (embedding network), KL (classifier outputs, paired per clip) and ACC (top class vs the clip's label set)
through `shared.metrics.AudioGenerationMetrics`; CS = 100 cos(Wav2CLIP(generated), mean CLIP frame)
(`shared.metrics.CLIPScore`); the "Reference" row's CS and ACC of the real audio (`cs_real`, `acc_real`); and
Table 2's tCS = 100 cos(Wav2CLIP(real audio), mean of the frames the Low prior is conditioned on: the frame
attention's outputs for GRAVO, the CLIP frames for Im2Wav).
ImageHear-style images (`evaluate_images`): each image is a window-long clip of its repeated embedding,
`samples` generations each; CS and ACC.

Every sample of clip c is made from its own random stream, seeded by (seed, "c/<sample>")
(`shared.transformer.item_generators`), so the scores do not depend on the batch size; every metric comes with
its 95 % bootstrap interval over clips (`<name>_lo`, `<name>_hi`). On the real datasets the embedding network is
VGGish and the classifier PaSST; on the toy set both are a classifier trained on the toy clips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from projects.gravo.models.pipeline import GravoPipeline, SamplingSettings
from shared.metrics import AudioGenerationMetrics, CLIPScore, LabelSetAccuracy
from shared.metrics.audio import to_rate
from shared.transformer import item_generators


def _targets(batch: dict) -> torch.Tensor:
    return batch["label"]


def _generate(
    pipeline: GravoPipeline,
    frames: torch.Tensor,
    ids: list[str],
    length: int,
    settings: SamplingSettings,
    seed: int,
) -> tuple[torch.Tensor, list[str]]:
    """`settings.samples` generations of each clip, sample-major: ([S * B, length], their clip ids)."""
    keys = [f"{clip}/{s}" for s in range(settings.samples) for clip in ids]
    frames = frames.repeat(settings.samples, 1, 1)
    return pipeline.generate(frames, length, settings, item_generators(seed, keys)), ids * settings.samples


def _floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in values.items()}


@torch.no_grad()
def evaluate_clips(
    pipeline: GravoPipeline,
    batches: Iterable[dict],
    audio_metrics: AudioGenerationMetrics,
    wav2clip: nn.Module,
    settings: SamplingSettings,
    seed: int = 0,
    targets: Callable[[dict], torch.Tensor] = _targets,
) -> dict[str, float]:
    """FAD, KL, ACC, CS, tCS, and the real audio's CS and ACC, over batches with `wave` [B, T] (the real window),
    `clip_feats` [B, F, 512] (its frames), `clip_id` and what `targets` reads (the class index by default)."""
    audio_metrics.reset()
    scores = {name: CLIPScore() for name in ("cs", "cs_real", "tcs")}
    for batch in batches:
        real, frames, ids = batch["wave"].float(), batch["clip_feats"].float(), list(batch["clip_id"])
        labels = targets(batch)
        fake, fake_ids = _generate(pipeline, frames, ids, real.shape[1], settings, seed)
        audio_metrics.update(real=real, real_ids=ids, real_targets=labels, sample_rate=pipeline.sample_rate)
        audio_metrics.update(
            fake=fake,
            fake_ids=fake_ids,
            fake_targets=labels.repeat(settings.samples, *[1] * (labels.dim() - 1)),
            sample_rate=pipeline.sample_rate,
        )
        real_audio = wav2clip(real)
        scores["cs"].update(wav2clip(fake), frames.repeat(settings.samples, 1, 1), fake_ids)
        scores["cs_real"].update(real_audio, frames, ids)
        scores["tcs"].update(real_audio, pipeline.low.attend(frames), ids)
    values = _floats(audio_metrics.compute())
    for name, score in scores.items():  # each CLIPScore names its values "cs", "cs_lo", "cs_hi"
        values |= {name + key.removeprefix("cs"): value for key, value in _floats(score.compute()).items()}
    return values


@torch.no_grad()
def evaluate_images(
    pipeline: GravoPipeline,
    batches: Iterable[dict],
    classifier: nn.Module,
    wav2clip: nn.Module,
    settings: SamplingSettings,
    seed: int = 0,
    targets: Callable[[dict], torch.Tensor] = _targets,
    ignored_classes: tuple[int, ...] = (),
) -> dict[str, float]:
    """CS and ACC of generations from still images: batches with `clip_feats` [B, F, 512] (one embedding
    repeated), `clip_id`, and what `targets` reads; each generation lasts one window."""
    cs, acc = CLIPScore(), LabelSetAccuracy(ignored_classes)
    for batch in batches:
        frames, ids = batch["clip_feats"].float(), list(batch["clip_id"])
        labels = targets(batch)
        fake, fake_ids = _generate(pipeline, frames, ids, pipeline.window, settings, seed)
        cs.update(wav2clip(fake), frames.repeat(settings.samples, 1, 1), fake_ids)
        logits = classifier.logits(to_rate(fake, pipeline.sample_rate, classifier.sample_rate))
        acc.update(logits, labels.repeat(settings.samples, *[1] * (labels.dim() - 1)), fake_ids)
    return _floats(cs.compute()) | _floats(acc.compute())
