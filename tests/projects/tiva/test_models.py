"""TiVA's networks: the audio layout, S, T, G (paper sec. 3.1-3.2), and AudioLDM2's parts at paper size."""

import math

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel
from transformers import SpeechT5HifiGan

from projects.tiva.models import (
    LOG_MEL_BOUNDS,
    LayoutConditionedUNet,
    LayoutPredictor,
    SemanticEncoder,
    audio_layout,
    decode_latents,
    encode_mel,
    layout_to_latent,
    load_frozen_parts,
    load_vae,
    load_vocoder,
    paper_unet_config,
    paper_vae_config,
    paper_vocoder_config,
)
from shared.audio import GriffinLimVocoder
from shared.runs import UserError
from tests.projects.tiva.tiny import (
    assert_close_to_scale,
    differ_at_scale,
    save_tiny_audioldm,
    tiny_predictor,
    tiny_unet_config,
)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_layout_is_bright_only_where_the_sound_is():
    logmel = torch.full((1, 64, 1024), math.log(1e-5))
    logmel[:, 40:, 300:400] = 2.0  # a loud high-frequency event between frames 300 and 400
    layout = audio_layout(logmel)
    assert layout.shape == (1, 102, 5)
    assert layout.min() >= 0 and layout.max() <= 1
    rows = layout[0].amax(dim=1)
    assert rows[:29].max() == 0 and rows[41:].max() == 0 and rows[31:39].min() > 0.5  # frames / 10.04
    assert layout[0, 35, :3].max() == 0 and layout[0, 35, 3:].min() > 0.5  # bins 40-63: the top two columns
    high = LOG_MEL_BOUNDS[1]
    loud = audio_layout(torch.full((1, 64, 1024), high + 10.0))
    assert torch.equal(loud, torch.ones_like(loud))  # clamped
    channel = layout_to_latent(layout, (256, 16))
    assert channel.shape == (1, 1, 256, 16)
    assert (
        channel[0, 0, 80:95, -1].min() > 0.4
        and channel[0, 0, :60].max() == 0
        and channel[0, 0, :, 0].max() == 0
    )


def test_semantic_encoder_is_a_linear_map_of_the_chosen_layer():
    encoder = SemanticEncoder(clip_dim=8, context_dim=4)
    cls = torch.randn(2, 5, 3, 8)
    s = encoder(cls)
    assert s.shape == (2, 5, 4)
    assert torch.allclose(s, encoder.proj(cls[:, :, -1]))
    cls2 = cls.clone()
    cls2[:, :, 0] += 1  # another layer: no effect
    assert torch.equal(encoder(cls2), s)


def test_layout_predictor_shapes_and_padding():
    predictor = tiny_predictor()
    cls, patch = torch.randn(2, 12, 3, 8), torch.randn(2, 12, 3, 8)
    assert predictor(cls, patch).shape == (2, 12, 5)
    # shorter inputs are zero-padded to n_frames, longer ones cut
    assert predictor(cls[:, :7], patch[:, :7]).shape == (2, 12, 5)
    long = predictor(torch.cat([cls, cls], 1), torch.cat([patch, patch], 1))
    assert_close_to_scale(long, predictor(cls, patch))


def test_padded_frames_change_nothing_t_predicts(monkeypatch):
    """T pads an input of 7 frames to its 12; whatever the padding holds, the layout is the same (the padded
    frames are masked out of every attention, and their outputs out of the final Linear)."""
    predictor = tiny_predictor()
    cls, patch = torch.randn(2, 7, 3, 8), torch.randn(2, 7, 3, 8)
    zero_padded = predictor(cls, patch)
    frames = predictor._frames

    def noise_padded(x):  # the same frames, random values where T pads
        padded = frames(x)
        return torch.cat([padded[:, :7], 10 * torch.randn_like(padded[:, 7:])], dim=1)

    monkeypatch.setattr(predictor, "_frames", noise_padded)
    assert_close_to_scale(predictor(cls, patch), zero_padded)
    assert torch.isfinite(zero_padded).all()
    # and the valid frames still matter
    cls[:, 3] += 1.0
    assert differ_at_scale(predictor(cls, patch), zero_padded)


def test_windowed_attention_only_sees_neighbouring_frames():
    layer = tiny_predictor().encoder[0].window_attn
    from projects.tiva.models import window_mask

    x = torch.randn(1, 12, 16)
    mask = window_mask(12, 3)
    changed = x.clone()
    changed[0, 9] = torch.randn(16)  # frame 9 is outside frame 2's window of 3, inside frame 8's
    before, after = layer(x, mask=mask), layer(changed, mask=mask)
    assert_close_to_scale(after[0, 2], before[0, 2])
    assert differ_at_scale(after[0, 8], before[0, 8])
    # and T as a whole mixes far frames through its global self-attention
    predictor = tiny_predictor()
    cls, patch = torch.randn(1, 12, 3, 8), torch.randn(1, 12, 3, 8)
    patch2 = patch.clone()
    patch2[0, 11] = torch.randn(3, 8)
    assert differ_at_scale(predictor(cls, patch2), predictor(cls, patch))


