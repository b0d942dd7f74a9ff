"""From a parsed request to a model batch: images and pixel tensors, and their errors."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from serving import images
from serving.oip import HEADER_LENGTH, InvalidInput, batch_from_request, encode_infer_request, parse_infer_request

SHAPE = (3, 32, 32)


def _png(color=(10, 200, 30)):
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format="PNG")
    return buf.getvalue()


def _images(*blobs):
    arr = np.empty(len(blobs), dtype=object)
    arr[:] = list(blobs)
    return arr


def _parse(tensors, binary=True):
    body, headers = encode_infer_request(tensors, binary=binary)
    return parse_infer_request(body, headers.get(HEADER_LENGTH))


@pytest.mark.parametrize("binary", [True, False])
def test_images_binary_or_base64_decode_to_the_same_batch(binary):
    batch = batch_from_request(_parse({"image": _images(_png(), _png((0, 0, 0)))}, binary), SHAPE)
    assert batch.shape == (2,) + SHAPE and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], images.decode(_png(), SHAPE))


def test_triton_style_n_by_1_image_tensor():
    batch = batch_from_request(_parse({"image": _images(_png()).reshape(1, 1)}), SHAPE)
    assert batch.shape == (1,) + SHAPE


def test_pixel_tensors_with_or_without_batch_dimension():
    x = np.random.default_rng(0).random((2,) + SHAPE, dtype=np.float32)
    np.testing.assert_array_equal(batch_from_request(_parse({"input": x}), SHAPE), x)
    np.testing.assert_array_equal(batch_from_request(_parse({"input": x[0]}, binary=False), SHAPE), x[:1])
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(batch_from_request(_parse({"input": x64}), SHAPE), x)


def _field_of(request_tensors, binary=True, **kw):
    with pytest.raises(InvalidInput) as err:
        batch_from_request(_parse(request_tensors, binary), SHAPE, **kw)
    return err.value.field


def test_errors_name_the_field():
    x = np.zeros((1,) + SHAPE, np.float32)
    assert _field_of({"a": x, "b": x}) == "inputs"
    assert _field_of({"input": np.zeros((1, 3, 16, 16), np.float32)}) == "inputs[0].shape"
    assert _field_of({"input": np.zeros((0,) + SHAPE, np.float32)}) == "inputs[0].shape"
    assert _field_of({"input": np.zeros((1,) + SHAPE, np.int32)}) == "inputs[0].datatype"
    assert _field_of({"input": np.full((1,) + SHAPE, np.nan, np.float32)}) == "inputs[0].data"
    assert _field_of({"image": _images(_png(), b"garbage")}) == "inputs[0].data[1]"
    assert _field_of({"image": _images(_png()).reshape(1, 1, 1)}) == "inputs[0].shape"
    assert _field_of({"image": _images(_png(), _png(), _png())}, max_batch_size=2) == "inputs[0].shape"


def test_json_image_that_is_not_base64_is_named():
    body = json.dumps({"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                                   "data": [base64.b64encode(_png()).decode(), "%%% not base64"]}]}).encode()
    with pytest.raises(InvalidInput) as err:
        batch_from_request(parse_infer_request(body), SHAPE)
    assert err.value.field == "inputs[0].data[1]" and "base64" in err.value.message
