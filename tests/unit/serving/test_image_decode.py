"""Image decoding to model inputs, and its errors."""
import io

import numpy as np
import pytest
from PIL import Image

from serving import images
from serving.oip import InvalidInput


def _encoded(color, size=(40, 30), fmt="JPEG", mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


def test_jpeg_is_resized_and_imagenet_normalised():
    out = images.decode(_encoded((255, 0, 0)), (3, 224, 224))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    # A red pixel: R = (1 - 0.485) / 0.229, G = (0 - 0.456) / 0.224, B = (0 - 0.406) / 0.225.
    expected = np.array([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    np.testing.assert_allclose(out[:, 100, 100], expected, atol=0.05)  # JPEG is lossy


def test_png_to_inception_size_and_grayscale_to_three_channels():
    out = images.decode(_encoded(128, fmt="PNG", mode="L"), (3, 299, 299))
    assert out.shape == (3, 299, 299)
    np.testing.assert_allclose(out[:, 0, 0], (128 / 255 - images.IMAGENET_MEAN) / images.IMAGENET_STD, rtol=1e-5)


def test_one_channel_models_get_unit_range():
    out = images.decode(_encoded(255, size=(8, 8), fmt="PNG", mode="L"), (1, 8, 8))
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out, 1.0)


@pytest.mark.parametrize("data", [b"", b"not an image at all", _encoded((1, 2, 3), fmt="PNG")[:40]])
def test_undecodable_bytes_raise_invalid_input_naming_the_field(data):
    with pytest.raises(InvalidInput) as err:
        images.decode(data, (3, 224, 224), field="inputs[0].data[1]")
    assert err.value.field == "inputs[0].data[1]"
    assert "inputs[0].data[1]" in err.value.to_dict()["error"]


def test_encode_png_rejects_non_single_channel():
    with pytest.raises(ValueError):
        images.encode_png(np.zeros((3, 8, 8), np.float32))
