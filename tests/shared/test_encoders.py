"""Visual frame features (SpecVQGAN's ResNet-50 condition), the official per-item frame processing, and
safe reading of the official feature pickles. Tiny networks, random weights, nothing downloaded."""

import itertools
import json
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from shared.encoders import (
    ResNetFeature,
    ResNetFrameFeatures,
    UnsafePickleError,
    build_resnet,
    center_crop_frames,
    frame_lengths,
    load_official_bninception,
    load_official_features,
    loop_frames,
    no_feats,
    pad_or_trim,
    resample_frames,
    resample_indices,
    select_frames,
    weights_identity,
)
from shared.video import load_video

COUGH = "cough/video_00331"  # 15.25 fps source: resampling to 21.5 fps repeats frames
DOG_6S = "dog/video_02677"  # 6.006 s: shorter than 10 s, so the official features are tiled


def video(demo_root, clip):
    return demo_root / "vas" / "videos" / f"{clip}.mp4"


def official(demo_root, clip):
    cls, name = clip.split("/")
    return demo_root / "vas" / "features" / cls / "feature_resnet50_dim2048_21.5fps" / f"{name}.pkl"


def tiny(**kwargs) -> ResNetFrameFeatures:
    """ResNet-18 on 16 px crops (shorter side 18), random weights from seed 0: fast on a CPU."""
    return ResNetFrameFeatures(
        **{"arch": "resnet18", "image_size": 16, "weights": None, "batch_size": 256, **kwargs}
    )


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


@pytest.fixture(scope="module")
def extractor():
    return tiny()


@pytest.fixture(scope="module")
def cough_frames(extractor, demo_root):
    return extractor.load_frames(video(demo_root, COUGH))


# --- the official per-item processing -------------------------------------------------------------


def test_resample_indices_are_the_official_ones():
    assert resample_indices(212, 1).tolist() == [106]
    assert resample_indices(212, 5).tolist() == [35, 77, 119, 162, 204]
    assert resample_indices(212, 53).tolist() == [4 * i + 3 for i in range(53)]
    assert resample_indices(212, 212).tolist() == list(range(212))
    assert resample_indices(40, 10).tolist() == [4 * i + 3 for i in range(10)]  # toy: one per latent column
    for k in (0, 213):
        with pytest.raises(ValueError, match=f"cannot pick {k} of 212"):
            resample_indices(212, k)


def test_pad_trim_crop_and_resample_numpy_and_torch():
    rows = np.arange(215, dtype=np.float32)[:, None].repeat(3, axis=1)  # row i holds the value i
    crop = center_crop_frames(rows, 212)
    assert crop.shape == (212, 3) and crop[0, 0] == 1 and crop[-1, 0] == 212  # offset (215 - 212) // 2 = 1
    assert center_crop_frames(rows[:43], 40)[:, 0].tolist() == list(range(1, 41))  # toy: the same offset
    short = pad_or_trim(rows[:200], 215)
    assert short.shape == (215, 3) and np.array_equal(short[:200], rows[:200]) and not short[200:].any()
    assert np.array_equal(pad_or_trim(np.arange(230.0)[:, None], 215)[:, 0], np.arange(215.0))  # first 215
    picked = select_frames(rows[:214], 5)  # 214 frames: padded with a zero row, cropped from row 1
    assert picked[:, 0].tolist() == [36, 78, 120, 163, 205]
    assert select_frames(rows, 212)[:, 0].tolist() == list(range(1, 213))
    as_torch = select_frames(torch.from_numpy(rows[:214]), 5)
    assert isinstance(as_torch, torch.Tensor) and as_torch[:, 0].tolist() == [36, 78, 120, 163, 205]
    assert pad_or_trim(torch.ones(3, 2), 5).tolist() == [[1, 1], [1, 1], [1, 1], [0, 0], [0, 0]]
    assert resample_frames(torch.arange(212.0), 1).tolist() == [106.0]
    with pytest.raises(ValueError, match="cannot centre-crop 200 frames to 212"):
        center_crop_frames(rows[:200], 212)