def test_generator_predicts_c_channels_from_latent_layout_and_semantics():
    torch.manual_seed(0)
    g = LayoutConditionedUNet(tiny_unet_config()).eval()
    z, layout = torch.randn(2, 4, 16, 8), torch.rand(2, 1, 16, 8)
    t, s = torch.tensor([10, 500]), torch.randn(2, 3, 12)
    eps = g(z, layout, t, s)
    assert eps.shape == (2, 4, 16, 8)
    assert differ_at_scale(g(z, torch.zeros_like(layout), t, s), eps)  # the layout reaches ε̂
    assert differ_at_scale(g(z, layout, t, torch.zeros_like(s)), eps)  # so does s
    assert torch.equal(eps, g.unet(torch.cat([z, layout], 1), t, encoder_hidden_states=s).sample[:, :4])
    with pytest.raises(ValueError, match="c \\+ 1"):
        LayoutConditionedUNet(tiny_unet_config() | {"out_channels": 4})


@pytest.mark.slow  # builds 660 M parameters
def test_paper_sizes_of_the_parts():
    vae = AutoencoderKL(**paper_vae_config())
    vocoder = SpeechT5HifiGan(paper_vocoder_config())
    counts = {
        "VAE": n_params(vae),
        "vocoder": n_params(vocoder),
        "G": n_params(LayoutConditionedUNet(paper_unet_config())),
        "S": n_params(SemanticEncoder()),
        "T": n_params(LayoutPredictor()),
    }
    print("TiVA paper-configuration parameters:", counts)
    assert counts["VAE"] == pytest.approx(55.4e6, rel=0.01)
    assert counts["vocoder"] == pytest.approx(55.3e6, rel=0.01)
    assert counts["S"] == 768 * 768 + 768
    # AudioLDM2's own UNet at the same widths (three transformers per site, two contexts): its 346.9 M
    config = paper_unet_config()
    audioldm2 = AudioLDM2UNet2DConditionModel(
        **{k: v for k, v in config.items() if k != "cross_attention_dim"}
        | {"in_channels": 8, "out_channels": 8},
        cross_attention_dim=[[None, 768, 1024]] * 4,
    )
    assert n_params(audioldm2) == pytest.approx(346.9e6, rel=0.01)
    assert counts["G"] < n_params(audioldm2)
    # AudioLDM2's shapes ([B, 64, 1024] -> [B, 8, 256, 16]) at a quarter of the length to stay fast on a CPU
    with torch.no_grad():
        z = encode_mel(vae, torch.randn(1, 64, 256))
        assert z.shape == (1, 8, 64, 16)
        assert decode_latents(vae, z).shape == (1, 64, 256)


def test_audioldm_folder_round_trip(tmp_path):
    vae, vocoder = save_tiny_audioldm(tmp_path)
    loaded_vae, loaded_vocoder = load_vae(tmp_path), load_vocoder(tmp_path)
    assert loaded_vae.config.scaling_factor == 0.5  # read from the folder, not assumed
    assert not any(p.requires_grad for p in loaded_vae.parameters())
    logmel = torch.randn(2, 64, 32)
    with torch.no_grad():
        posterior = vae.encode(logmel.transpose(1, 2)[:, None]).latent_dist
        z = encode_mel(loaded_vae, logmel, generator=torch.Generator().manual_seed(0))
        expected = posterior.sample(torch.Generator().manual_seed(0)) * 0.5
        assert z.shape == (2, 4, 8, 16)
        assert_close_to_scale(z, expected)
        wave = loaded_vocoder(logmel)
        assert wave.shape == (2, 32 * 160)
        assert_close_to_scale(wave, vocoder(logmel.transpose(1, 2))[..., : 32 * 160])
        with pytest.raises(ValueError, match="divide by 4"):
            encode_mel(loaded_vae, torch.randn(1, 64, 30))  # 30 frames would come back as 28
    with pytest.raises(UserError, match="nowhere/vae: no config.json"):
        load_vae(tmp_path / "nowhere")


def test_the_vocoder_is_chosen_and_a_missing_one_fails_naming_the_folder(tmp_path):
    save_tiny_audioldm(tmp_path, vocoder=False)
    # the paper's HiFi-GAN: no silent Griffin-Lim when the folder lacks vocoder/
    with pytest.raises(UserError, match=f"{tmp_path}/vocoder: no config.json.*griffin_lim"):
        load_frozen_parts(tmp_path, "hifigan")
    vae, vocoder = load_frozen_parts(tmp_path, "griffin_lim")  # only where a config asks for it
    assert isinstance(vocoder, GriffinLimVocoder) and vae.config.latent_channels == 4
    with pytest.raises(ValueError, match="vocoder must be one of"):
        load_frozen_parts(tmp_path, "melgan")


@pytest.mark.parametrize(("stage", "t_lr"), [("joint", 1e-5), ("joint", None), ("generator", 1e-5)])
def test_each_stage_optimises_its_parts_and_t_can_have_its_own_learning_rate(stage, t_lr):
    from projects.tiva.module_tiva import TRAINED, TiVA

    parts = {
        "semantic": SemanticEncoder(clip_dim=8, context_dim=12),
        "layout_predictor": tiny_predictor(),
        "generator": LayoutConditionedUNet(tiny_unet_config()),
    }
    model = TiVA(**parts, audioldm_root="unused", stage=stage, lr=1e-3, layout_predictor_lr=t_lr)
    groups = model.configure_optimizers().param_groups
    optimised = {id(p): group["lr"] for group in groups for p in group["params"]}
    for name, part in parts.items():
        trained = name in TRAINED[stage]
        assert all((id(p) in optimised) == trained for p in part.parameters()), name
        if trained:
            expected = (t_lr or 1e-3) if name == "layout_predictor" else 1e-3
            assert {optimised[id(p)] for p in part.parameters()} == {expected}, name
