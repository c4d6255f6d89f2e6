from pathlib import Path

import pytest
import torch
import yaml

from projects.specvqgan.convert import OFFICIAL_FEATURES, load_official, official_visual_features
from projects.specvqgan.models import SpectrogramVQGAN
from projects.specvqgan.models.sampler import CodeSampling, VisualCodeSampler, column_major_order
from shared.runs import UserError

from .mingpt_reference import OfficialGPTFeats, column_major_permutation, official_transformer_logits
from .test_convert import KEYS, SMALL, write_official_checkpoint

TINY_GPT = {"n_layer": 2, "n_head": 4, "n_embd": 32}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


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


# data sections of official `configs/*-project.yaml` files (feature folders named as the official configs do)
RESNET_DATA = {
    "rgb_feats_dir_path": "./data/vggsound/feature_resnet50_dim2048_21.5fps",
    "flow_feats_dir_path": None,
}
BNINCEPTION_DATA = {
    "rgb_feats_dir_path": "./data/vggsound/feature_rgb_bninception_dim1024_21.5fps",
    "flow_feats_dir_path": "./data/vggsound/feature_flow_bninception_dim1024_21.5fps",
}
NO_FEATS_DATA = {**BNINCEPTION_DATA, "replace_feats_with_random": True}


def write_official_transformer(
    tmp_path: Path, with_class: bool = False, n_feats: int = 5, data: dict | None = None
):
    """An official-layout Net2NetTransformer checkpoint (small widths) and its YAML (with `data.params`)."""
    _, ckpt, codebook_config = write_official_checkpoint(tmp_path, SMALL, with_loss=False)
    codebook_state = torch.load(ckpt, weights_only=False)["state_dict"]
    torch.manual_seed(1)
    feat_dim = 16
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
    model = {"target": "specvqgan.models.cond_transformer.Net2NetTransformer", "params": params}
    data_params = {"feat_depth": feat_dim, "feat_len": 215, "feat_crop_len": 212, **(data or RESNET_DATA)}
    config.write_text(yaml.safe_dump({"model": model, "data": {"params": data_params}}))
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


@pytest.mark.parametrize(
    ("data", "expected"),
    [(RESNET_DATA, "resnet50"), (BNINCEPTION_DATA, "bninception"), (NO_FEATS_DATA, "none"),
     ({"rgb_feats_dir_path": "./data/vggsound/feature_resnet50_dim2048_21.5fps", **{"flow_feats_dir_path":
       BNINCEPTION_DATA["flow_feats_dir_path"]}}, "cannot tell"), (None, "no data.params")],
)  # fmt: skip
def test_the_official_feature_type_is_read_from_the_yaml(tmp_path, data, expected):
    config = tmp_path / "2021-07-30T21-03-22-project.yaml"
    config.write_text(yaml.safe_dump({"model": {}} | ({"data": {"params": data}} if data else {})))
    if expected in OFFICIAL_FEATURES:
        assert official_visual_features(config) == expected
    else:
        with pytest.raises(UserError, match=rf"{config.name}: {expected}"):
            official_visual_features(config)


def test_generate_refuses_an_official_bninception_transformer_naming_its_config(tmp_path):
    from projects.specvqgan.generate import main

    _, ckpt, config = write_official_transformer(tmp_path, data=BNINCEPTION_DATA)
    args = ["--video", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "out.mp4"),
            "--official-ckpt", str(ckpt), "--official-config", str(config)]  # fmt: skip
    with pytest.raises(UserError, match=rf"{config}: .*BN-Inception RGB \+ optical-flow.*flow networks"):
        main(args)


