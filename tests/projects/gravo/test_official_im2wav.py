"""The re-creation of Im2Wav's official models (official_im2wav.py), the reference of the checkpoint tests:
its key names and shapes at paper size are the released checkpoints' (the key lists beside the repo), its
parameter counts the official ones, its attention patterns see what the official `FactoredAttention.check`
asserts, its cached sampling path gives its full forward's logits (the official `check_sample`), and the
files it writes have the official layout."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO

from .official_im2wav import (
    TINY,
    Conv1D,
    FactoredAttention,
    build_official,
    official_hps,
    randomize_,
    to_fp16_params_,
    write_official_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


KEY_LISTS = REPO.parent / "shared" / "reference" / "keys"  # the team folder beside the repo (CI has it)
KEY_FILES = {
    "vqvae": "im2wav_vqvae_keys.txt",
    "low": "im2wav_low_prior_keys.txt",
    "up": "im2wav_up_prior_keys.txt",
}
PAPER_PARAMETERS = {"vqvae": 448_770, "low": 157_344_768, "up": 203_056_640}


def official_keys(kind: str) -> list[tuple[str, tuple[int, ...]]]:
    """The released checkpoint's state-dict keys and shapes, one `<key><TAB><shape>` a line."""
    path = KEY_LISTS / KEY_FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the team's reference folder must sit beside the repo")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())) for key, shape in rows]


@pytest.mark.parametrize("kind", ["vqvae", "low", "up"])
def test_paper_size_keys_and_parameter_counts_are_the_official_ones(kind):
    with torch.device("meta"):  # shapes only: no memory for 200M parameters
        model = build_official(official_hps(kind))
    ours = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
    assert ours == official_keys(kind)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == PAPER_PARAMETERS[kind]


@pytest.mark.parametrize("attn_func", [1, 2, 3])
def test_attention_patterns_see_what_the_official_check_expects(attn_func):
    """`FactoredAttention.check`: the gradient of output position `pos` reaches exactly these inputs."""
    n_ctx, blocks, pos = 64, 8, 45
    block_ctx = n_ctx // blocks
    torch.manual_seed(0)
    attn = FactoredAttention(16, n_ctx, 16, 2, attn_func=attn_func, blocks=blocks).eval()
    x = torch.randn(2, n_ctx, 16, requires_grad=True)
    x_out = attn(x)
    (grad,) = torch.autograd.grad(x_out[1, pos].sum(), x)
    assert (grad[0] == 0).all()
    seen = (grad[1] ** 2).sum(-1).nonzero().view(-1)
    block_pos = pos - pos % block_ctx
    expected = {
        1: torch.arange(block_pos, pos + 1),
        2: torch.arange(pos % block_ctx, pos + 1, block_ctx),
        3: torch.tensor([*range(block_pos - block_ctx, block_pos), pos]),  # the query is x[pos] itself
    }[attn_func]
    assert seen.tolist() == expected.tolist()


@pytest.mark.parametrize("kind", ["low", "up"])
def test_cached_sampling_path_gives_the_full_forward_logits(kind):
    hps = official_hps(kind, **TINY[kind])
    prior = randomize_(build_official(hps), seed=1).eval()
    n, n_ctx = 2, prior.n_ctx
    gen = torch.Generator().manual_seed(0)
    clip = torch.nn.functional.normalize(torch.randn(n, 7, 512, generator=gen), dim=-1)
    z = torch.randint(0, hps["l_bins"], (n, n_ctx), generator=gen)
    z_cond = torch.randint(0, hps["l_bins"], (n, n_ctx // 4), generator=gen) if kind == "up" else None
    with torch.no_grad():
        full = prior.logits(z, clip, z_cond)
        x_cond, y_cond = prior.get_cond(prior.labels(clip), z_cond)
        steps, x = [], None
        for t in range(n_ctx):
            steps.append(prior.prior.get_logits(prior.prior.transformer, x_cond, y_cond, t, n, x))
            x = z[:, t : t + 1]
    cached = torch.cat(steps, dim=1)
    assert full.shape == (n, n_ctx, hps["l_bins"])
    assert (cached - full).abs().max() <= 1e-5 * full.abs().max()
    assert full[:, 1:].std(0).mean() > 0.1 * full.std()  # rows differ: the tokens and conditions matter


def test_low_prior_uses_its_null_conditioning_and_the_frames():
    hps = official_hps("low", **TINY["low"])
    prior = randomize_(build_official(hps), seed=1).eval()
    gen = torch.Generator().manual_seed(0)
    clip = torch.nn.functional.normalize(torch.randn(1, 5, 512, generator=gen), dim=-1)
    z = torch.randint(0, hps["l_bins"], (1, prior.n_ctx), generator=gen)
    with torch.no_grad():
        cond, null = prior.logits(z, clip), prior.logits(z, clip, null=True)
        x_cond, start = prior.get_cond(prior.labels(clip))
        x_cond_flipped, start_flipped = prior.get_cond(prior.labels(clip.flip(1)))
    assert (cond - null).abs().max() > 0.1 * cond.std()
    # the start token sees the mean frame only; token i sees frame round(i (F - 1) / (n_ctx - 1))
    assert torch.allclose(start, start_flipped, atol=1e-6)
    assert (x_cond - x_cond_flipped).abs().max() > 0.1 * x_cond.std()
    with torch.no_grad():
        frame_terms = prior.y_emb.video_map(clip)
        time_terms = x_cond - frame_terms[:, [round(i * 4 / (prior.n_ctx - 1)) for i in range(prior.n_ctx)]]
    # the time signal: relative-position bin floor(64 * 32 i / 160,000), the other two bins 0 at offset 0
    bins = torch.tensor([64 * 32 * i // 160_000 for i in range(prior.n_ctx)])
    assert bins.max() >= 3
    same_bin = (time_terms[:, 1:] - time_terms[:, :-1]).abs().amax(dim=(0, 2)) < 1e-6
    assert torch.equal(same_bin, bins[1:] == bins[:-1])


@pytest.mark.parametrize("fp16", [False, True])
def test_written_file_has_the_official_layout(tmp_path, fp16):
    hps = official_hps("low", **TINY["low"])
    prior = randomize_(build_official(hps), seed=1)
    if fp16:
        to_fp16_params_(prior)
    path = write_official_checkpoint(prior, hps, tmp_path / "low.tar")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert set(checkpoint) == {"hps", "model", "opt", "step"}
    assert checkpoint["hps"]["prior"] and checkpoint["hps"]["level"] == 1
    assert all(key.startswith("module.") for key in checkpoint["model"])
    assert [k.removeprefix("module.") for k in checkpoint["model"]] == list(prior.state_dict())
    n_conv1d = sum(isinstance(m, Conv1D) for m in prior.modules())
    half = [k for k, v in checkpoint["model"].items() if v.dtype == torch.float16]
    assert n_conv1d == 4 * hps["prior_depth"]
    assert len(half) == (n_conv1d if fp16 else 0)
    assert all(k.endswith(".w") for k in half)
    assert torch.equal(
        checkpoint["model"]["module.prior.x_out.weight"], checkpoint["model"]["module.prior.x_emb.weight"]
    )
