"""SpecVQGAN's MelGAN vocoder (arXiv:2110.08791, sec. 3.3, 6.1.5; official `vocoder/modules.py`): paper sizes,
official weights against an independent reference of the official modules, safe args files, the toy stage."""

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from projects.specvqgan.convert_melgan import (
    UnsafeArgsError,
    convert_melgan_state_dict,
    load_official_melgan,
    read_official_args,
)
from projects.specvqgan.models import MelGANDiscriminator, MelGANGenerator
from projects.specvqgan.vocoder import load_vocoder
from shared.audio import GriffinLimVocoder, MelFrontEnd
from shared.cli import AvgenCLI
from shared.data.loaders import random_windows as random_segments
from tests.conftest import REPO

from . import melgan_reference

CONFIGS = REPO / "projects" / "specvqgan" / "configs"


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def test_paper_sizes_and_shapes():
    generator, discriminator = MelGANGenerator(), MelGANDiscriminator()
    assert n_params(generator) == 4_266_050  # the released best_netG.pt
    assert n_params(discriminator) == 16_924_086
    with torch.no_grad():
        wave = generator(torch.rand(2, 80, 12))
        assert wave.shape == (2, 1, 256 * 12) and wave.abs().max() <= 1
        scores = discriminator(torch.rand(2, 1, 8192) * 2 - 1)
    assert len(scores) == 3  # scales: the waveform, pooled once, pooled twice
    for k, layers in enumerate(scores):
        assert len(layers) == 4 + 3  # layer_0, 4 strided layers, the k5 conv, the score conv
        assert [x.shape[1] for x in layers] == [16, 64, 256, 1024, 1024, 1024, 1]
        assert layers[-1].shape == (2, 1, 8192 // 2**k // 4**4)


def test_a_10_s_spectrogram_gives_217088_samples():
    small = MelGANGenerator(ngf=2, n_residual_layers=1)  # same upsampling, narrow (the length is the point)
    with torch.no_grad():
        assert small(torch.rand(1, 80, 848)).shape == (1, 1, 217_088)


# ---------------------------------------------------------------------------------- official weights
def write_official_release(
    folder: Path, n_mels=80, ngf=4, n_res=3, args_ngf=None
) -> melgan_reference.Generator:
    """The official generator (independent reference, random weights) saved as the release is: `best_netG.pt`
    (its plain state dict) and `args.yml` (the PyYAML dump of its argparse Namespace)."""
    official = melgan_reference.randomize(melgan_reference.Generator(n_mels, ngf, n_res), seed=1)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(official.state_dict(), folder / "best_netG.pt")
    args = argparse.Namespace(
        n_mel_channels=n_mels, ngf=args_ngf or ngf, n_residual_layers=n_res, seq_len=8192,
        data_path=Path("/home/nvme/data/vggsound/features/melspec_10s_22050hz"), load_path=None,
    )  # fmt: skip
    (folder / "args.yml").write_text(yaml.dump(args))  # what the official training script writes
    return official


def test_reference_melgan_has_the_official_sizes():
    generator = melgan_reference.Generator(80, 32, 3)
    discriminator = melgan_reference.Discriminator(3, 16, 4, 4)
    assert n_params(generator) == 4_266_050 and n_params(discriminator) == 16_924_086  # the released sizes
    assert "model.1.weight_g" in generator.state_dict()  # old-style weight norm, as the release


@torch.no_grad()
def test_official_release_gives_the_official_generator_s_waveform(tmp_path):
    official = write_official_release(tmp_path / "vggsound")
    assert "!!python/object:argparse.Namespace" in (tmp_path / "vggsound" / "args.yml").read_text()
    vocoder = load_vocoder(tmp_path / "vggsound")
    assert vocoder.kind == "melgan" and not vocoder.training and vocoder.sample_rate == 22050
    mel = torch.rand(2, 80, 20)
    expected = official(mel).squeeze(1)
    assert expected.std() > 0.1 and vocoder(mel).shape == (2, 256 * 20)
    assert torch.allclose(vocoder(mel), expected, atol=1e-5)
    # the .pt file alone gives the same generator (sizes read from the shapes)
    alone = load_official_melgan(tmp_path / "vggsound" / "best_netG.pt")
    assert torch.allclose(alone(mel).squeeze(1), expected, atol=1e-5)


@torch.no_grad()
def test_official_discriminator_weights_give_the_official_scores():
    official = melgan_reference.randomize(melgan_reference.Discriminator(3, 16, 4, 4), seed=2)
    ours = MelGANDiscriminator()
    ours.load_state_dict(convert_melgan_state_dict(official.state_dict(), ours))
    wave = torch.rand(2, 1, 4096) * 2 - 1
    expected, scores = official(wave), ours.eval()(wave)
    assert len(scores) == len(expected) == 3
    for theirs, mine in zip(expected, scores, strict=True):
        assert len(mine) == len(theirs) == 7
        for a, b in zip(theirs, mine, strict=True):
            assert a.shape == b.shape and torch.allclose(b, a, atol=1e-4 * a.abs().max()), a.shape
    with pytest.raises(ValueError, match=r"do not fit our MelGANDiscriminator"):
        convert_melgan_state_dict(official.state_dict(), MelGANDiscriminator(num_D=2))


def test_official_release_whose_args_disagree_is_refused(tmp_path):
    write_official_release(tmp_path / "release", args_ngf=32)
    with pytest.raises(ValueError, match=r"args.yml: ngf=32 but best_netG.pt holds a generator with ngf=4"):
        load_vocoder(tmp_path / "release")


def test_args_files_are_read_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    args = argparse.Namespace(ngf=32, data_path=Path("/data/x"))
    pickled = tmp_path / "pickled.yml"
    pickled.write_bytes(pickle.dumps(args))
    assert read_official_args(pickled) == {"ngf": 32, "data_path": "/data/x"}

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad_pickle = tmp_path / "bad_pickle.yml"
    bad_pickle.write_bytes(pickle.dumps(argparse.Namespace(ngf=Exploit())))
    with pytest.raises(
        UnsafeArgsError, match=r"bad_pickle.yml: refusing to load this pickle: global \w+\.system"
    ):
        read_official_args(bad_pickle)
    bad_yaml = tmp_path / "bad_yaml.yml"
    bad_yaml.write_text(
        f"!!python/object:argparse.Namespace\nngf: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(UnsafeArgsError, match=r"bad_yaml.yml: refusing to build .*os.system"):
        read_official_args(bad_yaml)
    assert not marker.exists()


def test_griffin_lim_without_a_path():
    vocoder = load_vocoder(None)
    assert vocoder.kind == "griffin-lim" and vocoder.sample_rate == 22050
    mel = MelFrontEnd.from_preset("specvqgan")(torch.sin(torch.arange(8192) * 0.3)[None])  # [1, 80, 33]
    wave = vocoder(mel)
    assert wave.shape == (1, 256 * 33)
    reference = GriffinLimVocoder(MelFrontEnd.from_preset("specvqgan"))(mel)
    assert torch.equal(wave[:, : reference.shape[-1]], reference)


def test_random_segments_are_windows_drawn_from_the_global_generator():
    wave = torch.arange(3 * 100, dtype=torch.float32).reshape(3, 100)
    torch.manual_seed(0)
    segments = random_segments(wave, 40)
    for segment, row in zip(segments, wave, strict=True):
        start = int(segment[0] - row[0])
        assert torch.equal(segment, row[start : start + 40])
    torch.manual_seed(0)
    assert torch.equal(random_segments(wave, 40), segments)


# ------------------------------------------------------------------------------------- toy training
def toy_args(command: str, toy_root: Path, tmp_path: Path, version: str) -> list[str]:
    return [
        command, "--config", str(CONFIGS / "toy_vocoder.yaml"),
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--run.root={tmp_path / 'runs'}", f"--run.version={version}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ]  # fmt: skip


@pytest.mark.slow
def test_toy_vocoder_learns_and_its_checkpoint_loads(toy_root, tmp_path):
    """100 steps of the toy config through the CLI: the validation mel L1 of the test's toy set falls well
    below that of the untrained generator (why 100 steps and 0.7: the README's "Test suite" section)."""
    initial = AvgenCLI(args=toy_args("validate", toy_root, tmp_path, "run"))  # no checkpoint yet: step 0
    before = float(initial.trainer.callback_metrics["val/mel_l1"])
    steps = 100
    cli = AvgenCLI(
        args=[
            *toy_args("fit", toy_root, tmp_path, "run"),
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={steps}",
            "--trainer.num_sanity_val_steps=0",
        ]
    )
    assert cli.trainer.global_step == steps  # one step = one generator update (D steps do not count)
    after = float(cli.trainer.callback_metrics["val/mel_l1"])
    assert after < 0.7 * before, (before, after)
    assert {"train/d", "train/g_adv", "train/feat", "train/mel_l1"} <= set(cli.trainer.callback_metrics)

    best = cli.run_dir / "checkpoints" / "best.ckpt"
    vocoder = load_vocoder(best)
    mel = torch.rand(1, 80, 10)
    with torch.no_grad():
        expected = cli.model.generator.eval()(mel).squeeze(1)
    assert vocoder.kind == "melgan" and torch.allclose(vocoder(mel), expected, atol=1e-5)
