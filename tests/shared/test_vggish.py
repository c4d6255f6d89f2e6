"""VGGish (FAD's embedding network): architecture, torchvggish-layout loading, and the log-mel front end
against independent re-creations of `tensorflow/models` `research/audioset/mel_features.py` and of the
network as a chain of functional calls."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.encoders.vggish import (
    VGGish,
    VGGishLogMel,
    fad_examples,
    load_vggish,
    load_vggish_pca,
)
from shared.runs import UserError

# the official layer list (`vggish_slim.py`): (in, out) of each 3x3 conv, then the fully connected layers
CONVS = [(1, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
FCS = [(512 * 6 * 4, 4096), (4096, 4096), (4096, 128)]
CONV_INDICES = [0, 3, 6, 8, 11, 13]  # torchvggish's `features.N` (ReLUs and pools between)


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torchvggish's `vggish-10086976.pth` layout, built from the layer list above."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, (c_in, c_out) in zip(CONV_INDICES, CONVS, strict=True):
        state[f"features.{index}.weight"] = (
            torch.randn(c_out, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        )
        state[f"features.{index}.bias"] = torch.randn(c_out, generator=g) * 0.1
    for index, (n_in, n_out) in zip((0, 2, 4), FCS, strict=True):
        state[f"embeddings.{index}.weight"] = torch.randn(n_out, n_in, generator=g) * (2 / n_in) ** 0.5
        state[f"embeddings.{index}.bias"] = torch.randn(n_out, generator=g) * 0.1
    return state


def reference_forward(state: dict, examples: torch.Tensor, embedding_relu: bool) -> torch.Tensor:
    """The network as slim defines it, written as functional calls on NHWC-ordered features."""
    x = examples[:, None]  # [N, 1, 96, 64]
    for i, index in enumerate(CONV_INDICES):
        x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
        if i in (0, 1, 3, 5):
            x = F.max_pool2d(x, 2)
    x = x.transpose(1, 3).transpose(1, 2).reshape(len(x), -1)  # [N, 6, 4, 512] flattened
    for i, index in enumerate((0, 2, 4)):
        x = F.linear(x, state[f"embeddings.{index}.weight"], state[f"embeddings.{index}.bias"])
        if i < 2 or embedding_relu:
            x = F.relu(x)
    return x


def reference_log_mel(samples: np.ndarray) -> np.ndarray:
    """`mel_features.log_mel_spectrogram` at VGGish's parameters, re-created in float64 numpy."""
    n_frames = 1 + (len(samples) - 400) // 160
    frames = np.stack([samples[i * 160 : i * 160 + 400] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi / 400 * np.arange(400))
    spectrum = np.abs(np.fft.rfft(frames * window, 512))
    to_mel = lambda hz: 1127.0 * np.log(1.0 + hz / 700.0)  # noqa: E731
    bins = to_mel(np.linspace(0.0, 8000.0, 257))
    edges = np.linspace(to_mel(125.0), to_mel(7500.0), 66)
    matrix = np.empty((257, 64))
    for i in range(64):
        low, mid, high = edges[i : i + 3]
        matrix[:, i] = np.maximum(0.0, np.minimum((bins - low) / (mid - low), (high - bins) / (high - mid)))
    matrix[0] = 0.0
    return np.log(spectrum @ matrix + 0.01)


def test_architecture_has_the_official_parameter_count_and_shapes():
    expected = sum(9 * i * o + o for i, o in CONVS) + sum(i * o + o for i, o in FCS)
    model = VGGish()
    assert sum(p.numel() for p in model.parameters()) == expected == 72_141_184
    assert model(torch.zeros(3, 96, 64)).shape == (3, 128)
    # 4 s at 16 kHz: 1-s windows every 0.5 s -> 7 embeddings per clip
    assert model.embed(torch.zeros(2, 64000)).shape == (2, 7, 128)
    with pytest.raises(ValueError, match="96, 64"):
        model(torch.zeros(3, 95, 64))


@pytest.mark.parametrize("embedding_relu", [True, False])
def test_official_layout_loads_with_every_key_and_matches_the_reference(tmp_path, embedding_relu):
    state = official_state_dict()
    torch.save(state, tmp_path / "vggish.pth")
    model = load_vggish(tmp_path / "vggish.pth", embedding_relu=embedding_relu)
    assert set(model.state_dict()) == set(state)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    examples = torch.randn(4, 96, 64, generator=torch.Generator().manual_seed(1))
    ours, reference = model(examples), reference_forward(state, examples, embedding_relu)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
    assert (reference < 0).any() != embedding_relu  # the flag changes the output


def test_loader_refuses_other_layouts(tmp_path):
    state = official_state_dict()
    state["embeddings.6.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(UserError, match=r"extra.pth.*unexpected \['embeddings.6.weight'\]"):
        load_vggish(tmp_path / "extra.pth")
    with pytest.raises(UserError, match="no such"):
        load_vggish(tmp_path / "absent.pth")


def test_log_mel_equals_the_official_front_end():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    samples = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)
    ours = VGGishLogMel()(torch.from_numpy(samples).float()).double().numpy()
    reference = reference_log_mel(samples)
    assert ours.shape == reference.shape == (98, 64)
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()


def test_fad_examples_scale_each_clip_by_its_peak_and_cut_half_overlapping_windows():
    rng = np.random.default_rng(1)
    clip = rng.uniform(-0.5, 0.5, 32000)
    quiet = clip * 0.02  # peak 0.01: raised by 20 dB only (the 0.1 cap)
    examples = fad_examples(torch.from_numpy(np.stack([clip, quiet])).float(), VGGishLogMel()).double()
    assert examples.shape == (2, 3, 96, 64)
    peak = clip.max()
    for w, start in enumerate((0, 8000, 16000)):
        loud = reference_log_mel(clip[start : start + 16000] / peak)[:96]
        soft = reference_log_mel(quiet[start : start + 16000] / 0.1)[:96]
        assert np.abs(examples[0, w].numpy() - loud).max() < 1e-3 * np.abs(loud).max()
        assert np.abs(examples[1, w].numpy() - soft).max() < 1e-3 * np.abs(soft).max()


def test_pca_postprocessing_follows_the_release(tmp_path):
    g = torch.Generator().manual_seed(2)
    vectors, means = torch.randn(128, 128, generator=g) * 0.1, torch.randn(128, generator=g)
    torch.save(
        {"pca_eigen_vectors": vectors.numpy(), "pca_means": means.numpy().reshape(128, 1)}, tmp_path / "p"
    )
    pca = load_vggish_pca(tmp_path / "p")
    embeddings = torch.randn(5, 128, generator=g) * 3
    projected = (vectors @ (embeddings.t() - means[:, None])).t()  # `vggish_postprocess.py`'s order
    expected = torch.round((projected.clamp(-2, 2) + 2) * 255 / 4)
    out = pca(embeddings)
    assert out.min() >= 0 and out.max() <= 255
    assert (out - expected).abs().max() <= 1  # a rounding boundary may fall either side in float32
    assert (out != expected).float().mean() < 0.01
