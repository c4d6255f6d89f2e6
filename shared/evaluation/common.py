"""The common metric set of a direction, the same for every run: its generations against the real media of the
same clips, read from the clips' files here (so every system is compared with the same references), each metric
with its bootstrap interval over clips (`shared.metrics.bootstrap`).

Video/image -> audio (real audio: each clip's sound from its file, at the generated rate, looped and cut to the
generated length as SpecVQGAN's preparation loops short clips):
- `fad_toy`, `kl_toy`, `is_toy`: FID / MKL / IS on the toy classifier's Melception (SpecVQGAN arXiv:2110.08791,
  sec. 3.4; `shared.metrics.MelceptionMetrics` on the SpecVQGAN mel of the audio, `melception_inputs`): the
  distance is on embeddings of audio, hence FAD;
- `fad_vggish`: FAD on VGGish (Kilgour et al. arXiv:1812.08466; every 1-s window a row, `VGGish.embed`);
- `kl_passt`: KL(p_real || p_generated) on PaSST's 527 classes (audiocraft's PaSST KL; the first 10 s);
- `is_panns`: IS on PANNs Cnn14's logits (audioldm_eval's: 10 splits, seed 2020).
Audio -> image (AudioToken arXiv:2305.13050, sec. 2.2; `shared.metrics.image`):
- `ais`: Wav2CLIP embedding of the clip's sound (whole, 16 kHz) against the CLIP embedding of the image, as a
  win-rate against the pool of every evaluated clip's sound;
- `aic`: CLIP's zero-shot class of the image over the dataset's class names agreeing with the clip's label;
- `fid`: generated images against each clip's middle video frame, on Inception's pool features (or the CLIP
  image tower's embeddings), with the interval of `shared.metrics.FrechetDistance`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from shared.evaluation.judges import Judges, load_toy_classifier
from shared.evaluation.outputs import RunOutputs
from shared.metrics.bootstrap import Bootstrap

BATCH = 16
HIGHER_IS_BETTER = {"fad": False, "kl": False, "is": True, "ais": True, "aic": True, "fid": False}
PASST_SECONDS = 10.0  # PaSST-S's time embedding covers 10 s


def better(name: str) -> str | None:
    """ "higher" or "lower" for a common metric (`fad_toy` -> "lower"), None for another."""
    stem = name.split("_")[0]
    return None if stem not in HIGHER_IS_BETTER else "higher" if HIGHER_IS_BETTER[stem] else "lower"


def batches(x: torch.Tensor, ids: list[str], size: int = BATCH) -> Iterator[tuple[torch.Tensor, list[str]]]:
    for start in range(0, len(x), size):
        yield x[start : start + size], ids[start : start + size]


def real_audio(outputs: RunOutputs) -> torch.Tensor:
    """The evaluated clips' sound [C, T] at the generated rate and length (see the module docstring)."""
    from shared.audio import load_audio

    rate, length = outputs.sample_rate, outputs.items.shape[1]
    return torch.stack([load_audio(c.path, rate, duration=length / rate, loop=True) for c in outputs.clips])


