"""Melception (arXiv:2110.08791, sec. 3.4, 6.1.6; official `evaluation/feature_extractors/melception.py`):
paper size, official checkpoints, toy training through the CLI, and the FID / MKL / IS evaluation on it."""

import argparse
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.inception import BasicConv2d, Inception3

from projects.specvqgan.data import SpectrogramDataModule
from projects.specvqgan.models import VGGishish
from shared.cli import AvgenCLI
from shared.encoders import Melception
from shared.encoders.melception_loading import load_melception
from shared.metrics import MelceptionMetrics, spectrogram_metrics
from tests.conftest import REPO
from tests.projects.specvqgan.official_files import save_official_classifier
from tests.projects.specvqgan.test_training import toy_args

CONFIGS = REPO / "projects" / "specvqgan" / "configs"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def official_melception() -> Inception3:
    """The official layout, built independently of our class: torchvision's Inception3 (309 classes) with a
    1-channel input convolution and no max pooling (`evaluation/feature_extractors/melception.py`)."""
    torch.manual_seed(0)
    net = Inception3(num_classes=309, aux_logits=True, init_weights=True)
    net.Conv2d_1a_3x3 = BasicConv2d(1, 32, kernel_size=3, stride=2)
    net.maxpool1, net.maxpool2 = nn.Identity(), nn.Identity()
    return calibrate_batchnorm(net, torch.randn(4, 1, 80, 96))


