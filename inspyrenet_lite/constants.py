"""Numbers and names every layer shares, defined once, below everything else (no imports of the package)."""

from __future__ import annotations

#: ImageNet statistics the backbones were trained with (inputs are normalised with them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The network's total stride: input sides must be positive multiples of it.
STRIDE = 32

#: Inference precisions (``fp16`` only on a GPU; ``int8`` only in ONNX Runtime, on the CPU).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Training precisions (autocast; int8 is an inference-only graph).
TRAINING_PRECISIONS = ("fp32", "fp16", "bf16")

#: Image files that folders are searched for (the CLI, training data, evaluation).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".pbm"}
)

#: Video files the video pipeline reads.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"})