def middle_frames(outputs: RunOutputs) -> list[torch.Tensor]:
    """Each evaluated clip's middle video frame, [3, H, W] in [-1, 1] (the clips' own sizes)."""
    from shared.video import load_video

    frames = []
    for clip in outputs.clips:
        video = load_video(clip.path)
        frames.append(video[len(video) // 2].float() / 127.5 - 1)
    return frames


def _floats(values: dict[str, torch.Tensor], rename: dict[str, str]) -> dict[str, float]:
    """`values` with their metric names (and `_lo` / `_hi`) renamed; names not in `rename` are left out."""
    out = {}
    for key, value in values.items():
        for old, new in rename.items():
            if key in (old, f"{old}_lo", f"{old}_hi"):
                out[new + key.removeprefix(old)] = float(value)
    return out


@torch.no_grad()
def audio_metrics(
    outputs: RunOutputs, judges: Judges, device: str = "cpu", bootstrap: Bootstrap | None = None
) -> dict[str, float]:
    """The common audio metrics the judges allow (module docstring), with `<name>_lo` / `<name>_hi`."""
    from shared.metrics.audio import to_rate

    reals, real_ids = real_audio(outputs), outputs.clip_ids
    fakes, fake_ids, rate = outputs.items.float(), outputs.item_ids, outputs.sample_rate
    values: dict[str, float] = {}
    if judges.classifier:
        from shared.encoders import melception_inputs
        from shared.metrics import MelceptionMetrics

        metrics = MelceptionMetrics(load_toy_classifier(judges.classifier), bootstrap=bootstrap).to(device)
        for kind, waves, ids in (("real", reals, real_ids), ("fake", fakes, fake_ids)):
            for wave, part in batches(waves, ids):
                mel = melception_inputs(wave.to(device), rate).unsqueeze(1)
                metrics.update(**{kind: mel, f"{kind}_ids": part})
        values |= _floats(metrics.compute(), {"fid": "fad_toy", "mkl": "kl_toy", "is": "is_toy"})
    if judges.vggish:
        from shared.encoders import load_vggish
        from shared.metrics import FrechetDistance

        vggish = load_vggish(judges.vggish).to(device)
        fad = FrechetDistance(vggish.embedding_dim, bootstrap=bootstrap).to(device)
        for kind, waves, ids in (("real", reals, real_ids), ("fake", fakes, fake_ids)):
            for wave, part in batches(waves, ids):
                embeddings = vggish.embed(to_rate(wave.to(device), rate, vggish.sample_rate))  # [B, W, 128]
                rows = [clip for clip in part for _ in range(embeddings.shape[1])]
                fad.update(embeddings.flatten(0, 1), real=kind == "real", ids=rows)
        values["fad_vggish"] = float(fad.compute())
        if bootstrap is not None:
            values["fad_vggish_lo"], values["fad_vggish_hi"] = fad.intervals()["fid"]
    if judges.passt:
        from shared.encoders import load_passt
        from shared.metrics import MeanKLDivergence

        passt = load_passt(judges.passt).to(device)
        kl = MeanKLDivergence(bootstrap=bootstrap).to(device)
        for kind, waves, ids in (("real", reals, real_ids), ("fake", fakes, fake_ids)):
            for wave, part in batches(waves[:, : round(PASST_SECONDS * rate)], ids):
                kl.update(
                    passt.logits(to_rate(wave.to(device), rate, passt.sample_rate)), part, real=kind == "real"
                )
        values["kl_passt"] = float(kl.compute())
        if bootstrap is not None:
            values["kl_passt_lo"], values["kl_passt_hi"] = kl.intervals()["mkl"]
    if judges.panns:
        from shared.encoders import load_panns
        from shared.metrics import InceptionScore

        panns = load_panns(judges.panns).to(device)
        inception = InceptionScore(bootstrap=bootstrap).to(device)
        for wave, part in batches(fakes, fake_ids):
            inception.update(panns.logits(to_rate(wave.to(device), rate, panns.sample_rate)), part)
        values["is_panns"] = float(inception.compute()[0])
        if bootstrap is not None:
            values["is_panns_lo"], values["is_panns_hi"] = inception.intervals()["is"]
    return values


@torch.no_grad()
def image_metrics(
    outputs: RunOutputs,
    judges: Judges,
    device: str = "cpu",
    bootstrap: Bootstrap | None = None,
    real_frames: list[torch.Tensor] | None = None,
) -> dict[str, float]:
    """AIS, AIC and FID (module docstring), with `<name>_lo` / `<name>_hi`; `real_frames`: the clips' middle
    frames when already read (`middle_frames`)."""
    from shared.audio import load_audio
    from shared.encoders import load_wav2clip
    from shared.encoders.clip_image_text import load_clip_image_text
    from shared.metrics import AudioImageClassAgreement, AudioImageSimilarity, FrechetDistance, ImageFID

    clip = load_clip_image_text(judges.clip, crop=False).to(device)
    wav2clip = load_wav2clip(judges.wav2clip).to(device).eval()
    clip_ids = outputs.clip_ids
    audio = torch.cat(
        [wav2clip(load_audio(c.path, wav2clip.sample_rate)[None].to(device)) for c in outputs.clips]
    )
    row_of = {clip_id: i for i, clip_id in enumerate(clip_ids)}
    rows = torch.tensor([row_of[i] for i in outputs.item_ids])
    labels = torch.tensor([c.label_id for c in outputs.clips])
    ais = AudioImageSimilarity(audio, clip_ids, bootstrap=bootstrap).to(device)
    aic = AudioImageClassAgreement.from_text_encoder(clip, outputs.labels, bootstrap=bootstrap).to(device)
    fid_network = (ImageFID(2048, judges.inception) if judges.inception else ImageFID(clip)).to(device)
    real_frames = real_frames if real_frames is not None else middle_frames(outputs)
    real_features = torch.cat([fid_network.features(f[None].to(device)) for f in real_frames])
    fid = FrechetDistance(real_features.shape[1], bootstrap=bootstrap).to(device)
    fid.update(real_features, real=True, ids=clip_ids)
    for start in range(0, len(outputs.items), BATCH):
        images = outputs.items[start : start + BATCH].float().to(device)
        ids, index = outputs.item_ids[start : start + BATCH], rows[start : start + BATCH]
        ais.update(clip.encode_images(images), audio[index.to(device)], ids)
        predicted = clip.zero_shot(images, outputs.labels, judges.class_template)
        aic.update(predicted, labels[index].to(device), ids)
        fid.update(fid_network.features(images), real=False, ids=ids)
    values = _floats(ais.compute(), {"ais": "ais"}) | _floats(aic.compute(), {"aic": "aic"})
    values["fid"] = float(fid.compute())
    if bootstrap is not None:
        values["fid_lo"], values["fid_hi"] = fid.intervals()["fid"]
    return values
