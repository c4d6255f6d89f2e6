"""The networks that score every run of a direction alike: which files, where the toy ones are found, loading.

Video/image -> audio: the toy audio classifier (a Melception trained on the toy clips' SpecVQGAN mels, the
network behind SpecVQGAN's, TiVA's and GRAVO's toy FAD / KL / IS; `classifier`), and on real data VGGish (FAD),
PaSST (KL) and PANNs Cnn14 (IS) from their released weight files. Audio -> image: a CLIP (a transformers
`CLIPModel` folder: image and text embeddings), the Wav2CLIP trained against it (AIS) and, for FID, torch-
fidelity's Inception weights (else the CLIP's image tower, as AudioToken's toy evaluation does).

Nothing is downloaded. Without a file the toy stand-ins are taken from the runs folder the run lies in, the same
for every run of a comparison: the classifier of the first of `TOY_CLASSIFIERS` that was trained, AudioToken's
toy CLIP and toy Wav2CLIP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from shared.runs import UserError, run_checkpoint

# the toy Melceptions, in the order a default is looked for: runs/<project>/<experiment>/default
TOY_CLASSIFIERS = (("specvqgan", "toy_melception"), ("tiva", "toy_melception"), ("gravo", "toy_classifier"))
TOY_CLIP, TOY_WAV2CLIP = ("audiotoken", "toy_clip"), ("audiotoken", "toy_wav2clip")
AUDIO_JUDGES, IMAGE_JUDGES = ("classifier", "vggish", "passt", "panns"), ("clip", "wav2clip", "inception")


@dataclass(frozen=True)
class Judges:
    """Local files of the judging networks (None: not used, or the toy default where there is one)."""

    classifier: str | None = None  # a toy Melception / WaveMelception classifier checkpoint
    vggish: str | None = None  # torchvggish's vggish-10086976.pth
    passt: str | None = None  # passt-s-f128-p16-s10-ap.476-swa.pt
    panns: str | None = None  # Cnn14_16k_mAP=0.438.pth (or the 32-kHz Cnn14_mAP=0.431.pth)
    clip: str | None = None  # a transformers CLIPModel folder
    wav2clip: str | None = None  # a Wav2CLIP checkpoint (official Wav2CLIP.pt or a toy stage's)
    inception: str | None = None  # torch-fidelity's weights-inception-2015-12-05-6726825d.pth
    class_template: str = "a photo of a {}"  # AIC's zero-shot prompt of a class name

    def of(self, direction: str) -> dict[str, str | None]:
        """The settings that score `direction` (what a report records and a comparison must share)."""
        names = AUDIO_JUDGES if direction.endswith("->audio") else (*IMAGE_JUDGES, "class_template")
        return {name: value for name, value in asdict(self).items() if name in names}

    def resolved(self, direction: str, runs_root: Path) -> Judges:
        """These judges with the toy defaults from `runs_root` filled in; a UserError when a direction's
        metrics have no network to run on."""
        if direction.endswith("->audio"):
            classifier = self.classifier or _first_trained(runs_root, TOY_CLASSIFIERS)
            if classifier is None and not (self.vggish or self.passt or self.panns):
                raise UserError(
                    "the common audio metrics need the toy classifier or real networks: none of "
                    + ", ".join(str(runs_root / p / e / "default") for p, e in TOY_CLASSIFIERS)
                    + " was trained (`make train PROJECT=specvqgan` trains one); or give --classifier, "
                    "--vggish, --passt, --panns"
                )
            return replace(self, classifier=classifier)
        clip = self.clip or _folder(runs_root / TOY_CLIP[0] / TOY_CLIP[1] / "default" / "clip")
        wav2clip = self.wav2clip or _first_trained(runs_root, (TOY_WAV2CLIP,))
        if clip is None or wav2clip is None:
            raise UserError(
                "AIS, AIC and FID need a CLIP folder and a Wav2CLIP: give --clip and --wav2clip, or train "
                f"AudioToken's toy ones (`make train PROJECT=audiotoken`: {runs_root}/audiotoken/toy_clip, "
                "toy_wav2clip)"
            )
        return replace(self, clip=clip, wav2clip=wav2clip)


def _first_trained(runs_root: Path, stages: tuple[tuple[str, str], ...]) -> str | None:
    for project, experiment in stages:
        run = runs_root / project / experiment / "default"
        if run.is_dir():
            return str(run_checkpoint(run))
    return None


def _folder(path: Path) -> str | None:
    return str(path) if path.is_dir() else None


def load_toy_classifier(path: str | Path):
    """The Melception inside a toy classifier checkpoint (a `SpectrogramClassifier` of a `Melception` or of a
    `WaveMelception`), or SpecVQGAN's official Melception file; frozen, in eval mode."""
    from shared.encoders import WaveMelception, load_melception
    from shared.encoders.melception_loading import load_classifier_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such classifier checkpoint")
    checkpoint = load_classifier_file(path)
    if "state_dict" in checkpoint and "hyper_parameters" in checkpoint:
        from shared.classifier import SpectrogramClassifier

        net = SpectrogramClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True).net
        if isinstance(net, WaveMelception):
            return net.melception.eval().requires_grad_(False)
    return load_melception(path).requires_grad_(False)
