"""Video decoding: `load_video` (RGB frames at a target fps and size), `load_image` (a still), `video_info`; `mux_audio` (sound into a video)."""

from shared.video.io import VideoInfo, load_image, load_video, video_info
from shared.video.mux import mux_audio

__all__ = ["VideoInfo", "load_image", "load_video", "mux_audio", "video_info"]
