"""Vector quantisation: gradient-trained and EMA codebooks with straight-through gradients, usage stats."""

from shared.vq.quantizer import EMAVectorQuantizer, Quantized, VectorQuantizer, code_statistics, nearest_code
from shared.vq.usage import CodebookUsage

__all__ = [
    "CodebookUsage",
    "EMAVectorQuantizer",
    "Quantized",
    "VectorQuantizer",
    "code_statistics",
    "nearest_code",
]