def test_generate_reads_a_run_through_the_shared_run_lookup(tmp_path):
    from projects.specvqgan.generate import load_run

    (tmp_path / "runs" / "specvqgan" / "toy_sampler" / "default" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no checkpoint in .*default.*make train PROJECT=specvqgan"):
        load_run(tmp_path / "runs" / "specvqgan" / "toy_sampler" / "default")


def test_generate_from_an_official_no_feats_transformer_is_reproduced_by_the_seed(
    toy_root, tmp_path, monkeypatch
):
    """One random vector per sample, from the sample's stream: --seed reproduces the codes and the sound,
    whatever the global generator; the chunk size does not change the codes; another seed does."""
    import soundfile

    from projects.specvqgan.generate import main

    _, ckpt, config = write_official_transformer(tmp_path, n_feats=1, data=NO_FEATS_DATA)
    video = sorted((toy_root / "vggsound" / "video").glob("*.mp4"))[0]
    decoded, decode = [], VisualCodeSampler.decode
    monkeypatch.setattr(VisualCodeSampler, "decode", lambda self, c: decoded.append(c) or decode(self, c))

    def generate(name: str, *extra: str) -> tuple[torch.Tensor, list]:
        decoded.clear()
        args = ["--video", str(video), "--out", str(tmp_path / name / "clip.mp4"),
                "--official-ckpt", str(ckpt), "--official-config", str(config),
                "--seconds", "1", "--samples", "3", *extra]  # fmt: skip
        torch.manual_seed(len(name))  # a different global generator state for every run
        sounds = [soundfile.read(p)[0] for p in main(args) if p.suffix == ".wav"]
        return torch.cat(decoded), sounds

    codes, sounds = generate("a")
    assert codes.shape == (3, 25) and len(sounds) == 3
    assert sounds[0].shape == (5 * 16 * 256,)  # 1 s: 5 latent columns of 16 mel frames
    assert len({tuple(c.tolist()) for c in codes}) == 3  # each sample its own vector and codes
    again, sounds_again = generate("bb")
    assert torch.equal(again, codes) and all(
        (x == y).all() for x, y in zip(sounds, sounds_again, strict=True)
    )
    assert torch.equal(generate("ccc", "--chunk-size", "2")[0], codes)
    assert not torch.equal(generate("dddd", "--seed", "1")[0], codes)


def test_load_official_transformer_refuses_a_different_token_order(tmp_path):
    _, ckpt, config = write_official_transformer(tmp_path)
    state = torch.load(ckpt, weights_only=False)
    state["state_dict"]["first_stage_permuter.forward_shuffle_idx"] = torch.arange(265)  # row-major
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="not the column-major order"):
        load_official(ckpt, config)


def test_cached_sampling_draws_the_tokens_of_the_recompute_loop():
    """Both cached decoders, the growing-cache step and the static-shape step a CUDA graph captures,
    draw the codes of the official recompute-everything loop."""
    sampler = VisualCodeSampler(
        tiny_codebook(), grid=(5, 10), feat_dim=12, n_feats=4, n_classes=3, **TINY_GPT
    ).eval()
    feats, labels = torch.randn(4, 4, 12), torch.tensor([0, 1, 2, 1])
    for kwargs in ({"top_k": 8, "temperature": 0.9}, {"top_p": 0.8}, {"n_columns": 23}):
        draws = {}
        for decode in ("recompute", "cache", "static"):
            generator = torch.Generator().manual_seed(5)
            draws[decode] = sampler.sample(feats, labels, generator=generator, decode=decode, **kwargs)
        assert torch.equal(draws["cache"], draws["recompute"]), kwargs
        assert torch.equal(draws["static"], draws["recompute"]), kwargs
        assert draws["cache"].shape == (4, 5 * kwargs.get("n_columns", 10))
    assert len(set(map(tuple, draws["cache"].tolist()))) > 1  # samples differ between clips
    with pytest.raises(ValueError, match="cuda_graph decoding needs a CUDA device"):
        sampler.sample(feats, labels, decode="cuda_graph")
    with pytest.raises(ValueError, match="unknown decode 'graph'"):
        sampler.sample(feats, labels, decode="graph")