def test_loop_frames_tiles_short_clips_from_the_start():
    rows = np.arange(129.0)[:, None]
    looped = loop_frames(rows, 215)
    assert looped[:, 0].tolist() == list(range(129)) + list(range(86))
    assert np.array_equal(loop_frames(np.arange(300.0)[:, None], 215), np.arange(215.0)[:, None])
    assert loop_frames(torch.arange(3.0)[:, None], 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="zero frames"):
        loop_frames(np.zeros((0, 4)), 5)


def test_frame_lengths_keep_four_mel_frames_per_video_frame():
    assert frame_lengths(10.0, 848) == (215, 212)
    assert frame_lengths(2.0, 160) == (43, 40)  # the toy codebook's 160-frame mel crop: 10 columns
    with pytest.raises(ValueError, match="not a multiple of 4"):
        frame_lengths(2.0, 162)
    with pytest.raises(ValueError, match="more than the 43"):
        frame_lengths(2.0, 176)


def test_no_feats_is_one_fresh_uniform_vector():
    a, b = no_feats(), no_feats()
    assert a.shape == (1, 2048) and a.dtype == np.float32 and a.min() >= 0 and a.max() < 1
    assert not np.array_equal(a, b)
    assert abs(float(a.mean()) - 0.5) < 0.05
    seeded = [no_feats(16, k=2, rng=np.random.default_rng(3)) for _ in range(2)]
    assert seeded[0].shape == (2, 16) and np.array_equal(*seeded)


# --- ResNet frame features ---------------------------------------------------------------------


def test_resnet_features_of_a_real_clip_are_deterministic(extractor, cough_frames, demo_root):
    path = video(demo_root, COUGH)
    assert cough_frames.dtype == torch.uint8 and cough_frames.shape == (
        215,
        3,
        18,
        24,
    )  # 360x480 -> short side 18
    feats = extractor(path)  # a path: decode at 21.5 fps, embed, loop to 215
    assert feats.shape == (215, 512) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert feats.min() >= 0 and feats.std() > 0  # after ReLU + average pooling
    again = tiny().embed(cough_frames)  # a fresh network from the same seed, on the same frames
    assert torch.equal(feats, again)
    assert not torch.allclose(feats[:8], tiny(seed=1).embed(cough_frames[:8]))
    assert extractor(cough_frames[:3]).shape == (3, 512)  # uint8 frames are preprocessed
    extractor.train()
    assert not extractor.training and not extractor.net.layer1[0].bn1.training  # frozen: BN stays in eval
    assert not any(p.requires_grad for p in extractor.parameters())


def test_frame_sampling_matches_the_official_21_5_fps_video(cough_frames, demo_root):
    """Where our 21.5 fps frames repeat, the official features (from FFmpeg's re-encoded video) barely move."""
    feats = load_official_features(official(demo_root, COUGH))
    step = np.linalg.norm(feats[1:] - feats[:-1], axis=1)
    repeats = np.array([torch.equal(a, b) for a, b in itertools.pairwise(cough_frames)])
    assert repeats.sum() == 62  # 153 source frames spread over 215
    assert step[repeats].max() < 1.0 < 3.0 < step[~repeats].mean()
    # the player's rounding ("down") puts the repeats one slot off: the official features move there
    down = load_video(video(demo_root, COUGH), fps=21.5, size=(16, 16))
    off = np.array([torch.equal(a, b) for a, b in itertools.pairwise(down)])
    assert step[off].mean() > 3.0


def test_short_videos_are_tiled_like_the_official_features(demo_root):
    """A 6 s clip: 129 frames at 21.5 fps, looped to 215; the official pickle has the same period."""
    ours = tiny()(video(demo_root, DOG_6S)).numpy()
    theirs = load_official_features(official(demo_root, DOG_6S))
    for feats in (ours, theirs):
        assert feats.shape[0] == 215
        assert np.array_equal(feats[129:], feats[:86]) and not np.array_equal(feats[128], feats[0])


