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

`evaluate_run` is a Low stage's run evaluated this way for `avgen evaluate` (`shared.evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict

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
    generated: Callable[[torch.Tensor, list[str]], None] | None = None,
) -> dict[str, float]:
    """FAD, KL, ACC, CS, tCS, and the real audio's CS and ACC, over batches with `wave` [B, T] (the real window),
    `clip_feats` [B, F, 512] (its frames), `clip_id` and what `targets` reads (the class index by default).
    `generated(waves [S * B, T], clip ids)` is given each batch's generations (e.g. to keep them)."""
    audio_metrics.reset()
    scores = {name: CLIPScore() for name in ("cs", "cs_real", "tcs")}
    for batch in batches:
        real, frames, ids = batch["wave"].float(), batch["clip_feats"].float(), list(batch["clip_id"])
        labels = targets(batch)
        fake, fake_ids = _generate(pipeline, frames, ids, real.shape[1], settings, seed)
        if generated is not None:
            generated(fake, fake_ids)
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


DIRECTION = "video->audio"  # what `evaluate_run` scores (GRAVO also makes sound for still images)
# experiments of the toy pipeline that are systems to compare (`avgen compare`), with their table names
SYSTEMS = {"toy_low_im2wav": "Im2Wav", "toy_low_gravo": "GRAVO"}


def add_options(parser) -> None:
    """`avgen evaluate` options of a GRAVO run (a Low stage's run folder)."""
    parser.add_argument("--up", help="the Up stage's run folder (default: <prefix>_up beside the run)")
    parser.add_argument(
        "--acc-classifier",
        dest="acc_classifier",
        help="the classifier of Table 1's FAD, KL and ACC on the toy set (default: <prefix>_classifier beside)",
    )
    parser.add_argument(
        "--cs-wav2clip",
        dest="cs_wav2clip",
        help="the Wav2CLIP of CS and tCS (default: the run's wav2clip_ckpt)",
    )


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def evaluate_run(
    run,
    split: str = "test",
    device: str = "cpu",
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = None,
    judges=None,  # the common metrics' judges: GRAVO's Table 1 has its own classifier
    up: str | None = None,
    acc_classifier: str | None = None,
    cs_wav2clip: str | None = None,
):
    """A Low stage's run (with the Up and VQ-VAE runs of its pipeline) on `split`: the first window of every clip
    generated `samples` times (1 by default) as the toy summary does, and Table 1-2's FAD, KL, ACC, CS, tCS with
    the real audio's CS and ACC (`evaluate_clips`), and for a toy run Table 1's ImageHear CS and ACC on the toy
    ImageHear images (`ih_cs`, `ih_acc`), the classifier being the toy one (`<prefix>_classifier`;
    on real data FAD on VGGish and KL on PaSST are `avgen evaluate`'s common `fad_vggish`, `kl_passt`)."""
    from pathlib import Path

    from projects.gravo.generate import load_parts
    from projects.gravo.models.conditioning import DEFAULT_TOTAL_LENGTH
    from projects.gravo.pipeline import EVAL_BATCH, SETTINGS, toy_imagehear_scores
    from shared.data.loaders import eval_loader
    from shared.encoders import load_wav2clip, load_wave_melception
    from shared.evaluation import RunOutputs, evaluation_clips, run_datamodule
    from shared.runs import UserError, run_checkpoint, run_config, sibling_run

    run = Path(run)
    checkpoint, model = run_checkpoint(run), run_config(run)["model"]["init_args"]
    prefix = run.parent.name.split("_")[0]
    up = Path(up) if up else sibling_run(run, f"{prefix}_up", "--up")
    classifier = acc_classifier or run_checkpoint(
        sibling_run(run, f"{prefix}_classifier", "--acc-classifier")
    )
    cs_wav2clip = cs_wav2clip or model.get("wav2clip_ckpt")
    if cs_wav2clip is None:
        raise UserError(f"{run}: its config names no wav2clip_ckpt for CS and tCS; give --cs-wav2clip")
    pipeline = load_parts(run, up, None, None)[0].to(device)
    total = SETTINGS.total_length if prefix == "toy" else DEFAULT_TOTAL_LENGTH
    settings = SamplingSettings(total_length=total, samples=samples or 1)
    datamodule = run_datamodule(run)
    dataset, clips = evaluation_clips(datamodule.split(split), clips_per_class)
    fakes, fake_ids = [], []

    def keep(waves: torch.Tensor, ids: list[str]) -> None:
        fakes.append(waves.cpu())
        fake_ids.extend(ids)

    batches = (_to(batch, device) for batch in eval_loader(dataset, EVAL_BATCH))
    net = load_wave_melception(classifier).to(device)  # FAD's embedding and KL's and ACC's classifier
    metrics = AudioGenerationMetrics(net, net, real_accuracy=True)
    wav2clip = load_wav2clip(cs_wav2clip).to(device).eval()
    values = evaluate_clips(pipeline, batches, metrics, wav2clip, settings, seed, generated=keep)
    # Table 1's ImageHear columns on a toy run (on the real ImageHear, ACC needs PaSST's AudioSet label sets)
    if prefix == "toy":
        values |= toy_imagehear_scores(pipeline, datamodule, net, wav2clip, settings, seed, device)
    return RunOutputs(
        direction=DIRECTION,
        checkpoint=checkpoint,
        clips=clips,
        labels=list(datamodule.dataset.labels),
        item_ids=fake_ids,
        items=torch.cat(fakes),
        sample_rate=pipeline.sample_rate,
        metrics=values,
        settings={
            "sampling": asdict(settings),
            "up": str(up),
            "acc_classifier": str(classifier),
            "cs_wav2clip": str(cs_wav2clip),
        },
    )
