"""The downstream readers (ESC-50, UrbanSound8K, VGGSound folds) on fake layouts, and the probe protocol:
per-fold cross-validation, accuracy with its interval, mAP, equal-length embedding groups."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from projects.wavbrivl.data_downstream import ESC50, FoldedAudioDataModule, UrbanSound8K, VGGSoundFolds
from projects.wavbrivl.probes import (
    Embedded,
    ProbeSettings,
    _fold_mean_accuracy,
    cross_validate,
    embed_batch,
    probe_embedding,
    train_probe,
)
from shared.data.indexes import VGGSoundIndex
from shared.encoders import MelStatisticsEmbedding
from shared.metrics.bootstrap import Bootstrap
from shared.runs import UserError

CLASSES = {0: ("dog", 300.0), 1: ("rain", 1200.0), 2: ("siren", 4000.0)}
RATE = 44_100  # the releases' rate; the reader resamples to 16 kHz

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_tone(path: Path, hz: float, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * hz * (1 + 0.05 * rng.standard_normal()) * t) + 0.02 * rng.standard_normal(
        len(t)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def fake_esc50(root: Path, folds: int = 5, per_class: int = 2) -> Path:
    """ESC-50's layout: meta/esc50.csv (filename, fold, target, category, esc10, src_file, take) + audio/."""
    rows = []
    for fold in range(1, folds + 1):
        for target, (category, hz) in CLASSES.items():
            for take in range(per_class):
                name = f"{fold}-{target}{take}-A-{target}.wav"
                _write_tone(root / "audio" / name, hz, 0.5, seed=len(rows))
                rows.append([name, fold, target, category, "False", f"{target}{take}", "A"])
    _write_csv(
        root / "meta/esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows
    )
    return root


def fake_urbansound8k(root: Path, folds: int = 3) -> Path:
    """UrbanSound8K's layout: metadata/UrbanSound8K.csv + audio/fold<k>/, clips of different lengths."""
    header = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    rows = []
    for fold in range(1, folds + 1):
        for class_id, (name, hz) in CLASSES.items():
            for take, seconds in enumerate((0.4, 0.7)):
                file = f"{100 + len(rows)}-{class_id}-0-{take}.wav"
                _write_tone(root / "audio" / f"fold{fold}" / file, hz, seconds, seed=len(rows))
                rows.append([file, 100 + len(rows), 0.0, seconds, 1, fold, class_id, name])
    _write_csv(root / "metadata/UrbanSound8K.csv", header, rows)
    return root


def test_esc50_reader_folds_classes_and_missing_files(tmp_path):
    root = fake_esc50(tmp_path / "ESC-50")
    (root / "audio" / "1-00-A-0.wav").unlink()
    data = ESC50(root)
    assert data.folds == ["1", "2", "3", "4", "5"]
    assert data.labels == ["dog", "rain", "siren"]
    assert len(data.clips) == 29 and len(data.report) == 1
    assert {c.label_id for c in data.clips if c.label == "siren"} == {2}

    (root / "meta/esc50.csv").write_text("filename,fold\nx.wav,1\n")
    with pytest.raises(UserError, match="esc50.csv: expected a header"):
        ESC50(root)
    with pytest.raises(UserError, match="metadata CSV not found"):
        UrbanSound8K(root)


def test_urbansound8k_reader_and_loader_keep_every_clip_s_own_length(tmp_path):
    dm = FoldedAudioDataModule(
        "urbansound8k", str(fake_urbansound8k(tmp_path / "UrbanSound8K")), batch_size=4
    )
    assert dm.folds == ["1", "2", "3"] and dm.labels == ["dog", "rain", "siren"]
    batches = list(dm.predict_dataloader())
    lengths = torch.cat([b["lengths"] for b in batches])
    assert sorted(set(lengths.tolist())) == [round(0.4 * 16_000), round(0.7 * 16_000)]
    first = batches[0]
    assert first["wave"].shape == (4, int(first["lengths"].max())) and first["wave"].dtype == torch.float32
    short = int(first["lengths"].argmin())
    assert first["wave"][short, first["lengths"][short] :].abs().max() == 0  # zero padding

    # embedding a padded batch gives each clip the embedding it has alone
    embed = MelStatisticsEmbedding()
    grouped = embed_batch(embed, first["wave"], first["lengths"])
    alone = torch.cat([embed(first["wave"][i : i + 1, : first["lengths"][i]]) for i in range(4)])
    torch.testing.assert_close(grouped, alone, rtol=1e-5, atol=1e-5)


