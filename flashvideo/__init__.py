"""FlashVideo: swift text-to-video with a RetNet decoder, serial-number tokens and
redundant-free frame interpolation."""
from .config import FlashVideoConfig
from .pipeline import FlashVideoPipeline, FrameEvent, Video

__all__ = ["FlashVideoConfig", "FlashVideoPipeline", "FrameEvent", "Video"]
__version__ = "0.1.0"
