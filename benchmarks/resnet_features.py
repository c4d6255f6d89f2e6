"""Time per-frame ResNet feature extraction (`shared.encoders.ResNetFrameFeatures`) for one clip.

    python benchmarks/resnet_features.py                      # a 2 s toy clip and a 10 s VAS demo clip
    python benchmarks/resnet_features.py --threads 1 --device cuda

Settings: the paper's (ResNet-50, shorter side 256, crop 224, 2048-d) and a toy one (ResNet-18, crop 64,
512-d); weights are random (the time does not depend on them and nothing is downloaded). A warm-up
batch runs first, so one-off kernel set-up is not counted. Prints one line per setting and clip: frames,
decoding seconds, network seconds, total, ms per frame.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from shared.data.toy import generate_toy_dataset
from shared.encoders import ResNetFrameFeatures

REPO = Path(__file__).resolve().parents[1]
DEMO_CLIP = (
    REPO.parent / "shared" / "data" / "specvqgan-demo" / "vas" / "videos" / "hammer" / "video_00323.mp4"
)
SETTINGS = {
    "paper (resnet50, 224)": dict(arch="resnet50", image_size=224),
    "toy (resnet18, 64)": dict(arch="resnet18", image_size=64),
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_clip(
    model: ResNetFrameFeatures, path: Path, duration: float, device: str
) -> tuple[int, float, float]:
    model.duration = duration
    start = time.perf_counter()
    frames = model.load_frames(path)
    decoded = time.perf_counter()
    feats = model.embed(frames)
    sync(device)
    return feats.shape[0], decoded - start, time.perf_counter() - decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--real-clip", type=Path, default=DEMO_CLIP, help="a 10 s video")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        toy = generate_toy_dataset(tmp, seed=0, n_train=1, n_valid=1, n_test=1)
        toy_clip = next(
            p for p in sorted((toy / "vas" / "videos").glob("*/*.mp4")) if int(p.stem[-5:]) % 7 != 6
        )
        clips = [("toy 2 s", toy_clip, 2.0), ("real 10 s", args.real_clip, 10.0)]
        print(f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch_size}")
        for name, kwargs in SETTINGS.items():
            model = ResNetFrameFeatures(**kwargs, batch_size=args.batch_size).to(args.device)
            warm = torch.randint(0, 256, (args.batch_size, 3, model.resize, model.resize), dtype=torch.uint8)
            model.embed(warm)
            for clip_name, path, duration in clips:
                n, dec, net = time_clip(model, path, duration, args.device)
                print(
                    f"{name:24s} {clip_name:10s} {n:4d} frames: decode {dec:6.2f} s, network {net:7.2f} s, "
                    f"total {dec + net:7.2f} s ({1000 * (dec + net) / n:6.1f} ms/frame)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