def _blobs(n_per_class: int, n_classes: int, folds: list[str], seed: int, spread: float) -> Embedded:
    gen = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_classes, 8, generator=gen)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = centres[labels] + spread * torch.randn(len(labels), 8, generator=gen)
    fold_of = [folds[i % len(folds)] for i in range(len(labels))]
    return Embedded(x, labels, fold_of, [f"c{i}" for i in range(len(labels))])


def test_cross_validation_scores_each_fold_by_a_probe_trained_on_the_others():
    folds = ["1", "2", "3", "4", "5"]
    separable = _blobs(20, 4, folds, seed=0, spread=0.3)
    for kind in ("linear", "mlp"):
        result = cross_validate(separable, 4, ProbeSettings(kind=kind, epochs=100), bootstrap=Bootstrap(200))
        assert list(result.per_fold) == folds
        assert result.value == pytest.approx(1.0)
        assert result.chance == pytest.approx(0.25)

    # labels unrelated to the embeddings: accuracy near chance, its interval around it
    noise = _blobs(40, 4, folds, seed=1, spread=0.3)
    noise.labels = noise.labels[torch.randperm(len(noise.labels), generator=torch.Generator().manual_seed(2))]
    result = cross_validate(noise, 4, ProbeSettings(kind="linear", epochs=100), bootstrap=Bootstrap(200))
    assert result.value == pytest.approx(sum(result.per_fold.values()) / 5, rel=1e-12)
    assert result.interval[0] < result.value < result.interval[1]
    assert result.interval[0] < 0.25 + 0.15 and abs(result.value - 0.25) < 0.15


def test_the_interval_statistic_is_the_fold_mean_accuracy():
    hits = torch.tensor([1, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
    fold_of = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    statistic = _fold_mean_accuracy(hits, fold_of, 2)
    assert statistic(torch.ones(1, 7)).item() == pytest.approx((3 / 4 + 0) / 2)
    # drawing the first clip of fold 1 three times and nothing else of it still gives fold 1 accuracy 0
    counts = torch.tensor([[1, 1, 1, 1, 3, 0, 0], [2, 0, 0, 0, 1, 1, 1]])
    assert statistic(counts).tolist() == pytest.approx([3 / 8, 0.5])


def test_map_on_a_train_test_split_and_seeded_probes():
    data = _blobs(10, 3, ["train", "train", "test"], seed=3, spread=0.2)
    result = cross_validate(data, 3, ProbeSettings(kind="mlp", epochs=60), test_folds=["test"], metric="map")
    assert list(result.per_fold) == ["test"] and result.value == pytest.approx(1.0)
    assert result.chance == pytest.approx(1 / 3, abs=0.05) and math.isnan(result.interval[0])
    settings = ProbeSettings(kind="mlp", epochs=5, seed=7)
    a = train_probe(data.x, data.labels, 3, settings)
    b = train_probe(data.x, data.labels, 3, settings)
    torch.testing.assert_close(a(data.x), b(data.x))
    with pytest.raises(ValueError, match="probe kind"):
        ProbeSettings(kind="svm")


def test_mel_statistics_probes_on_fake_esc50(tmp_path):
    dm = FoldedAudioDataModule("esc50", str(fake_esc50(tmp_path / "ESC-50")), batch_size=8)
    settings = [ProbeSettings(kind="linear", epochs=100), ProbeSettings(kind="mlp", epochs=100)]
    rows = probe_embedding(
        MelStatisticsEmbedding(), dm.predict_dataloader(), len(dm.labels), settings, bootstrap=Bootstrap(100)
    )
    # three tones far apart in frequency: the spectral envelope alone separates them
    assert rows["linear"].value > 0.9 and rows["mlp"].value > 0.9
    assert list(rows["mlp"].per_fold) == dm.folds


@pytest.mark.slow
def test_vggsound_folds_of_the_toy_set(toy_root):
    folded = VGGSoundFolds(VGGSoundIndex(toy_root / "vggsound"))
    assert {c.fold for c in folded.clips} == {"train", "test"} and len(folded.labels) == 6
    dm = FoldedAudioDataModule(folded, batch_size=16)
    rows = probe_embedding(
        MelStatisticsEmbedding(),
        dm.predict_dataloader(),
        6,
        [ProbeSettings(kind="linear", epochs=100)],
        test_folds=["test"],
        bootstrap=Bootstrap(100),
    )
    # toy classes differ in timbre: the mel statistics find them well above chance 1/6
    assert rows["linear"].value > 0.5 and rows["linear"].chance == pytest.approx(1 / 6)
