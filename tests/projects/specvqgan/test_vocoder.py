"""SpecVQGAN's MelGAN vocoder: paper sizes, official weights, safe args files, the toy stage learning."""

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from projects.specvqgan.convert_melgan import UnsafeArgsError, load_official_melgan, read_official_args
from projects.specvqgan.models import MelGANDiscriminator, MelGANGenerator
from projects.specvqgan.vocoder import load_vocoder
from shared.audio import GriffinLimVocoder, MelFrontEnd
from shared.cli import AvgenCLI
from shared.data.loaders import random_windows as random_segments
from tests.conftest import REPO

CONFIGS = REPO / "projects" / "specvqgan" / "configs"


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are small enough that per-op overhead dominates: on a 2-core machine shared with
    other jobs, a second intra-op thread made a toy training step 15 times slower (7.7 s vs 0.53 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_paper_sizes_and_shapes():
    generator, discriminator = MelGANGenerator(), MelGANDiscriminator()
    assert n_params(generator) == 4_266_050  # reference card sec. 7
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
def official_layout(n_mels: int, ngf: int, n_res: int, ratios=(8, 8, 2, 2)) -> dict[str, tuple]:
    """Key -> shape of the official generator's state dict, from its nn.Sequential order (written from the
    architecture: pad, conv, then per ratio LReLU, transposed conv, n_res residual units; LReLU, pad, conv,
    tanh). Old-style weight norm: g is [out, 1, 1] for a conv, [in, 1, 1] for a transposed conv (dim 0)."""
    shapes, index = {}, 1
    ch = 2 ** len(ratios) * ngf

    def conv(prefix, c_in, c_out, k, transposed=False):
        v = (c_in, c_out, k) if transposed else (c_out, c_in, k)
        shapes.update(
            {f"{prefix}.weight_g": (v[0], 1, 1), f"{prefix}.weight_v": v, f"{prefix}.bias": (c_out,)}
        )

    conv("model.1", n_mels, ch, 7)
    index = 2
    for r in ratios:
        conv(f"model.{index + 1}", ch, ch // 2, 2 * r, transposed=True)
        ch //= 2
        index += 2
        for _ in range(n_res):
            conv(f"model.{index}.block.2", ch, ch, 3)
            conv(f"model.{index}.block.4", ch, ch, 1)
            conv(f"model.{index}.shortcut", ch, ch, 1)
            index += 1
    conv(f"model.{index + 2}", ch, 1, 7)  # after LReLU and ReflectionPad
    return shapes


def write_official_release(folder: Path, n_mels=80, ngf=4, n_res=3, args_ngf=None) -> dict:
    torch.manual_seed(1)
    state = {k: torch.randn(shape) * 0.3 for k, shape in official_layout(n_mels, ngf, n_res).items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best_netG.pt")
    args = argparse.Namespace(
        n_mel_channels=n_mels, ngf=args_ngf or ngf, n_residual_layers=n_res, seq_len=8192,
        data_path=Path("/home/nvme/data/vggsound/features/melspec_10s_22050hz"), load_path=None,
    )  # fmt: skip
    (folder / "args.yml").write_text(yaml.dump(args))  # what the official training script writes
    return state


def directly_set(state: dict) -> MelGANGenerator:
    """A generator of ours without weight norm whose conv weights are set from g and v by hand."""
    generator = MelGANGenerator(ngf=4, n_residual_layers=3).remove_weight_norm()
    for key in [k for k in state if k.endswith(".weight_v")]:
        path = key[: -len(".weight_v")]
        g, v = state[f"{path}.weight_g"], state[key]
        module = generator.get_submodule(path)
        module.weight.data = g * v / v.flatten(1).norm(dim=1)[:, None, None]
        module.bias.data = state[f"{path}.bias"]
    return generator.eval()


def test_official_release_loads_exactly(tmp_path):
    state = write_official_release(tmp_path / "vggsound")
    assert "!!python/object:argparse.Namespace" in (tmp_path / "vggsound" / "args.yml").read_text()
    vocoder = load_vocoder(tmp_path / "vggsound")
    assert vocoder.kind == "melgan" and not vocoder.training and vocoder.sample_rate == 22050
    mel = torch.rand(2, 80, 20)
    expected = directly_set(state)(mel).squeeze(1)
    assert torch.allclose(vocoder(mel), expected, atol=1e-5)
    assert vocoder(mel).shape == (2, 256 * 20)
    # the .pt file alone gives the same generator (sizes read from the shapes)
    alone = load_official_melgan(tmp_path / "vggsound" / "best_netG.pt").remove_weight_norm()
    assert torch.allclose(alone(mel).squeeze(1), expected, atol=1e-5)


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
    """100 steps of the toy config through the CLI: the validation mel L1 of the test's toy set falls well below
    that of the untrained generator (measured 0.124 -> 0.078; at 50 steps 0.087, too close to the bound)."""
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
