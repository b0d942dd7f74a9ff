"""Decode an encoded image (JPEG, PNG, anything Pillow reads) into one model input sample.

3-channel models get RGB resized to H×W and normalised with the ImageNet mean and standard
deviation (what gluon model-zoo networks expect); 1-channel models (digits) get grayscale in
[0, 1] with bright ink, the range they were trained on. Undecodable bytes raise `InvalidInput`.
"""
from __future__ import annotations

import io

import numpy as np

from serving.oip.errors import InvalidInput

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Decompression-bomb guard: a small file may declare a huge canvas; refuse before allocating.
MAX_PIXELS = 50_000_000


def decode(data: bytes, shape: tuple[int, int, int], field: str = "image") -> np.ndarray:
    """Encoded image bytes -> float32 C×H×W for a model whose input sample is `shape` (C, H, W).

    `field` names the request field in the error ("inputs[0].data[2]").
    """
    from PIL import Image, UnidentifiedImageError

    channels, height, width = (int(d) for d in shape)
    if channels not in (1, 3):
        raise ValueError(f"image models take 1 or 3 channels, not {channels}")
    if not data:
        raise InvalidInput(field, "empty image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InvalidInput(field, f"image of {img.width}×{img.height} pixels is too large")
            img = img.convert("RGB" if channels == 3 else "L")
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidInput(field, f"not a decodable image ({type(e).__name__}: {e})") from None
    if channels == 1:
        return pixels[None, :, :]
    return ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).astype(np.float32)


def encode_png(sample: np.ndarray) -> bytes:
    """A 1×H×W sample in [0, 1] (e.g. a digit from `digits.test_samples()`) as PNG bytes.

    What a client would send; the load generator uses it to send real images for the digits app.
    """
    from PIL import Image

    sample = np.asarray(sample)
    if sample.ndim != 3 or sample.shape[0] != 1:
        raise ValueError(f"expected a 1×H×W sample, got shape {sample.shape}")
    pixels = np.clip(np.rint(sample[0] * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
