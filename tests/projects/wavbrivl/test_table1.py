"""`python -m projects.wavbrivl.table1` on a fake ESC-50 with a tiny audio-tower run, a tiny Wav2CLIP file and the
mel statistics: one table row per embedding, JSON values equal to `probe_embedding`'s for the same embedding,
one-line errors for a user's mistakes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from projects.wavbrivl.data_downstream import FoldedAudioDataModule
from projects.wavbrivl.models.audio_tower import WavLMAudioTower, load_audio_tower
from projects.wavbrivl.module_audio_tower import WavBriVLTraining
from projects.wavbrivl.pipeline import random_init_tower
from projects.wavbrivl.probes import ProbeSettings, probe_embedding
from projects.wavbrivl.table1 import main
from shared.encoders import MelStatisticsEmbedding, Wav2CLIP, load_wav2clip
from shared.metrics.bootstrap import Bootstrap
from shared.runs import UserError
from tests.conftest import REPO
from tests.projects.wavbrivl.test_audio_tower import TINY as TINY_WAVLM
from tests.projects.wavbrivl.test_generate import EMBED, save_checkpoint
from tests.projects.wavbrivl.test_image_tower import tiny_tower
from tests.projects.wavbrivl.test_probes import fake_esc50

pytestmark = pytest.mark.usefixtures("one_thread")

# few probe epochs and resamples: the command's plumbing is under test, not the probes (test_probes)
FAST = ["--epochs=30", "--resamples=50", "--batch-size=8"]
SETTINGS = [ProbeSettings(kind="linear", epochs=30), ProbeSettings(kind="mlp", epochs=30)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(fake ESC-50 root: 5 folds x 3 classes x 4 clips, audio-tower run folder with random weights, a
    Wav2CLIP file in the official flat layout)."""
    folder = tmp_path_factory.mktemp("table1")
    torch.manual_seed(0)
    training = WavBriVLTraining(
        WavLMAudioTower(TINY_WAVLM, embed_dim=EMBED, trainable="all"),
        tiny_tower(),
        queue_size=8,
        frame_cache_dir=None,
    )
    save_checkpoint(training, folder / "audio_run" / "checkpoints" / "last.ckpt")
    wav2clip = folder / "Wav2CLIP.pt"
    torch.save(Wav2CLIP(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=8).state_dict(), wav2clip)
    # 12 clips a fold: a resample of 60 clips that misses a whole fold (undefined fold mean, NaN interval) has
    # probability 0.8^60 per fold and resample
    return fake_esc50(folder / "ESC-50", per_class=4), folder / "audio_run", wav2clip


def test_one_row_per_embedding_with_the_values_of_probe_embedding(inputs, tmp_path, capsys):
    root, run, wav2clip = inputs
    out = tmp_path / "tables" / "esc50.json"
    argv = ["--dataset=esc50", f"--root={root}", f"--run={run}", "--random-init", f"--wav2clip={wav2clip}"]
    table = main([*argv, "--mel", *FAST, f"--out={out}"])
    assert json.loads(out.read_text()) == table

    names = [str(run), "random-init audio tower", "Wav2CLIP", "mel statistics"]
    printed = capsys.readouterr().out.splitlines()
    start = printed.index("| embedding | linear acc | mlp acc |")
    assert [line.split(" | ")[0].removeprefix("| ") for line in printed[start + 2 : start + 7]] == [
        *names,
        "chance",
    ]
    assert printed[start + 6] == f"| chance | {1 / 3:.4f} | {1 / 3:.4f} |"

    assert table["folds"] == table["test_folds"] == ["1", "2", "3", "4", "5"]
    assert table["classes"] == ["dog", "rain", "siren"] and table["clips"] == 60
    assert list(table["rows"]) == names
    # the same embeddings through the protocol's function, outside the command
    tower = load_audio_tower(run)
    embeddings = [tower, random_init_tower(tower), load_wav2clip(wav2clip), MelStatisticsEmbedding().eval()]
    data = FoldedAudioDataModule("esc50", str(root), batch_size=8)
    for name, embed in zip(names, embeddings, strict=True):
        expected = probe_embedding(embed, data.predict_dataloader(), 3, SETTINGS, bootstrap=Bootstrap(50))
        for kind in ("linear", "mlp"):
            row, want = table["rows"][name][kind], expected[kind]
            assert row["metric"] == "acc" and row["chance"] == pytest.approx(1 / 3)
            assert row["per_fold"] == pytest.approx(want.per_fold, abs=1e-12)
            assert row["value"] == pytest.approx(sum(row["per_fold"].values()) / 5, abs=1e-12)
            assert row["interval"] == pytest.approx(list(want.interval), abs=1e-12)
            assert row["interval"][0] <= row["value"] <= row["interval"][1]
    # three tones far apart: the spectral envelope separates them (the rows are not all alike)
    assert table["rows"]["mel statistics"]["linear"]["value"] > 0.9


