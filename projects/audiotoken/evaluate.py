"""AudioToken's evaluation (arXiv:2305.13050, sec. 2.2 and Table 1): AIS, IIS, AIC and FID of the images
generated from the test clips' audio, next to the paper's comparison rows.

Rows (each image made from the same noise per clip, so rows differ only in their condition):

- `AudioToken`: "a photo of <*>" with the clip's audio token (BEATs -> Embedder);
- `random token`: the same prompt with a random vector in place of the audio token, drawn per clip from a
  normal distribution with the audio tokens' per-dimension mean and standard deviation over the evaluated
  clips (the same scale, no information about the clip): what the pipeline makes without the audio;
- `SD (text label)`: the prompt "a photo of a <label>" with the clip's true label, the paper's upper row
  ("SD with text labels");
- `Reference (real images)`: the clips' own frames, scored like generated images (AIC, AIS; IIS and FID
  compare with them).

Metrics (`shared.metrics.image`): AIS = Wav2CLIP audio vs CLIP image win-rate against a pool of other test
clips' audio; IIS = CLIP generated vs real image against a pool of other clips' real images; AIC = zero-shot
CLIP class of the image over the dataset's labels matched to the audio's label (CLIP text similarity > 0.75);
FID = generated vs real images on `fid` (the Inception network on real data, the toy CLIP's image tower on the
toy set). AIS, IIS and AIC come with 95 % bootstrap intervals over clips.

`evaluate_run` is an AudioToken run evaluated this way for `avgen evaluate` (`shared.evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from projects.audiotoken.models.pipeline import AudioTokenPipeline, SamplingSettings
from shared.encoders.clip_image_text import CLIPImageText
from shared.metrics.image import (
    AudioImageClassAgreement,
    AudioImageSimilarity,
    ImageFID,
    ImageImageSimilarity,
    pool_indices,
)
from shared.transformer import item_generators

AUDIOTOKEN, RANDOM, TEXT, REFERENCE = (
    "AudioToken",
    "random token",
    "SD (text label)",
    "Reference (real images)",
)
ROWS = (AUDIOTOKEN, RANDOM, TEXT)
DIRECTION = "audio->image"  # what `evaluate_run` scores (`avgen evaluate`)
SYSTEMS = {"toy_audiotoken": "AudioToken"}  # experiments compared by `avgen compare`


@dataclass
class Judges:
    """The frozen networks that score images: `clip` (image and text embeddings, zero-shot classes), `wav2clip`
    (audio embeddings in that CLIP's image space), `fid` (an `ImageFID` feature: a module, or 2048 with
    `fid_weights`, a local Inception weights file); `class_template`: the zero-shot prompt of a class name for
    AIC (bare names, as SonicDiffusion prompts them; the toy CLIP knows only its training captions)."""

    clip: CLIPImageText
    wav2clip: nn.Module
    fid: int | nn.Module
    fid_weights: str | None = None
    class_template: str = "{}"


@dataclass
class TestClips:
    """What the evaluation needs of every test clip, in loader order."""

    ids: list[str]
    labels: torch.Tensor  # [N] int64
    label_texts: list[str]
    waves: torch.Tensor  # [N, T] at 16 kHz
    images: torch.Tensor  # [N, 3, H, W] in [-1, 1], the real frames
    audio_embeddings: torch.Tensor  # [N, E] Wav2CLIP
    image_embeddings: torch.Tensor  # [N, E] CLIP of the real frames
    tokens: torch.Tensor  # [N, D] the audio tokens


@torch.no_grad()
def read_clips(pipeline: AudioTokenPipeline, loader, judges: Judges) -> TestClips:
    parts: dict[str, list] = {key: [] for key in TestClips.__dataclass_fields__}
    for batch in loader:
        wave, image = batch["wave"].float(), batch["image"].float()
        parts["ids"] += list(batch["clip_id"])
        parts["labels"].append(batch["label"])
        parts["label_texts"] += list(batch["label_text"])
        parts["waves"].append(wave)
        parts["images"].append(image)
        parts["audio_embeddings"].append(judges.wav2clip(wave))
        parts["image_embeddings"].append(judges.clip.encode_images(image))
        parts["tokens"].append(pipeline.audio_tokens(wave).cpu())
    return TestClips(
        **{key: value if key in ("ids", "label_texts") else torch.cat(value) for key, value in parts.items()}
    )


def random_tokens(tokens: torch.Tensor, seed: int) -> torch.Tensor:
    """Normal vectors with the tokens' per-dimension mean and std (see the module docstring)."""
    noise = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(seed))
    return tokens.mean(0) + noise * tokens.std(0)


class RowMetrics:
    """AIS, IIS, AIC and FID of one row's images."""

    def __init__(self, clips: TestClips, judges: Judges, labels: list[str], pool: torch.Tensor):
        pool_ids = [clips.ids[i] for i in pool]
        self.judges, self.clips, self.labels = judges, clips, labels
        self.ais = AudioImageSimilarity(clips.audio_embeddings[pool], pool_ids)
        self.iis = ImageImageSimilarity(clips.image_embeddings[pool], pool_ids)
        self.aic = AudioImageClassAgreement.from_text_encoder(judges.clip, labels)
        self.fid = ImageFID(judges.fid, judges.fid_weights)
        self.fid.update(clips.images, real=True)

    @torch.no_grad()
    def update(self, images: torch.Tensor, rows: slice) -> None:
        """images [B, 3, H, W] in [-1, 1]: those of the clips `rows`."""
        clips, ids = self.clips, self.clips.ids[rows]
        embeddings = self.judges.clip.encode_images(images)
        self.ais.update(embeddings, clips.audio_embeddings[rows], ids)
        self.iis.update(embeddings, clips.image_embeddings[rows], ids)
        predicted = self.judges.clip.zero_shot(images, self.labels, self.judges.class_template)
        self.aic.update(predicted, clips.labels[rows], ids)
        self.fid.update(images, real=False)

    def compute(self) -> dict[str, float]:
        values = {**self.ais.compute(), **self.iis.compute(), **self.aic.compute(), "fid": self.fid.compute()}
        return {name: float(value) for name, value in values.items()}


