"""PaSST-S (GRAVO's KL and ACC classifier): architecture size, the released layout loading with every key used,
the forward against a functional re-creation of `hear21passt`'s `PaSST.forward` (eval mode), and the mel front
end against a numpy re-creation of `AugmentMelSTFT` in eval mode."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio

from shared.encoders.passt import PaSST, PaSSTMel, load_passt
from shared.runs import UserError

DIM, DEPTH, CLASSES, GRID = 768, 12, 527, (12, 99)  # PaSST-S, stride 10, 128 x 998 input


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the released layout, from the layer list of `passt_s_swa_p16_128_ap476`."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    state = {
        "patch_embed.proj.weight": rand(DIM, 1, 16, 16, std=0.05),
        "patch_embed.proj.bias": rand(DIM),
        "cls_token": rand(1, 1, DIM, std=1.0),
        "dist_token": rand(1, 1, DIM, std=1.0),
        "new_pos_embed": rand(1, 2, DIM),
        "freq_new_pos_embed": rand(1, DIM, GRID[0], 1),
        "time_new_pos_embed": rand(1, DIM, 1, GRID[1]),
        "norm.weight": 1 + rand(DIM, std=0.1),
        "norm.bias": rand(DIM),
        "head.0.weight": 1 + rand(DIM, std=0.1),
        "head.0.bias": rand(DIM),
        "head.1.weight": rand(CLASSES, DIM),
        "head.1.bias": rand(CLASSES),
        "head_dist.weight": rand(CLASSES, DIM),
        "head_dist.bias": rand(CLASSES),
    }
    for i in range(DEPTH):
        p = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            state[p + norm + ".weight"], state[p + norm + ".bias"] = 1 + rand(DIM, std=0.1), rand(DIM)
        state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"] = rand(3 * DIM, DIM), rand(3 * DIM)
        state[p + "attn.proj.weight"], state[p + "attn.proj.bias"] = rand(DIM, DIM), rand(DIM)
        state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"] = rand(4 * DIM, DIM), rand(4 * DIM)
        state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"] = rand(DIM, 4 * DIM), rand(DIM)
    return state


def reference_forward(s: dict, mel: torch.Tensor) -> torch.Tensor:
    """`PaSST.forward` in eval mode as functional calls: explicit softmax attention, 12 heads."""
    x = F.conv2d(mel, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=10)
    x = x + s["time_new_pos_embed"][:, :, :, : x.shape[-1]] + s["freq_new_pos_embed"]
    x = x.flatten(2).transpose(1, 2)
    cls = s["cls_token"] + s["new_pos_embed"][:, :1]
    dist = s["dist_token"] + s["new_pos_embed"][:, 1:]
    x = torch.cat([cls.expand(len(x), -1, -1), dist.expand(len(x), -1, -1), x], 1)
    for i in range(DEPTH):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (DIM,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps=1e-6)
        b, n, _ = h.shape
        qkv = F.linear(h, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"]).reshape(b, n, 3, 12, 64)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * 64**-0.5).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(b, n, DIM)
        x = x + F.linear(h, s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        h = F.layer_norm(x, (DIM,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"])
    x = F.layer_norm(x, (DIM,), s["norm.weight"], s["norm.bias"], eps=1e-6)
    features = (x[:, 0] + x[:, 1]) / 2
    features = F.layer_norm(features, (DIM,), s["head.0.weight"], s["head.0.bias"], eps=1e-5)
    return F.linear(features, s["head.1.weight"], s["head.1.bias"])


def test_architecture_has_the_parameter_count_of_its_layer_list():
    block = 2 * 2 * DIM + (DIM * 3 * DIM + 3 * DIM) + (DIM * DIM + DIM) + 2 * (4 * DIM * DIM) + 4 * DIM + DIM
    tokens = 2 * DIM + 2 * DIM + DIM * GRID[0] + DIM * GRID[1]
    heads = 2 * DIM + 2 * (DIM * CLASSES + CLASSES)
    expected = (256 * DIM + DIM) + tokens + DEPTH * block + 2 * DIM + heads
    model = PaSST()
    assert sum(p.numel() for p in model.parameters()) == expected == 86_153_758
    assert set(model.state_dict()) == set(official_state_dict())


def test_released_layout_loads_with_every_key_and_matches_the_reference(tmp_path):
    state = official_state_dict()
    torch.save(state, tmp_path / "passt.pt")
    model = load_passt(tmp_path / "passt.pt")
    assert not model.training
    mel = torch.randn(2, 1, 128, 100, generator=torch.Generator().manual_seed(1))  # 1 s: a 12 x 9 grid
    with torch.no_grad():
        ours, features = model(mel)
        reference = reference_forward(state, mel)
    assert ours.shape == (2, 527) and features.shape == (2, 768)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
    del state["head_dist.bias"]
    torch.save({"model": state}, tmp_path / "short.pt")
    with pytest.raises(UserError, match=r"short.pt.*missing \['head_dist.bias'\]"):
        load_passt(tmp_path / "short.pt")


def test_inputs_longer_than_10_seconds_are_refused():
    with pytest.raises(ValueError, match="at most 99 time columns"):
        PaSST(depth=1)(torch.zeros(1, 1, 128, 1010))


def test_mel_front_end_equals_augment_mel_stft_in_eval_mode():
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 32000
    x = 0.4 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(32000)
    y = x[1:] - 0.97 * x[:-1]
    padded = np.pad(y, 512, mode="reflect")
    n = np.arange(800)
    window = np.zeros(1024)
    window[112:912] = 0.5 - 0.5 * np.cos(2 * np.pi * n / 799)  # symmetric Hann, centred in the FFT frame
    frames = np.stack([padded[i * 320 : i * 320 + 1024] for i in range(1 + len(y) // 320)])
    power = np.abs(np.fft.rfft(frames * window)) ** 2  # [frames, 513]
    banks, _ = torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000.0, 0.0, 15000.0, 100.0, -500.0, 1.0)
    basis = np.pad(banks.double().numpy(), ((0, 0), (0, 1)))
    expected = (np.log(power @ basis.T + 1e-5) + 4.5) / 5
    ours = PaSSTMel()(torch.from_numpy(x).float()[None])[0].double().numpy().T
    assert ours.shape == expected.shape == (100, 128)
    assert np.abs(ours - expected).max() < 2e-3 * np.abs(expected).max()
