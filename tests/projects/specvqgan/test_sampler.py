from pathlib import Path

import pytest
import torch
import yaml

from projects.specvqgan.convert import load_official
from projects.specvqgan.models import SpectrogramVQGAN
from projects.specvqgan.models.sampler import VisualCodeSampler, column_major_order

from .mingpt_reference import OfficialGPTFeats, column_major_permutation, official_transformer_logits
from .test_convert import KEYS, SMALL, write_official_checkpoint

TINY_GPT = {"n_layer": 2, "n_head": 4, "n_embd": 32}


def test_column_major_order_is_the_reference_permutation():
    order = column_major_order(5, 53)
    assert order[:10].tolist() == [0, 53, 106, 159, 212, 1, 54, 107, 160, 213]
    assert order[-5:].tolist() == [52, 105, 158, 211, 264]
    assert torch.equal(order, column_major_permutation(5, 53))
    grid = torch.arange(265).view(1, 5, 53)  # raster indices
    sampler = VisualCodeSampler(tiny_codebook(), grid=(5, 53), feat_dim=4, n_feats=1, **TINY_GPT)
    assert torch.equal(sampler.to_sequence(grid)[0], order)
    assert torch.equal(sampler.to_grid(sampler.to_sequence(grid)), grid)


def tiny_codebook(n_codes: int = 32) -> SpectrogramVQGAN:
    torch.manual_seed(0)
    return SpectrogramVQGAN(n_codes, embed_dim=8, ch=8, num_res_blocks=1, z_channels=8, norm_groups=4)


def test_reference_gpt_has_the_official_key_names_and_shapes():
    reference = OfficialGPTFeats(1024, 477, 1, 16, 1024, 2048)  # one block: the key list shows block 0
    ours = {f"transformer.{k}": str(tuple(v.shape)) for k, v in reference.state_dict().items()}
    listed = dict(
        line.split("\t") for line in (KEYS / "specvqgan_gpt_state_dict_keys.txt").read_text().splitlines()
    )
    assert ours == listed


@pytest.mark.parametrize(
    ("vocab", "n_feats", "expected"),
    [(1024, 212, 306_995_200), (128, 212, 305_160_192), (1024, 5, 306_995_200 - (477 - 270) * 1024),
     (1024, 1, 306_995_200 - (477 - 266) * 1024)],
)  # fmt: skip
def test_paper_sampler_has_the_official_parameter_count(vocab, n_feats, expected):
    with torch.device("meta"):  # sizes only: 300 M parameters need no memory
        sampler = VisualCodeSampler(tiny_codebook(vocab), feat_dim=2048, n_feats=n_feats)
    counted = sum(p.numel() for name, p in sampler.named_parameters() if not name.startswith("codebook."))
    assert sampler.gpt.block_size == 265 + n_feats
    assert counted == expected


