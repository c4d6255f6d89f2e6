"""Table 1/2-shaped evaluation (`projects.wavbrivl.evaluate`): probes from train to test split, retrieval MRR of
the test clips, the formatted rows; on a stand-in DataModule and on the toy VGGSound DataModule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projects.wavbrivl.evaluate import (
    GenerationEvaluation,
    evaluate_embedding,
    evaluate_generation,
    format_rows,
)
from projects.wavbrivl.generation import GenerationSettings
from projects.wavbrivl.probes import ProbeSettings
from shared.metrics.bootstrap import Bootstrap
from tests.projects.wavbrivl.test_generation import TinyTower, real_image, tiny_vqgan

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 16_000
TONES = (400.0, 1600.0, 5000.0)  # one per class
COLOURS = torch.eye(3)  # class c's frames are mostly colour channel c


class StandInData:
    """The parts of a WavBriVL DataModule the evaluation reads, on synthetic clips: class c's audio is a tone
    at TONES[c] (clips of two lengths, zero-padded), its frame a noisy image of colour COLOURS[c]."""

    n_classes = 3
    batch_size = 8

    def __init__(self, n_train: int = 24, n_test: int = 18):
        gen = torch.Generator().manual_seed(0)
        self.items = {
            split: [self._item(i, gen, split) for i in range(n)]
            for split, n in (("train", n_train), ("test", n_test))
        }

    def _item(self, i: int, gen: torch.Generator, split: str) -> dict:
        label = i % 3
        length = SR // 2 if i % 2 else SR * 3 // 8
        t = torch.arange(length) / SR
        wave = torch.zeros(SR // 2)
        wave[:length] = 0.3 * torch.sin(2 * math.pi * TONES[label] * t) + 0.01 * torch.randn(
            length, generator=gen
        )
        image = (0.6 * COLOURS[label].view(3, 1, 1) + 0.2 * torch.rand(3, 8, 8, generator=gen)).clamp(0, 1)
        return {
            "wave": wave,
            "lengths": length,
            "image": image,
            "label": label,
            "clip_id": f"{split}{i}",
            "label_text": str(label),
            "frame_index": 0,
        }

    def setup(self, stage: str) -> None:
        pass

    def split(self, split: str):
        items = self.items[split]

        class Keyed(torch.utils.data.Dataset):  # training datasets take (epoch, index) keys
            def __len__(self):
                return len(items)

            def __getitem__(self, key):
                return items[key[1]]

        return Keyed()

    def test_dataloader(self):
        return torch.utils.data.DataLoader(self.items["test"], batch_size=self.batch_size)


def tone_energies(wav: torch.Tensor) -> torch.Tensor:
    """A joint space by construction: the magnitude at each class's tone frequency."""
    spectrum = torch.fft.rfft(wav, dim=1).abs()
    bins = [round(hz * wav.shape[1] / SR) for hz in TONES]
    return F.normalize(spectrum[:, bins], dim=1)


def colour_means(images: torch.Tensor) -> torch.Tensor:
    return F.normalize(images.mean(dim=(2, 3)), dim=1)


def test_a_shared_space_is_found_by_probes_and_retrieval_and_a_random_one_is_not():
    data = StandInData()
    probes = (ProbeSettings(kind="linear", epochs=100), ProbeSettings(kind="mlp", epochs=100))
    matched = evaluate_embedding(tone_energies, data, colour_means, probes, Bootstrap(100))
    assert matched.probes["linear"].value == pytest.approx(1.0) and matched.probes[
        "mlp"
    ].value == pytest.approx(1.0)
    assert matched.probes["linear"].chance == pytest.approx(1 / 3)
    # every clip's audio points at its class's colour: the first candidate is always of its class
    assert matched.retrieval["mrr_a2i_class"] == pytest.approx(1.0)
    assert matched.retrieval["mrr_i2a_class"] == pytest.approx(1.0)
    n = 18
    assert matched.retrieval["mrr_a2i_chance"] == pytest.approx(sum(1 / r for r in range(1, n + 1)) / n)
    assert matched.retrieval["mrr_a2i"] > matched.retrieval["mrr_a2i_chance"]

    noise = torch.Generator().manual_seed(0)
    unrelated = evaluate_embedding(
        lambda wav: torch.randn(len(wav), 3, generator=noise), data, colour_means, probes, None
    )
    # embeddings that ignore the audio: nothing for a probe or a ranking to find
    assert unrelated.probes["linear"].value < 0.8
    assert unrelated.retrieval["mrr_a2i_class"] < 1.0

    table = format_rows({"matched": matched, "unrelated": unrelated})
    lines = table.splitlines()
    assert lines[0].startswith("| embedding | linear acc | mlp acc | MRR A->I")
    assert lines[2].startswith("| matched | 1 [1, 1] | 1 [1, 1] |") and lines[3].startswith("| unrelated |")
    assert lines[-1].startswith("| chance | 0.3333 | 0.3333 |")