def record_cache_sizes(monkeypatch, sampler: VisualCodeSampler) -> list[int]:
    """The batch size of every KV cache the sampler allocates (one per window of a `sample` call)."""
    sizes, new_cache = [], sampler.gpt.new_cache
    monkeypatch.setattr(sampler.gpt, "new_cache", lambda b, *a: sizes.append(b) or new_cache(b, *a))
    return sizes


def test_chunked_sampling_draws_each_item_s_codes_of_one_call_with_a_bounded_cache(monkeypatch):
    """Each item has its own random stream, so the chunk size changes the memory, not the samples."""
    sampler = VisualCodeSampler(tiny_codebook(), grid=(5, 10), feat_dim=12, n_feats=4, **TINY_GPT).eval()
    sizes = record_cache_sizes(monkeypatch, sampler)
    feats = torch.randn(7, 4, 12)
    keys = [f"clip{i // 3}/{i % 3}" for i in range(7)]
    one_call = list(sampler.sample_items(feats, None, keys, CodeSampling(top_k=8, seed=3)))
    assert sizes == [7] and [items for items, _ in one_call] == [slice(0, 7)]
    sizes.clear()
    chunked = list(sampler.sample_items(feats, None, keys, CodeSampling(top_k=8, seed=3, chunk_size=3)))
    assert sizes == [3, 3, 1]  # the KV cache never holds more than chunk_size items
    assert [items for items, _ in chunked] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    codes = torch.cat([c for _, c in chunked])
    assert codes.shape == (7, 50) and torch.equal(codes, one_call[0][1])
    # an item sampled alone draws what it drew among the others; another seed draws other codes
    ((_, alone),) = sampler.sample_items(feats[5:6], None, keys[5:6], CodeSampling(top_k=8, seed=3))
    assert torch.equal(alone, codes[5:6])
    ((_, reseeded),) = sampler.sample_items(feats, None, keys, CodeSampling(top_k=8, seed=4))
    assert not torch.equal(reseeded, codes)
    # longer than the window, every item on one shared condition row, still chunk-independent
    shared_row = lambda c: (feats[:1], None)  # noqa: E731
    long = [
        torch.cat([
            codes for _, codes in sampler.sample_items(
                feats[:1], None, keys, CodeSampling(seed=1, chunk_size=size), rows=[0] * 7, n_columns=12,
                condition_at=shared_row,
            )
        ])
        for size in (None, 2)
    ]  # fmt: skip
    assert long[0].shape == (7, 60) and torch.equal(long[0], long[1])
    with pytest.raises(ValueError, match="1 condition rows for 7 keys"):
        next(sampler.sample_items(feats, None, keys, CodeSampling(), rows=[0]))


def test_no_feats_draws_one_vector_per_item_from_the_item_s_stream(monkeypatch):
    sampler = VisualCodeSampler(tiny_codebook(), grid=(5, 10), feat_dim=12, n_feats=1, **TINY_GPT).eval()
    seen, condition = [], sampler.condition
    monkeypatch.setattr(
        sampler, "condition", lambda feats, labels: seen.append(feats) or condition(feats, labels)
    )
    keys = ["clip/0", "clip/1", "clip/2"]
    codes = torch.cat([c for _, c in sampler.sample_items(None, None, keys, CodeSampling(chunk_size=2))])
    vectors = torch.cat(seen)
    assert vectors.shape == (3, 1, 12) and vectors.min() >= 0 and vectors.max() < 1
    assert len({tuple(v.flatten().tolist()) for v in vectors}) == 3  # one vector per item, not per clip
    seen.clear()
    again = torch.cat([c for _, c in sampler.sample_items(None, None, keys, CodeSampling())])
    assert torch.equal(torch.cat(seen), vectors) and torch.equal(again, codes)  # the seed reproduces both
    seen.clear()
    list(sampler.sample_items(None, None, keys, CodeSampling(seed=1)))
    assert not torch.equal(torch.cat(seen), vectors)