def write_official_transformer(tmp_path: Path, with_class: bool = False):
    """An official-layout Net2NetTransformer checkpoint (small widths) and its YAML."""
    _, ckpt, codebook_config = write_official_checkpoint(tmp_path, SMALL, with_loss=False)
    codebook_state = torch.load(ckpt, weights_only=False)["state_dict"]
    torch.manual_seed(1)
    n_feats, feat_dim = 5, 16
    block_size = 265 + n_feats + with_class
    gpt = OfficialGPTFeats(
        SMALL["n_embed"], block_size, **TINY_GPT, feat_dim=feat_dim, n_classes=8 if with_class else None
    )
    for name, p in gpt.named_parameters():
        if "ln" in name:
            p.data.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    order = column_major_permutation(5, 53)
    state = {f"first_stage_model.{k}": v for k, v in codebook_state.items()}
    state |= {f"transformer.{k}": v for k, v in gpt.state_dict().items()}
    state["first_stage_permuter.forward_shuffle_idx"] = order
    state["first_stage_permuter.backward_shuffle_idx"] = torch.argsort(order)
    ckpt = tmp_path / "transformer.ckpt"
    torch.save({"state_dict": state}, ckpt)
    codebook_params = yaml.safe_load(codebook_config.read_text())["model"]["params"]
    embedder = {
        "target": "torch.nn.Conv1d",
        "params": {"in_channels": feat_dim, "out_channels": 32, "kernel_size": 1},
    }
    transformer = {
        "target": "specvqgan.modules.transformer.mingpt." + ("GPTFeatsClass" if with_class else "GPTFeats"),
        "params": {
            "feat_embedding_config": embedder,
            "GPT_config": {"vocab_size": SMALL["n_embed"], "block_size": block_size, **TINY_GPT},
        },
    }
    params = {
        "transformer_config": transformer,
        "first_stage_permuter_config": {"target": "specvqgan.modules.transformer.permuter.ColumnMajor",
                                        "params": {"H": 5, "W": 53}},
        "first_stage_config": {"target": "specvqgan.models.vqgan.VQModel", "params": codebook_params},
    }  # fmt: skip
    config = tmp_path / "transformer.yaml"
    config.write_text(yaml.safe_dump({"model": {"target": "specvqgan.models.cond_transformer.Net2NetTransformer",
                                                "params": params}}))  # fmt: skip
    return gpt.eval(), ckpt, config


@pytest.mark.parametrize("with_class", [False, True])
def test_load_official_transformer_gives_the_official_logits(tmp_path, with_class):
    official, ckpt, config = write_official_transformer(tmp_path, with_class)
    sampler = load_official(ckpt, config)
    assert isinstance(sampler, VisualCodeSampler) and not sampler.training
    report = sampler.conversion_report
    assert not report.missing and not report.unmapped
    assert report.mapped == len(torch.load(ckpt, weights_only=False)["state_dict"]) - len(report.dropped)
    codes = torch.randint(SMALL["n_embed"], (3, 265))
    feats = torch.randn(3, 5, 16)
    labels = torch.tensor([0, 3, 7]) if with_class else None
    with torch.no_grad():
        expected = official_transformer_logits(
            official, codes, feats.transpose(1, 2), None if labels is None else labels[:, None]
        )
        logits = sampler(codes, feats, labels)
    assert logits.shape == (3, 265, SMALL["n_embed"])
    assert torch.allclose(logits, expected, atol=1e-5)


def test_load_official_transformer_refuses_a_different_token_order(tmp_path):
    _, ckpt, config = write_official_transformer(tmp_path)
    state = torch.load(ckpt, weights_only=False)
    state["state_dict"]["first_stage_permuter.forward_shuffle_idx"] = torch.arange(265)  # row-major
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="not the column-major order"):
        load_official(ckpt, config)


def test_cached_sampling_draws_the_tokens_of_the_recompute_loop():
    sampler = VisualCodeSampler(
        tiny_codebook(), grid=(5, 10), feat_dim=12, n_feats=4, n_classes=3, **TINY_GPT
    ).eval()
    feats, labels = torch.randn(4, 4, 12), torch.tensor([0, 1, 2, 1])
    for kwargs in ({"top_k": 8, "temperature": 0.9}, {"top_p": 0.8}, {"n_columns": 23}):
        draws = []
        for use_cache in (True, False):
            generator = torch.Generator().manual_seed(5)
            draws.append(sampler.sample(feats, labels, generator=generator, use_cache=use_cache, **kwargs))
        assert torch.equal(draws[0], draws[1]), kwargs
        assert draws[0].shape == (4, 5 * kwargs.get("n_columns", 10))
    assert len(set(map(tuple, draws[0].tolist()))) > 1  # samples differ between clips