@torch.no_grad()
def evaluate(
    pipeline: AudioTokenPipeline,
    loader,
    judges: Judges,
    labels: list[str],
    settings: SamplingSettings,
    seed: int = 0,
    batch_size: int = 100,
    pool_size: int | None = None,
    rows: tuple[str, ...] = ROWS,
    generated: Callable[[str, torch.Tensor, list[str]], None] | None = None,
) -> dict[str, dict[str, float]]:
    """{row: {metric: value, `<metric>_lo` / `_hi`: its interval}} for `rows` and the reference row.

    `labels`: the dataset's class names (the label ids index them); the pool of AIS and IIS is `pool_size`
    test clips drawn by `seed` (all of them by default; a clip is never compared with itself). `generated(row,
    images [B, 3, H, W] in [-1, 1], clip ids)` is given each batch of generated images (e.g. to keep them)."""
    clips = read_clips(pipeline, loader, judges)
    n = len(clips.ids)
    pool = pool_indices(n, pool_size or n, seed)
    tokens = {AUDIOTOKEN: clips.tokens, RANDOM: random_tokens(clips.tokens, seed)}
    results = {}
    for row in rows:
        metrics = RowMetrics(clips, judges, labels, pool)
        for start in range(0, n, batch_size):
            part = slice(start, min(start + batch_size, n))
            generators = item_generators(seed, clips.ids[part])
            if row == TEXT:
                prompts = [f"a photo of a {labels[int(i)]}" for i in clips.labels[part]]
                images = pipeline.generate_from_text(prompts, settings, generators, output_type="pt")
            else:
                images = pipeline.generate_from_tokens(
                    tokens[row][part], settings, generators, output_type="pt"
                )
            images = images.cpu() * 2 - 1
            if generated is not None:
                generated(row, images, clips.ids[part])
            metrics.update(images, part)
        results[row] = metrics.compute()
    reference = RowMetrics(clips, judges, labels, pool)
    for start in range(0, n, batch_size):
        part = slice(start, min(start + batch_size, n))
        reference.update(clips.images[part], part)
    results[REFERENCE] = {k: v for k, v in reference.compute().items() if not k.startswith(("iis", "fid"))}
    return results


def evaluate_run(
    run,
    split: str = "test",
    device: str = "cpu",
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = None,
    judges=None,
):
    """An AudioToken stage's run on `split`: one image per clip as the toy summary makes them (the pipeline's
    `SETTINGS` for a toy run, the official inference's otherwise) and Table 1's AIS, IIS, AIC and FID of the
    AudioToken row and AIS, AIC of the real frames (`ais_reference`, `aic_reference`), by `evaluate` with the
    common metrics' judges (`judges`: the CLIP, its Wav2CLIP, FID's Inception weights if given, the class
    prompt)."""
    from pathlib import Path

    from projects.audiotoken.generate import load_pipeline
    from projects.audiotoken.pipeline import EVAL_BATCH, SETTINGS
    from shared.data.loaders import eval_loader
    from shared.encoders.clip_image_text import load_clip_image_text
    from shared.encoders.wav2clip import load_wav2clip
    from shared.evaluation import RunOutputs, evaluation_clips, run_datamodule
    from shared.runs import UserError, run_checkpoint

    if samples not in (None, 1):
        raise UserError(
            f"AudioToken's evaluation makes one image per clip (its noise keyed by the clip), not {samples}"
        )
    run = Path(run)
    pipeline, files = load_pipeline(str(run), None, None, None)
    pipeline = pipeline.to(device)
    settings = SETTINGS if run.parent.name.startswith("toy") else SamplingSettings()
    clip = load_clip_image_text(judges.clip, crop=False)  # the scorers read the loader's CPU batches
    fid = 2048 if judges.inception else clip
    scorers = Judges(clip, load_wav2clip(judges.wav2clip), fid, judges.inception, judges.class_template)
    datamodule = run_datamodule(run)
    dataset, clips = evaluation_clips(datamodule.split(split), clips_per_class)
    images, image_ids = [], []

    def keep(row: str, batch: torch.Tensor, ids: list[str]) -> None:
        images.append(batch)
        image_ids.extend(ids)

    labels = list(datamodule.dataset.labels)
    results = evaluate(
        pipeline, eval_loader(dataset, EVAL_BATCH), scorers, labels, settings, seed, EVAL_BATCH,
        rows=(AUDIOTOKEN,), generated=keep,
    )  # fmt: skip
    metrics = results[AUDIOTOKEN] | {
        f"{name}_reference{end}": results[REFERENCE][f"{name}{end}"]
        for name in ("ais", "aic")
        for end in ("", "_lo", "_hi")
    }
    return RunOutputs(
        direction=DIRECTION,
        checkpoint=run_checkpoint(run),
        clips=clips,
        labels=labels,
        item_ids=image_ids,
        items=torch.cat(images),
        metrics=metrics,
        settings={"sampling": asdict(settings), **files},
    )
