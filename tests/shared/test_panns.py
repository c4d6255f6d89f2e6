"""PANNs Cnn14 (the IS network of generated audio): its size from the layer list, the front end against librosa, the
forward against a functional re-creation of the official `Cnn14.forward` (eval mode) on random weights in the
released layout, and the loader's checks."""

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.encoders.panns import CHANNELS, SETTINGS, Cnn14, PANNsLogMel, load_panns
from shared.runs import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_parameter_count_is_the_layer_lists():
    pairs = zip((1, *CHANNELS[:-1]), CHANNELS, strict=True)
    convs = sum(9 * (c_in * c_out + c_out * c_out) for c_in, c_out in pairs)
    norms = 2 * 64 + sum(2 * 2 * c for c in CHANNELS)  # bn0 and two BatchNorms per block (weight, bias)
    linears = 2048 * 2048 + 2048 + 2048 * 527 + 527
    assert sum(p.numel() for p in Cnn14().parameters()) == convs + norms + linears


@pytest.mark.parametrize("rate", sorted(SETTINGS))
def test_front_end_is_librosas_power_mel_in_decibels(rate):
    n_fft, hop, f_max = SETTINGS[rate]
    wave = np.random.default_rng(0).standard_normal(rate // 2).astype(np.float32) * 0.1
    mel = librosa.feature.melspectrogram(
        y=wave, sr=rate, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect",
        power=2.0, n_mels=64, fmin=50, fmax=f_max,
    )  # fmt: skip
    expected = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    ours = PANNsLogMel(rate)(torch.from_numpy(wave)[None])[0, 0].numpy()
    assert ours.shape == expected.shape == (1 + len(wave) // hop, 64)
    np.testing.assert_allclose(ours, expected, atol=1e-3 * np.abs(expected).max())


def official_state(rate: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the released file's layout, front-end matrices included."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in Cnn14(rate).state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(100)
        elif name.endswith("running_var"):
            state[name] = torch.rand(tensor.shape, generator=g) + 0.5
        else:
            state[name] = torch.randn(tensor.shape, generator=g) * 0.05
    n_fft = SETTINGS[rate][0]
    mel = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=64, fmin=50, fmax=SETTINGS[rate][2])
    state["logmel_extractor.melW"] = torch.from_numpy(mel.T)
    for part in ("real", "imag"):
        state[f"spectrogram_extractor.stft.conv_{part}.weight"] = torch.zeros(n_fft // 2 + 1, 1, n_fft)
    return state


def reference_forward(state: dict[str, torch.Tensor], logmel: torch.Tensor) -> torch.Tensor:
    """The official `Cnn14.forward` in eval mode (no dropout, no SpecAugment), written with functionals."""

    def bn(x, name):
        return F.batch_norm(
            x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
            state[f"{name}.bias"], training=False, eps=1e-5,
        )  # fmt: skip

    x = bn(logmel.transpose(1, 3), "bn0").transpose(1, 3)
    for i in range(1, 7):
        p = f"conv_block{i}"
        x = F.relu_(bn(F.conv2d(x, state[f"{p}.conv1.weight"], padding=1), f"{p}.bn1"))
        x = F.relu_(bn(F.conv2d(x, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2"))
        x = F.avg_pool2d(x, (2, 2) if i < 6 else (1, 1))
    x = torch.mean(x, dim=3)
    x1, _ = torch.max(x, dim=2)
    x = x1 + torch.mean(x, dim=2)
    x = F.relu_(F.linear(x, state["fc1.weight"], state["fc1.bias"]))
    return F.linear(x, state["fc_audioset.weight"], state["fc_audioset.bias"])


@pytest.mark.parametrize("rate", sorted(SETTINGS))
def test_released_layout_loads_at_its_rate_and_gives_the_official_logits(tmp_path, rate):
    state = official_state(rate)
    torch.save({"model": state, "sampling_rate": rate}, tmp_path / "cnn14.pth")
    model = load_panns(tmp_path / "cnn14.pth")
    assert model.sample_rate == rate and not model.training
    wave = torch.randn(2, rate // 2, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        logits, embedding = model(wave)
        expected = reference_forward(state, model.mel(wave))
    assert logits.shape == (2, 527) and embedding.shape == (2, 2048)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4 * expected.abs().max().item())


def test_loader_refuses_other_files(tmp_path):
    state = official_state(16000)
    wrong_bands = dict(state, **{"logmel_extractor.melW": torch.rand(257, 64)})
    torch.save({"model": wrong_bands}, tmp_path / "bands.pth")
    with pytest.raises(UserError, match="bands.pth: its mel filterbank"):
        load_panns(tmp_path / "bands.pth")
    no_fc = {k: v for k, v in state.items() if not k.startswith("fc_audioset")}
    torch.save({"model": no_fc}, tmp_path / "nofc.pth")
    with pytest.raises(UserError, match="nofc.pth: not Cnn14's layout"):
        load_panns(tmp_path / "nofc.pth")
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="other.pth: not a released Cnn14"):
        load_panns(tmp_path / "other.pth")