def test_priming_keeps_the_real_codes_and_long_samples_slide_the_condition():
    sampler = VisualCodeSampler(tiny_codebook(), grid=(5, 10), feat_dim=12, n_feats=4, **TINY_GPT).eval()
    feats = torch.randn(2, 4, 12)
    prime = torch.randint(32, (2, 25))  # the first 5 columns
    codes = sampler.sample(feats, prime=prime, generator=torch.Generator().manual_seed(0))
    assert torch.equal(codes[:, :25], prime) and codes.shape == (2, 50)
    asked = []

    def condition_at(first_column: int):
        asked.append(first_column)
        return feats, None

    long = sampler.sample(
        feats, n_columns=14, condition_at=condition_at, generator=torch.Generator().manual_seed(0)
    )
    assert long.shape == (2, 70) and asked == [0, 1, 2, 3, 4]  # one window, then one per extra column
    mel = sampler.decode(long)
    assert mel.shape == (2, 1, 80, 14 * 16)


def test_forward_predicts_each_code_from_the_condition_and_the_codes_before_it():
    sampler = VisualCodeSampler(tiny_codebook(), grid=(5, 10), feat_dim=12, n_feats=4, **TINY_GPT).eval()
    codes, feats = torch.randint(32, (2, 50)), torch.randn(2, 4, 12)
    logits = sampler(codes, feats)
    changed = codes.clone()
    changed[:, 20] = (codes[:, 20] + 1) % 32
    after = sampler(changed, feats)
    assert torch.allclose(logits[:, :21], after[:, :21], atol=1e-6)  # position j sees codes < j only
    assert not torch.allclose(logits[:, 21:], after[:, 21:])
    assert not torch.allclose(logits[:, :1], sampler(codes, torch.randn(2, 4, 12))[:, :1])


def write_codebook_checkpoint(path: Path, n_codes: int = 32) -> Path:
    """A checkpoint in the codebook stage's format (what load_codebook reads), with random weights."""
    init_args = {
        "n_codes": n_codes,
        "embed_dim": 8,
        "ch": 8,
        "num_res_blocks": 1,
        "z_channels": 8,
        "norm_groups": 4,
    }
    torch.manual_seed(0)
    model = SpectrogramVQGAN(**init_args)
    hparams = {
        "autoencoder": {"class_path": "projects.specvqgan.models.SpectrogramVQGAN", "init_args": init_args}
    }
    state = {f"autoencoder.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": state}, path)
    return path


@pytest.mark.slow
def test_toy_sampler_stage_learns_and_generates_a_video_with_sound(toy_root, tmp_path):
    from shared.cli import AvgenCLI, main

    codebook = write_codebook_checkpoint(tmp_path / "codebook.ckpt")
    config = Path(__file__).resolve().parents[3] / "projects" / "specvqgan" / "configs" / "toy_sampler.yaml"
    args = [
        "fit", "--config", str(config),
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--run.root={tmp_path / 'runs'}",
        f"--model.init_args.codebook_ckpt={codebook}",
        "--trainer.enable_progress_bar=false", "--trainer.max_steps=60", "--trainer.val_check_interval=20",
    ]  # fmt: skip
    cli = AvgenCLI(args=args)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(cli.run_dir))
    events.Reload()
    losses = [s.value for s in events.Scalars("val/loss")]
    assert losses[-1] < losses[0] - 0.3  # nats per code, from about log(32) = 3.47 at the start
    video = sorted((toy_root / "vggsound" / "video").glob("*.mp4"))[0]
    out = tmp_path / "gen" / "clip.mp4"
    main(["generate", "--project", "specvqgan", "--video", str(video), "--out", str(out), "--run", str(cli.run_dir),
          "--seconds", "3", "--top-k", "8"])  # fmt: skip
    from shared.audio import load_audio

    assert {p.name for p in out.parent.iterdir()} == {"clip.mp4", "clip.wav", "clip.png"}
    sound = load_audio(out, 22050)  # 16 latent columns of 16 x 256 samples cover the 3 s asked for
    assert abs(sound.shape[0] - 16 * 16 * 256) <= 2048 and sound.abs().max() > 0