def test_weights_file_round_trip_and_clear_errors(extractor, cough_frames, tmp_path):
    frames = cough_frames[:4]
    path = tmp_path / "r18.pt"
    torch.save(extractor.net.state_dict(), path)
    loaded = tiny(weights=path)
    assert torch.equal(loaded.embed(frames), extractor.embed(frames))
    # a torchvision state dict as published, with its classifier: fc is ignored
    full = torchvision.models.resnet18()
    torch.save(full.state_dict(), tmp_path / "with_fc.pth")
    with_fc = tiny(weights=str(tmp_path / "with_fc.pth"))
    full.fc = torch.nn.Identity()
    with torch.inference_mode():
        assert torch.allclose(with_fc.embed(frames), full.eval()(with_fc.preprocess(frames)))
    from safetensors.torch import save_file

    save_file(extractor.net.state_dict(), tmp_path / "r18.safetensors")
    assert torch.equal(tiny(weights=tmp_path / "r18.safetensors").embed(frames), extractor.embed(frames))
    # the cache identity is the content, not the name
    (tmp_path / "copy.pt").write_bytes(path.read_bytes())
    assert weights_identity("resnet18", path) == weights_identity("resnet18", tmp_path / "copy.pt")
    assert weights_identity("resnet18", path) != weights_identity("resnet18", tmp_path / "with_fc.pth")
    assert weights_identity("resnet50", "IMAGENET1K_V1") == "torchvision(ResNet50_Weights.IMAGENET1K_V1)"

    with pytest.raises(FileNotFoundError, match="missing.pt: no such weights file"):
        tiny(weights=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: cannot be read as a state dict"):
        tiny(weights=tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="r18.pt: does not fit a torchvision resnet34"):
        tiny(arch="resnet34", weights=path)
    with pytest.raises(
        ValueError, match="IMAGENET1K_V9: neither an existing weights file nor .*IMAGENET1K_V1"
    ):
        tiny(weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="vit_b_16: not a torchvision ResNet"):
        build_resnet("vit_b_16")


def test_paper_size_resnet50():
    model = ResNetFrameFeatures()  # the paper's defaults: resnet50, crop 224 of 256, 21.5 fps, 215 frames
    net = model.net
    assert model.dim == net.num_features == 2048 and isinstance(net.fc, torch.nn.Identity)
    assert sum(p.numel() for p in net.parameters()) == 23_508_032  # torchvision ResNet-50 without fc
    assert (model.resize, model.image_size, model.fps, model.num_frames) == (256, 224, 21.5, 215)
    assert model.decode_size(360, 480) == (256, 341) and model.decode_size(720, 406) == (453, 256)
    frame = torch.randint(0, 256, (1, 3, 240, 320), dtype=torch.uint8)
    assert model.preprocess(frame).shape == (1, 3, 224, 224)
    assert model(frame).shape == (1, 2048)


def test_resnet_feature_params_and_pickling():
    feature = ResNetFeature("resnet18", None, image_size=32, duration=2.0)
    params = feature.params()
    assert params["arch"] == "resnet18" and params["weights"] == "random(seed=0)"
    assert (params["resize"], params["image_size"], params["fps"], params["duration"]) == (37, 32, 21.5, 2.0)
    assert ResNetFeature("resnet18", None, image_size=32, duration=2.0, seed=1).params() != params
    assert ResNetFeature("resnet18", None, image_size=48, duration=2.0).params() != params
    assert feature.model.num_frames == 43
    clone = pickle.loads(pickle.dumps(feature))  # what a preparation worker receives: no network inside
    assert clone._model is None and clone.params() == params


# --- official feature pickles ------------------------------------------------------------------


def test_official_resnet50_pickles_load_safely(demo_root):
    paths = sorted((demo_root / "vas" / "features").glob("*/feature_resnet50_dim2048_21.5fps/*.pkl"))
    assert len(paths) == 10
    for path in paths:
        feats = load_official_features(path)
        assert feats.shape == (215, 2048) and feats.dtype == np.float32 and feats.min() >= 0
    assert select_frames(feats, 5).shape == (5, 2048)


def test_safe_unpickler_round_trips_arrays_and_refuses_other_globals(tmp_path):
    array = np.random.default_rng(0).random((7, 5))
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(array, protocol=protocol))
        loaded = load_official_features(path)
        assert loaded.dtype == np.float32 and np.array_equal(loaded, array.astype(np.float32))

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([array, Payload()]))
    with pytest.raises(
        UnsafePickleError, match=r"evil.pkl: refusing to unpickle the global '(posix|os)\.system'"
    ):
        load_official_features(evil)
    assert not marker.exists()

    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"feature": array}))
    with pytest.raises(ValueError, match="dict.pkl: expected a numpy array of frame features, found dict"):
        load_official_features(tmp_path / "dict.pkl")
    (tmp_path / "vector.pkl").write_bytes(pickle.dumps(np.zeros(4)))
    with pytest.raises(ValueError, match=r"vector.pkl: expected numeric frame features \[T, D\]"):
        load_official_features(tmp_path / "vector.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(array)[:50])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl: not a readable pickle"):
        load_official_features(tmp_path / "cut.pkl")
    with pytest.raises(FileNotFoundError, match="nothing.pkl"):
        load_official_features(tmp_path / "nothing.pkl")


