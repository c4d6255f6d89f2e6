from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from projects.specvqgan.convert import load_vggishish
from projects.specvqgan.evaluate import evaluate_codebook
from shared.cli import AvgenCLI
from tests.conftest import REPO

CONFIGS = REPO / "projects" / "specvqgan" / "configs"


def toy_args(config: str, toy_root: Path, tmp_path: Path) -> list[str]:
    return [
        "fit", "--config", str(CONFIGS / config),
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--run.root={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def classifier_ckpt(toy_root, tmp_path_factory) -> Path:
    """A VGGish-ish trained through the real CLI on the small toy set."""
    tmp = tmp_path_factory.mktemp("vggishish")
    cli = AvgenCLI(args=[*toy_args("toy_vggishish.yaml", toy_root, tmp), "--trainer.max_epochs=30"])
    assert cli.trainer.callback_metrics["val/acc"] > 0.5  # 6 classes: well above chance
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.name == "best.ckpt" and best.parent == cli.run_dir / "checkpoints"
    return best


@pytest.mark.slow
def test_classifier_checkpoint_carries_the_training_statistics(classifier_ckpt, toy_root):
    net = load_vggishish(classifier_ckpt)
    assert net.classifier[-1].out_features == 6
    # standardisation statistics of the toy training mels, not the identity defaults
    assert not torch.allclose(net.mel_std, torch.ones(80))
    assert net.mel_mean.min() >= 0 and net.mel_mean.max() < 1


@pytest.mark.slow
def test_codebook_stage_trains_with_every_loss_and_logs_examples(classifier_ckpt, toy_root, tmp_path):
    args = [
        *toy_args("toy_codebook.yaml", toy_root, tmp_path),
        f"--model.init_args.classifier_ckpt={classifier_ckpt}",
        "--model.init_args.disc_start=2",
        "--trainer.max_steps=4",
        "--trainer.val_check_interval=4",
        "--trainer.log_every_n_steps=1",
    ]
    cli = AvgenCLI(args=args)
    # one step = one generator update, even though the discriminator also stepped twice
    assert cli.trainer.global_step == 4
    logged = set(cli.trainer.callback_metrics)
    assert {"train/l1", "train/lpaps", "train/codebook", "train/g_adv", "train/d", "val/codes_used"} <= logged
    events = EventAccumulator(str(cli.run_dir), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    assert (
        "examples/input/0" in events.Tags()["images"]
        and "examples/reconstruction/3" in events.Tags()["images"]
    )
    assert "audio/reconstruction/0" in events.Tags()["audio"]
    assert "train/d" in events.Tags()["scalars"]
    state = torch.load(cli.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 4 and len(state["optimizer_states"]) == 2


@pytest.mark.slow
def test_codebook_learns_the_toy_spectrograms(classifier_ckpt, toy_root, tmp_path):
    """L1 + LPAPS + codebook loss (the GAN left out), 300 steps: far better than the mean spectrogram.

    Without LPAPS, L1 alone settles on the per-pixel median of these sparse spectrograms (silence) for
    hundreds of steps; the perceptual term is what gets the toy codebook going.
    """
    args = [
        *toy_args("toy_codebook.yaml", toy_root, tmp_path),
        f"--model.init_args.classifier_ckpt={classifier_ckpt}",
        "--model.init_args.disc_start=100000",
        "--trainer.max_steps=300",
        "--trainer.val_check_interval=300",
        "--trainer.callbacks=[]",
    ]
    cli = AvgenCLI(args=args)
    quality = evaluate_codebook(cli.model.autoencoder, cli.datamodule)
    assert quality["l1_reconstruction"] < 0.6 * quality["l1_mean_spectrogram"], quality
    assert quality["codes_used"] >= 0.25, quality


def test_a_too_short_duration_names_the_cached_file(toy_root, tmp_path):
    from projects.specvqgan.data import SpectrogramDataModule
    from shared.data import VGGSoundIndex

    dm = SpectrogramDataModule(VGGSoundIndex(toy_root / "vggsound"), cache_dir=str(tmp_path), duration=1.0)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"\.npy: 87 mel frames, fewer than the 848 needed"):
        dm.split("valid")[0]


def test_random_crops_are_windows_of_each_item_drawn_from_the_global_generator():
    from shared.data.loaders import random_windows as random_crops

    mel = torch.arange(4 * 3 * 10, dtype=torch.float32).reshape(4, 1, 3, 10)
    torch.manual_seed(0)
    crops = random_crops(mel, 6)
    assert crops.shape == (4, 1, 3, 6)
    starts = [int(c[0, 0, 0] - m[0, 0, 0]) for c, m in zip(crops, mel, strict=True)]
    for crop, item, start in zip(crops, mel, starts, strict=True):
        assert torch.equal(crop, item[..., start : start + 6])
    torch.manual_seed(0)
    assert torch.equal(random_crops(mel, 6), crops)  # reproducible from the global generator's state