def test_evaluation_scores_samples_per_clip_in_bounded_chunks_with_the_official_melception(
    monkeypatch, tmp_path
):
    """`avgen test`'s path: the official Melception file (numpy metrics inside) with its statistics file from
    the config, `samples_per_clip` samples of every clip in chunks of `chunk_size`, all of them scored."""
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    from projects.specvqgan.module_sampler import SpecVQGANTransformer
    from shared.encoders import Melception
    from shared.metrics import MelceptionMetrics

    from .official_files import save_official_classifier

    torch.manual_seed(0)
    net = Melception(n_classes=6, width_divisor=16)
    melception = save_official_classifier(
        {k: v for k, v in net.state_dict().items() if not k.startswith("mel_")}, tmp_path / "melception.pt"
    )
    stats = tmp_path / "train_means_stds_melspec_10s_22050hz.txt"
    stats.write_text("".join(f"{0.4 + i / 400:.6f} {0.1:.6f}\n" for i in range(80)))
    sampling = CodeSampling(top_k=8, samples_per_clip=2, chunk_size=3, seed=0)
    module = SpecVQGANTransformer(
        codebook_ckpt=str(write_codebook_checkpoint(tmp_path / "codebook.ckpt")), feat_dim=12, n_feats=4,
        grid=(5, 10), **TINY_GPT, melception_ckpt=str(melception), melception_stats=str(stats),
        sampling=sampling,
    )  # fmt: skip
    clips = [
        {"mel": torch.rand(1, 80, 160), "frame_feats": torch.randn(4, 12), "label": i, "clip_id": f"c{i}"}
        for i in range(10)  # the reconstructions' Inception Score needs 10 (its splits)
    ]
    sizes = record_cache_sizes(monkeypatch, module.sampler)
    fake_ids, update = [], MelceptionMetrics.update

    def recording_update(self, *args, **kwargs):
        fake_ids.extend(kwargs.get("fake_ids") or [])
        return update(self, *args, **kwargs)

    monkeypatch.setattr(MelceptionMetrics, "update", recording_update)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    (results,) = trainer.test(module, DataLoader(clips, batch_size=4))
    assert sizes == [3, 3, 2, 3, 3, 2, 3, 1]  # batches of 4, 4, 2 clips x 2 samples, at most 3 per call
    assert fake_ids == [f"c{i}" for i in range(10) for _ in range(2)]
    assert torch.allclose(module.metrics["samples"].melception.mel_std, torch.full((80,), 0.1))
    for name in ("fid", "mkl", "is"):
        assert torch.isfinite(torch.tensor(results[f"test/{name}_samples"])), name
    # the settings travel with the checkpoint as plain values and come back as the same object
    trainer.save_checkpoint(tmp_path / "sampler.ckpt")
    loaded = SpecVQGANTransformer.load_from_checkpoint(tmp_path / "sampler.ckpt", map_location="cpu")
    assert loaded.sampling == sampling and loaded.hparams.melception_stats == str(stats)


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
    shown = {f"examples/{kind}/{i}" for kind in ("real", "generated") for i in (0, 1)}
    assert shown <= set(events.Tags()["images"])  # the config's ExampleLogger, at every validation
    assert len(events.Images("examples/generated/0")) == len(losses)
    video = sorted((toy_root / "vggsound" / "video").glob("*.mp4"))[0]
    out = tmp_path / "gen" / "clip.mp4"
    main(["generate", "--project", "specvqgan", "--video", str(video), "--out", str(out), "--run", str(cli.run_dir),
          "--seconds", "3", "--top-k", "8"])  # fmt: skip
    from shared.audio import load_audio

    assert {p.name for p in out.parent.iterdir()} == {"clip.mp4", "clip.wav", "clip.png"}
    sound = load_audio(out, 22050)  # 16 latent columns of 16 x 256 samples cover the 3 s asked for
    assert abs(sound.shape[0] - 16 * 16 * 256) <= 2048 and sound.abs().max() > 0
