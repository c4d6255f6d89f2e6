"""Wav2CLIP (`shared.encoders.wav2clip`): sizes, the official layout and outputs, per-item normalisation,
the loader's errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchaudio
from torch import nn

from shared.encoders.wav2clip import Wav2CLIP, load_wav2clip, wav2clip_frames
from shared.runs import UserError

# ---------------------------------------------------------------------------------------------------------
# An independent re-creation of the official module tree (`descriptinc/lyrebird-wav2clip`,
# `wav2clip/model/resnet.py` ResNet + BasicBlock, `wav2clip/model/encoder.py` MLPLayers), with the official
# batch-wide normalisation, written from the official code and sharing nothing with the module under test.


class OfficialBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class OfficialResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [OfficialBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [OfficialBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.spectrogram(x.unsqueeze(1))
        x = torch.log(x + 1e-7)
        x = (x - torch.mean(x)) / (torch.std(x) + 1e-9)  # over the whole batch tensor
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).reshape(x.size(0), -1)


class OfficialMLPLayers(nn.Module):
    def __init__(self, units=(512, 512, 512), dropout=0.1):
        super().__init__()
        sequence = []
        for u0, u1 in itertools.pairwise(units):
            sequence += [nn.Linear(u0, u1), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*sequence[:-2])

    def forward(self, x):
        return self.sequential(x)


class OfficialPretraining(nn.Module):
    """The parts of `ResNetDistillation` (loss `clip_loss_x`) whose state dict the released file is cut from."""

    def __init__(self):
        super().__init__()
        self.audio_encoder = OfficialResNet()
        self.audio_transform = OfficialMLPLayers()

    def forward(self, wav):
        return self.audio_transform(self.audio_encoder(wav))


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter and BatchNorm statistic drawn at random, so that a misplaced tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked") or name.endswith("spectrogram.window"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("bn1.weight") or name.endswith("bn2.weight") or ".1.weight" in name:
                tensor.copy_(1 + 0.1 * torch.randn(tensor.shape, generator=gen))
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * tensor.shape[-1] ** -0.5)
    return module.eval()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(the official re-creation with random weights, its state dict saved as `Wav2CLIP.pt`)."""
    model = randomise(OfficialPretraining(), seed=0)
    path = tmp_path_factory.mktemp("wav2clip") / "Wav2CLIP.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_frames_of_the_front_end():
    model = Wav2CLIP().eval()
    for n_samples in (65_536, 160_000):
        spec = model.audio_encoder.log_spectrogram(torch.randn(1, n_samples))
        assert spec.shape == (1, 1, 257, 1 + n_samples // 353) == (1, 1, 257, wav2clip_frames(n_samples))
    assert wav2clip_frames(65_536) == 186


def test_parameter_counts_and_official_keys():
    model = Wav2CLIP()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.audio_encoder) == sum(p.numel() for p in OfficialResNet().parameters()) == 11_170_240
    assert count(model.audio_transform) == 525_312
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in OfficialPretraining().state_dict().items()}
    assert ours == theirs
    assert ours["audio_encoder.spectrogram.window"] == (512,)


def test_official_file_loads_and_matches_at_batch_size_one(official):
    reference, path = official
    model = load_wav2clip(path)
    assert model.conversion_report.loaded == len(reference.state_dict())
    assert not model.conversion_report.skipped
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    parent = nn.ModuleDict({"target": model, "trained": nn.Linear(2, 2)}).train()
    assert parent["trained"].training and not any(m.training for m in model.modules())
    wavs = torch.randn(3, 16_000, generator=torch.Generator().manual_seed(1)) * torch.tensor(
        [[0.1], [1.0], [3.0]]
    )
    with torch.no_grad():
        for wav in wavs:
            expected = reference(wav[None])
            torch.testing.assert_close(
                model(wav[None]), expected, rtol=1e-4, atol=1e-4 * expected.abs().max()
            )


def test_per_item_normalisation_does_not_depend_on_batch_mates(official):
    reference, path = official
    model = load_wav2clip(path)
    gen = torch.Generator().manual_seed(2)
    quiet, loud = 0.01 * torch.randn(1, 20_000, generator=gen), torch.randn(1, 20_000, generator=gen)
    with torch.no_grad():
        alone = model(quiet)
        batched = model(torch.cat([quiet, loud]))[:1]
        official_batched = reference(torch.cat([quiet, loud]))[:1]
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-4 * alone.abs().max())
    # the official batch-wide statistics change the quiet clip's embedding when a loud clip joins it
    assert (official_batched - alone).abs().max() > 10 * 1e-4 * alone.abs().max()


def test_training_only_keys_are_skipped_and_reported(tmp_path, official):
    reference, _ = official
    state = dict(reference.state_dict())
    state.update(
        {
            "image_transform.sequential.0.weight": torch.zeros(512, 512),
            "loss_fn_a.logit_scale": torch.ones([]),
        }
    )
    torch.save(state, tmp_path / "full.pt")
    model = load_wav2clip(tmp_path / "full.pt")
    assert sorted(model.conversion_report.skipped) == [
        "image_transform.sequential.0.weight",
        "loss_fn_a.logit_scale",
    ]
    assert model.conversion_report.loaded == len(reference.state_dict())


def test_lightning_style_checkpoint_of_a_toy_model(tmp_path):
    toy = randomise(Wav2CLIP(widths=(4, 8, 8, 16), blocks=(1, 2, 1, 1), embed_dim=32), seed=3)
    state = {f"model.{k}": v for k, v in toy.state_dict().items()}
    state["loss.logit_scale"] = torch.ones([])
    torch.save({"state_dict": state, "hyper_parameters": {}, "epoch": 0}, tmp_path / "last.ckpt")
    model = load_wav2clip(tmp_path / "last.ckpt")
    assert model.embed_dim == 32 and model.conversion_report.prefix == "model."
    wav = torch.randn(2, 4_000, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(wav), toy(wav))


def test_loader_errors_name_the_file(tmp_path, official):
    reference, _ = official
    with pytest.raises(UserError, match="missing.pt: no such Wav2CLIP file"):
        load_wav2clip(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt: not a readable"):
        load_wav2clip(tmp_path / "garbage.pt")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="other.pt: no audio_encoder.conv1.weight"):
        load_wav2clip(tmp_path / "other.pt")
    state = dict(reference.state_dict())
    del state["audio_encoder.layer3.1.bn2.running_mean"]
    torch.save(state, tmp_path / "incomplete.pt")
    with pytest.raises(UserError, match="incomplete.pt: does not fit Wav2CLIP.*layer3.1.bn2.running_mean"):
        load_wav2clip(tmp_path / "incomplete.pt")
    state = dict(reference.state_dict(), **{"audio_encoder.spectrogram.window": torch.hann_window(1024)})
    torch.save(state, tmp_path / "nfft1024.pt")
    with pytest.raises(UserError, match=r"nfft1024.pt: .*spectrogram.window is \(1024,\), expected \(512,\)"):
        load_wav2clip(tmp_path / "nfft1024.pt")
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("audio_transform.")}
    torch.save(state, tmp_path / "headless.pt")
    with pytest.raises(UserError, match="headless.pt: .*audio_transform"):
        load_wav2clip(tmp_path / "headless.pt")


def test_input_errors():
    model = Wav2CLIP(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1), embed_dim=8)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model(torch.zeros(16_000))
    with pytest.raises(ValueError, match="more than 256 samples"):
        model(torch.zeros(1, 200))
