"""Video decoding: `load_video` (RGB frames at a target fps and size) and `video_info`."""

from shared.video.io import VideoInfo, load_video, video_info

__all__ = ["VideoInfo", "load_video", "video_info"]
