"""A small random-weight CLIP ViT-B/32 with the real 512-d embedding (the toy configs' stand-in) and bad videos."""

from __future__ import annotations

import av
import numpy as np

from shared.encoders import CLIPEmbeddingFeature

TINY = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def tiny_feature(**kw) -> CLIPEmbeddingFeature:
    return CLIPEmbeddingFeature("ViT-B-32", pretrained=None, **({"model_cfg": TINY} | kw))


def write_video_without_frames(path) -> None:
    """An mp4 whose video stream got no frames (the muxer then drops it) and whose audio is 64 ms of silence."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("h264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for stream, item in ((audio, frame), (audio, None), (video, None)):
            for packet in stream.encode(item):
                container.mux(packet)


def write_video_only_mp4(path) -> None:
    """An mp4 with five 32x32 frames and no audio stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