def test_bninception_rgb_and_flow_are_concatenated(tmp_path):
    rgb, flow = np.full((214, 1024), 1.0, np.float32), np.full((214, 1024), 2.0, np.float32)
    (tmp_path / "rgb.pkl").write_bytes(pickle.dumps(rgb))
    (tmp_path / "flow.pkl").write_bytes(pickle.dumps(flow, protocol=2))
    feats = load_official_bninception(tmp_path / "rgb.pkl", tmp_path / "flow.pkl")
    assert feats.shape == (214, 2048) and (feats[:, :1024] == 1).all() and (feats[:, 1024:] == 2).all()
    assert select_frames(feats, 212).shape == (212, 2048)  # padded to 215, cropped to 212
    (tmp_path / "flow_short.pkl").write_bytes(pickle.dumps(flow[:210]))
    with pytest.raises(ValueError, match="rgb.pkl has 214 frames but .*flow_short.pkl has 210"):
        load_official_bninception(tmp_path / "rgb.pkl", tmp_path / "flow_short.pkl")


# --- avgen prepare --------------------------------------------------------------------------------


def test_prepare_caches_resnet_features_of_the_toy_set(toy_root, tmp_path, capsys):
    from shared.prepare import main

    cache = tmp_path / "cache"
    args = ["--dataset", "vas", "--root", str(toy_root / "vas"), "--features", "mel,resnet50",
            "--cache-dir", str(cache), "--workers", "0", "--shard", "0/12", "--duration", "2",
            "--resnet-arch", "resnet18", "--resnet-weights", "none", "--frame-size", "16", "--device", "cpu"]  # fmt: skip
    main(args)
    assert "skipped 0 of 5 clips" in capsys.readouterr().out
    (resnet_dir,) = (cache / "vas").glob("resnet50-*")
    assert len(list((cache / "vas").glob("mel-*/*/*.npy"))) == 5
    params = json.loads((resnet_dir / "params.json").read_text())
    assert (
        params["arch"] == "resnet18" and params["weights"] == "random(seed=0)" and params["image_size"] == 16
    )
    files = sorted(resnet_dir.glob("*/*.npy"))
    assert len(files) == 5
    short = []
    for path in files:
        feats = np.load(path)
        assert feats.shape == (43, 512) and feats.dtype == np.float32  # 2 s at 21.5 fps
        if int(path.stem[-5:]) % 7 == 6:  # the toy's 1.6 s clips: 34 frames, looped to 43
            short.append(path.parent.name + "/" + path.stem)
            assert np.array_equal(feats[34:], feats[:9]) and not np.array_equal(feats[33], feats[0])
    assert short
    untiled = tiny(loop=False, duration=2.0)  # --no-loop: a short clip keeps the frames it has
    assert untiled.num_frames is None and untiled(toy_root / "vas" / "videos" / f"{short[0]}.mp4").shape == (
        34,
        512,
    )
    with pytest.raises(SystemExit):
        main([*args[:4], "--features", "mel,resnet5"])
    assert "unknown features ['resnet5']" in capsys.readouterr().err


def test_melception_inputs_resample_then_take_specvqgans_mel():
    import torchaudio

    from shared.audio import MelFrontEnd
    from shared.encoders import melception_inputs

    wave = torch.randn(2, 16000) * 0.1
    by_hand = MelFrontEnd.from_preset("specvqgan")(torchaudio.functional.resample(wave, 16000, 22050))
    ours = melception_inputs(wave, 16000)
    assert ours.shape == (2, 80, 1 + 22050 // 256)
    assert torch.equal(ours, by_hand)
    assert torch.equal(
        melception_inputs(torch.zeros(1, 22050), 22050), torch.zeros(1, 80, 87)
    )  # no resampling