def calibrate_batchnorm(net: nn.Module, batch: torch.Tensor) -> nn.Module:
    """BatchNorm running statistics = those of one batch, so an untrained net's eval outputs are lively."""
    momenta = {m: m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    for m in momenta:
        m.momentum = 1.0
    with torch.no_grad():
        net.train()(batch)
    for m, momentum in momenta.items():
        m.momentum = momentum
    return net.eval()


def write_stats(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.linspace(0.51234712, 0.24853513, 80), torch.linspace(0.08187601, 0.08556041, 80)
    path.write_text("".join(f"{m:.8f} {s:.8f}\n" for m, s in zip(mean.tolist(), std.tolist(), strict=True)))
    return mean, std


@torch.no_grad()
def test_paper_config_has_the_official_size_keys_and_pre_pool_map(official_melception, tmp_path):
    cli = AvgenCLI(
        args=["--config", str(CONFIGS / "vggsound_melception.yaml"), f"--run.root={tmp_path}"], run=False
    )
    net = cli.model.net
    assert isinstance(net, Melception) and cli.datamodule.batch_size == 48
    assert cli.model.hparams.weight_decay == 0.0
    assert n_params(net) == 25_213_450
    official = {k: v.shape for k, v in official_melception.state_dict().items()}
    ours = {k: v.shape for k, v in net.state_dict().items() if k not in ("mel_mean", "mel_std")}
    assert len(official) == 580 and ours == official
    assert not any(p.requires_grad for p in net.AuxLogits.parameters())  # kept, frozen, never run
    assert net.prepool(torch.rand(1, 1, 80, 848)).shape == (1, 2048, 8, 104)


@torch.no_grad()
def test_width_divisor_keeps_the_shape_rule_and_features_follow_the_official_definitions():
    torch.manual_seed(0)
    net = Melception(n_classes=7, width_divisor=16).eval()
    assert net.prepool(torch.rand(2, 1, 80, 848)).shape == (2, 128, 8, 104)
    mel = torch.rand(3, 1, 80, 160)
    assert net.prepool(mel).shape == (3, 128, 8, 18)
    feats = net.features(mel)
    assert feats["2048"].shape == (3, 128) and feats["logits"].shape == (3, 7)
    assert torch.allclose(feats["logits"], net(mel), atol=1e-6)
    assert torch.allclose(feats["logits"] - feats["logits_unbiased"], net.fc.bias.expand(3, 7), atol=1e-6)
    assert torch.allclose(feats["logits_unbiased"], feats["2048"] @ net.fc.weight.t(), atol=1e-6)
    assert list(net.features(mel, ("logits",))) == ["logits"]
    with pytest.raises(ValueError, match="unknown Melception features"):
        net.features(mel, ("pool3",))
    with pytest.raises(ValueError, match="width_divisor"):
        Melception(width_divisor=3)


def test_standardisation_is_the_one_vggishish_uses():
    mean, std = torch.linspace(0.2, 0.6, 80), torch.linspace(0.1, 0.2, 80)
    nets = [Melception(n_classes=2, width_divisor=16), VGGishish(n_classes=2, widths=(4,) * 5, fc_dim=8)]
    mel = torch.rand(2, 1, 80, 20)
    for net in nets:
        net.set_mel_statistics(mean, std)
        assert {"mel_mean", "mel_std"} <= set(net.state_dict())
    assert torch.equal(nets[0].standardize(mel), nets[1].standardize(mel))
    assert torch.allclose(nets[0].standardize(mel), (mel - mean.view(1, 1, 80, 1)) / std.view(1, 1, 80, 1))


@torch.no_grad()
def test_official_checkpoint_loads_and_gives_the_official_outputs(official_melception, tmp_path):
    official = official_melception
    ckpt = save_official_classifier(official.state_dict(), tmp_path / "melception-21-05-10T09-28-40.pt")
    with pytest.raises(pickle.UnpicklingError, match="numpy.core.multiarray.scalar"):
        torch.load(ckpt, weights_only=True)  # the numpy metrics need allowing: plain weights_only refuses
    mean, std = write_stats(tmp_path / "train_means_stds_melspec_10s_22050hz.txt")
    net = load_melception(ckpt, tmp_path / "train_means_stds_melspec_10s_22050hz.txt")
    assert net.conversion_report.mapped == 580 and not net.conversion_report.unmapped
    assert not net.training and net.n_classes == 309
    assert torch.allclose(net.mel_mean, mean) and torch.allclose(net.mel_std, std)
    mel = torch.rand(2, 1, 80, 96)
    expected = official((mel - mean.view(1, 1, 80, 1)) / std.view(1, 1, 80, 1))  # torchvision's own forward
    logits = net.features(mel)["logits"]
    assert expected.std() > 0.1 and torch.allclose(logits, expected, atol=1e-4 * expected.abs().max())
    assert torch.equal(net.state_dict()["AuxLogits.fc.weight"], official.state_dict()["AuxLogits.fc.weight"])
    with pytest.raises(ValueError, match="stats_file"):
        load_melception(ckpt)


def test_converter_strips_dataparallel_prefixes_and_refuses_what_does_not_fit(tmp_path):
    stats = tmp_path / "stats.txt"
    write_stats(stats)
    narrow = Melception(n_classes=5, width_divisor=16)
    state = {f"module.{k}": v for k, v in narrow.state_dict().items() if not k.startswith("mel_")}
    torch.save({"model": state}, tmp_path / "dp.pt")
    net = load_melception(tmp_path / "dp.pt", stats)
    assert net.conversion_report.renamed == net.conversion_report.mapped == len(state)
    assert net.width_divisor == 16 and torch.equal(net.fc.weight, narrow.fc.weight)
    del state["module.Mixed_7c.branch_pool.conv.weight"]
    torch.save({"model": state}, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"not in the checkpoint 1: \['Mixed_7c.branch_pool.conv.weight'\]"):
        load_melception(tmp_path / "short.pt", stats)
    torch.save({"model": {}, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_melception(tmp_path / "pickled.pt", stats)


@pytest.fixture(scope="module")
def toy_melception(toy_root, tmp_path_factory) -> tuple[Path, SpectrogramDataModule]:
    """The toy Melception stage through the real CLI, 10 epochs: best checkpoint, data."""
    tmp = tmp_path_factory.mktemp("melception")
    cli = AvgenCLI(args=[*toy_args("toy_melception.yaml", toy_root, tmp), "--trainer.max_epochs=10"])
    assert cli.trainer.current_epoch == 10
    assert cli.trainer.callback_metrics["val/acc"] >= 0.5  # 6 classes: chance is 1/6
    return Path(cli.trainer.checkpoint_callback.best_model_path), cli.datamodule


@pytest.mark.slow
@torch.no_grad()
def test_toy_melception_learns_and_its_metrics_rank_relevance(toy_melception):
    ckpt, dm = toy_melception
    net = load_melception(ckpt)
    assert isinstance(net, Melception) and net.width_divisor == 16
    assert not torch.allclose(net.mel_std, torch.ones(80))  # the toy training statistics came along
    items = [dm.split("valid")[i] for i in range(len(dm.split("valid")))]
    mels = torch.stack([item["mel"] for item in items])
    labels = torch.tensor([item["label"] for item in items])
    ids = [item["clip_id"] for item in items]
    assert (net(mels).argmax(1) == labels).float().mean() >= 0.5
    # fakes = each clip itself, then another clip of the same class, then a clip of another class
    same = [next(j for j in range(len(ids)) if j != i and labels[j] == labels[i]) for i in range(len(ids))]
    other = [next(j for j in range(len(ids)) if labels[j] != labels[i]) for i in range(len(ids))]
    results = {
        name: spectrogram_metrics(net, mels, mels[order], ids, ids, batch_size=5, is_splits=2)
        for name, order in [("self", list(range(len(ids)))), ("same", same), ("other", other)]
    }
    assert results["self"]["fid"] == pytest.approx(0.0, abs=1e-4)  # 12 clips, 128 dims: the 1e-6 I fallback
    assert results["self"]["mkl"] == pytest.approx(0.0, abs=1e-5)
    assert results["self"]["mkl"] < results["same"]["mkl"] < results["other"]["mkl"]
    assert results["self"]["is"] > 1.5  # confident and diverse over 6 classes


@torch.no_grad()
def test_melception_metrics_in_batches_equal_the_whole_set_and_stay_in_eval_mode():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    net = calibrate_batchnorm(
        Melception(n_classes=4, width_divisor=16), torch.rand(8, 1, 80, 48, generator=g)
    )
    real, fake = torch.rand(6, 1, 80, 48, generator=g), torch.rand(12, 1, 80, 48, generator=g) * 1.2 - 0.1
    real_ids, fake_ids = [f"c{i}" for i in range(6)], [f"c{i // 2}" for i in range(12)]
    metrics = MelceptionMetrics(net, is_splits=3)
    metrics.train()
    assert not metrics.melception.training
    for s in (slice(0, 4), slice(4, 6)):
        metrics.update(
            real=real[s],
            real_ids=real_ids[s],
            fake=fake[2 * s.start : 2 * s.stop],
            fake_ids=fake_ids[2 * s.start : 2 * s.stop],
        )
    batched = {k: float(v) for k, v in metrics.compute().items()}
    whole = spectrogram_metrics(net, real, fake, real_ids, fake_ids, batch_size=64, is_splits=3)
    assert batched == pytest.approx(whole, rel=1e-6)
    intervals = {f"{name}_{end}" for name in ("fid", "mkl", "is") for end in ("lo", "hi")}
    assert set(whole) == {"fid", "mkl", "is", "is_std"} | intervals and whole["fid"] > 0 and whole["mkl"] > 0
    clamped = spectrogram_metrics(net, real, fake.clamp(0, 1), real_ids, fake_ids, is_splits=3)
    assert clamped == pytest.approx(whole, rel=1e-6)  # fakes are clamped to [0, 1] first
    metrics.reset()
    with pytest.raises(ValueError, match="need as many clip ids"):
        metrics.update(fake=fake, fake_ids=fake_ids[:3])