def test_clips_missing_on_disk_are_skipped_and_counted(tmp_path, capsys):
    root = fake_esc50(tmp_path / "ESC-50")
    next((root / "audio").glob("2-*.wav")).unlink()
    table = main(["--dataset=esc50", f"--root={root}", "--mel", "--probes", "linear", *FAST])
    assert table["clips"] == 29 and table["skipped_clips"] == 1
    assert "esc50: skipped 1 of 30 clips" in capsys.readouterr().out


def test_a_users_mistakes_are_one_line_errors(inputs, tmp_path):
    root, run, _ = inputs
    esc50 = ["--dataset=esc50", f"--root={root}"]
    with pytest.raises(UserError, match="no embedding given"):
        main(esc50)
    with pytest.raises(UserError, match="--random-init .* give a --run"):
        main([*esc50, "--random-init", "--mel"])
    with pytest.raises(UserError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        main(["--dataset=urbansound8k", f"--root={tmp_path / 'nowhere'}", "--mel"])
    with pytest.raises(UserError, match=f"{tmp_path / 'metadata' / 'UrbanSound8K.csv'}: .*CSV not found"):
        main(["--dataset=urbansound8k", f"--root={tmp_path}", "--mel"])
    with pytest.raises(UserError, match=f"{tmp_path / 'vggsound.csv'}: VGGSound CSV not found"):
        main(["--dataset=vggsound", f"--root={tmp_path}", "--mel"])
    (tmp_path / "untrained").mkdir()
    with pytest.raises(UserError, match=f"no checkpoint in {tmp_path / 'untrained'}"):
        main([*esc50, f"--run={tmp_path / 'untrained'}"])
    with pytest.raises(UserError, match="given twice"):
        main([*esc50, f"--run={run}", f"--run={run}"])
    with pytest.raises(UserError, match=f"{tmp_path / 'W.pt'}: no such Wav2CLIP file"):
        main([*esc50, f"--wav2clip={tmp_path / 'W.pt'}"])


@pytest.mark.slow
def test_vggsound_is_scored_by_map_on_its_test_split(toy_root, tmp_path, capsys):
    out = tmp_path / "vggsound.json"
    vggsound = ["--dataset=vggsound", f"--root={toy_root / 'vggsound'}"]
    table = main([*vggsound, "--mel", "--probes", "linear", *FAST, f"--out={out}"])
    assert "| embedding | linear mAP |" in capsys.readouterr().out
    assert table["test_folds"] == ["test"] and len(table["classes"]) == 6
    row = table["rows"]["mel statistics"]["linear"]
    assert row["metric"] == "map" and row["interval"] is None and list(row["per_fold"]) == ["test"]
    assert 0 < row["chance"] < row["value"] <= 1 and not math.isnan(row["value"])
    assert json.loads(out.read_text())["rows"]["mel statistics"]["linear"]["interval"] is None


@pytest.mark.slow
def test_the_module_command_prints_a_mistake_as_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "projects.wavbrivl.table1", "--dataset=esc50", f"--root={tmp_path}", "--mel"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"table1: error: {tmp_path / 'meta' / 'esc50.csv'}: esc50 metadata CSV not found (expected "
        "meta/esc50.csv under the root)"
    ]
