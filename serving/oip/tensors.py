"""From a parsed infer request to the float32 N×C×H×W batch a model takes.

Two input forms are accepted, one tensor per request:
- images: a BYTES tensor of shape [N] or [N, 1], one encoded JPEG/PNG per element — raw bytes
  with the binary extension, base64 text in a JSON body;
- pixels: an FP32 (or FP16/FP64) tensor of shape [N, C, H, W] or [C, H, W], already
  preprocessed for the model.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np

from serving import images
from serving.oip.errors import InvalidInput
from serving.oip.request import InferRequest

FLOAT_DATATYPES = ("FP16", "FP32", "FP64")


def _image_bytes(item: bytes, from_json: bool, field: str) -> bytes:
    if not from_json:
        return item
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, "a BYTES image in a JSON body must be base64") from None


def batch_from_request(request: InferRequest, input_shape: tuple[int, int, int],
                       max_batch_size: int | None = None) -> np.ndarray:
    """The model batch for `request`, validated against the model's sample shape (C, H, W).

    Raises InvalidInput naming the field: more than one input, a datatype that is neither BYTES
    nor float, a shape that does not match the model, too many samples, an undecodable image.
    """
    if len(request.inputs) != 1:
        raise InvalidInput("inputs", f"expected exactly one input tensor, got {len(request.inputs)}")
    tensor = request.inputs[0]
    where = "inputs[0]"
    sample = tuple(int(d) for d in input_shape)
    if tensor.datatype == "BYTES":
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(f"{where}.shape", f"an image tensor has shape [N] or [N, 1], got {list(tensor.shape)}")
        items = list(tensor.data.reshape(-1))
        n = len(items)
    elif tensor.datatype in FLOAT_DATATYPES:
        shape = tuple(tensor.shape)
        if shape == sample:
            shape = (1,) + sample
        if len(shape) != 4 or shape[1:] != sample:
            raise InvalidInput(f"{where}.shape", f"expected [N, {', '.join(map(str, sample))}] for this model, "
                                                 f"got {list(tensor.shape)}")
        n = shape[0]
    else:
        raise InvalidInput(f"{where}.datatype", f"{tensor.datatype} is not accepted: send BYTES (encoded "
                                                f"images) or {'/'.join(FLOAT_DATATYPES)} (pixels)")
    if n == 0:
        raise InvalidInput(f"{where}.shape", "the batch is empty")
    if max_batch_size is not None and n > max_batch_size:
        raise InvalidInput(f"{where}.shape", f"batch of {n} exceeds the limit of {max_batch_size}")
    if tensor.datatype != "BYTES":
        batch = np.asarray(tensor.data, dtype=np.float32).reshape((n,) + sample)
        if not np.isfinite(batch).all():
            raise InvalidInput(f"{where}.data", "contains NaN or infinity")
        return batch
    out = np.empty((n,) + sample, dtype=np.float32)
    for i, item in enumerate(items):
        field = f"{where}.data[{i}]"
        out[i] = images.decode(_image_bytes(item, not tensor.binary, field), sample, field=field)
    return out