def test_an_embedding_outside_the_image_space_gets_probes_only():
    data = StandInData()
    probes = (ProbeSettings(kind="linear", epochs=50),)
    mel_only = evaluate_embedding(tone_energies, data, None, probes, None)
    assert mel_only.retrieval == {}
    assert "| - | - | - | - |" in format_rows({"mel": mel_only})
    with pytest.raises(ValueError, match="one space"):
        evaluate_embedding(lambda w: tone_energies(w)[:, :2], data, colour_means, probes, None)


@pytest.mark.slow
def test_toy_vggsound_datamodule_end_to_end(toy_root, tmp_path):
    from projects.wavbrivl.data import WavBriVLVGGSoundDataModule
    from shared.data import VGGSoundIndex
    from shared.encoders import MelStatisticsEmbedding

    index = VGGSoundIndex(toy_root / "vggsound", split_dir=None, valid_fraction=0.1)
    dm = WavBriVLVGGSoundDataModule(
        index,
        cache_dir=str(tmp_path / "cache"),
        audio_seconds=2.0,
        image_size=32,
        frame_fps=2.0,
        batch_size=8,
    )
    dm.prepare_data()
    torch.manual_seed(0)
    mel = MelStatisticsEmbedding()
    project = nn.Linear(mel.embed_dim, 16)  # a random-init "audio tower" into a 16-d joint space
    image_tower = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16))
    with torch.no_grad():
        result = evaluate_embedding(
            lambda wav: F.normalize(project(mel(wav)), dim=1),
            dm,
            lambda images: F.normalize(image_tower(images), dim=1),
            (ProbeSettings(kind="linear", epochs=50),),
            Bootstrap(100),
        )
    n_test = len(dm.split("test"))
    assert result.probes["linear"].chance == pytest.approx(1 / 6)
    assert result.retrieval["mrr_a2i_chance"] == pytest.approx(
        sum(1 / r for r in range(1, n_test + 1)) / n_test
    )
    for name in ("mrr_a2i", "mrr_i2a", "mrr_a2i_class", "mrr_i2a_class"):
        assert result.retrieval[f"{name}_lo"] <= result.retrieval[name] <= result.retrieval[f"{name}_hi"]
    assert "| random |" in format_rows({"random": result})


class ClassTower(TinyTower):
    """The generation tests' stand-in image tower with a class head: class c is the nearest of the embeddings
    of `class_image(c)`."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.class_targets = self(torch.stack([class_image(c) for c in range(3)]))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self(images) @ self.class_targets.T


def class_image(label: int) -> torch.Tensor:
    """Class c's picture: the generation tests' toy frame with its colour channels rolled by c."""
    return real_image().roll(label, dims=0)


def test_generation_from_the_first_clips_of_each_class():
    data, tower = StandInData(n_test=12), ClassTower()

    def audio_to_class_target(wav: torch.Tensor) -> torch.Tensor:
        """A trained audio tower by construction: the clip's tone picks its class picture's embedding."""
        return tower.class_targets[tone_energies(wav).argmax(dim=1)]

    settings = GenerationSettings(steps=25, size=32, cutouts=8)
    result = evaluate_generation(audio_to_class_target, tower, tiny_vqgan(), data, settings, per_class=2)
    # test clips are labelled i % 3: the first two of each class are clips 0-5
    assert result.clip_ids == [f"test{i}" for i in range(6)]
    assert result.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert [len(curve) for curve in result.curves] == [25] * 6
    # each target is reachable (an image the VQGAN can approach): the similarity rises, and the class head
    # reads the clip's class off most generated images
    assert all(max(curve) > curve[0] for curve in result.curves), result.curves
    assert (result.predicted == result.labels).sum() >= 4, result.predicted
    assert result.seconds_per_image > 0


def test_generation_summary_counts_agreement_and_rises():
    result = GenerationEvaluation(
        ["a", "b", "c", "d"],
        torch.tensor([0, 1, 2, 3]),
        torch.tensor([0, 1, 0, 3]),
        [[0.1, 0.5], [0.2, 0.1], [0.0, 0.3], [0.4, 0.4]],
        seconds_per_image=2.5,
        n_classes=4,
    )
    similarity, agreement, speed = result.lines(bootstrap=None)
    assert (
        similarity == "similarity image/audio, first iteration 0.175 -> best 0.350 (higher in 2 of 4 images)"
    )
    assert agreement == "class agreement of the generated image 0.750 (chance 0.250)"
    assert speed == "2.5 s per image (2 iterations)"
