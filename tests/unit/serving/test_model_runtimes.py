"""Model runtimes: real mxnet and onnxruntime inference on small batches."""
import os

import numpy as np
import pytest

from serving.runtimes import LoadedModel, UnknownVariant, list_variants, load_model, spec_of
from serving.runtimes import mxnet_runtime


def _batch(shape, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + tuple(shape)).astype(np.float32)


def _close(a, b, rel=1e-4):
    # Untrained nets give logits of very different scales; compare relative to the largest.
    return np.allclose(a, b, rtol=rel, atol=rel * float(np.abs(a).max()))


@pytest.fixture(scope="module")
def squeezenet():
    return load_model("squeezenet")


def test_squeezenet_predicts_probabilities(squeezenet):
    assert isinstance(squeezenet, LoadedModel)
    assert (squeezenet.variant, squeezenet.runtime, squeezenet.input_shape) == ("squeezenet", "mxnet", (3, 224, 224))
    assert squeezenet.num_classes == len(squeezenet.labels) == 1000
    probs = squeezenet.predict(_batch(squeezenet.input_shape, n=3))
    assert probs.shape == (3, 1000) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    logits = squeezenet.logits(_batch(squeezenet.input_shape, n=3))
    assert np.abs(logits).max() > 0, "an all-zero network would make every comparison below vacuous"
    ids, scores = squeezenet.top_k(_batch(squeezenet.input_shape, n=3), k=4)
    assert ids.shape == scores.shape == (3, 4)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert squeezenet.weights == "init:seed=0"


def test_deterministic_init_gives_identical_outputs(squeezenet):
    again = load_model("squeezenet")
    x = _batch(squeezenet.input_shape)
    np.testing.assert_array_equal(squeezenet.logits(x), again.logits(x))
    other_seed = load_model("squeezenet", seed=3)
    assert not _close(squeezenet.logits(x), other_seed.logits(x))


def test_predict_rejects_a_wrong_shape(squeezenet):
    with pytest.raises(ValueError, match="224"):
        squeezenet.predict(np.zeros((1, 3, 32, 32), np.float32))


def test_weights_file_round_trip(tmp_path, squeezenet):
    spec = spec_of("squeezenet")
    net, _ = mxnet_runtime.build_net(spec, seed=7)  # stands in for real trained weights
    path = str(tmp_path / "squeezenet.params")
    net.save_parameters(path)
    loaded = load_model("squeezenet", weights_path=path)
    import mxnet as mx

    x = _batch(spec.input_shape)
    expected = net(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(loaded.logits(x), expected, rtol=1e-5, atol=1e-7)
    assert loaded.weights == f"file:{path}"
    assert not _close(loaded.logits(x), squeezenet.logits(x))


def test_weights_of_another_architecture_are_refused(tmp_path):
    net, _ = mxnet_runtime.build_net(spec_of("digits-medium"))
    path = str(tmp_path / "wrong.params")
    net.save_parameters(path)
    with pytest.raises(Exception):
        load_model("squeezenet", weights_path=path)


def test_onnxruntime_matches_mxnet(squeezenet, serving_cache):
    onnx_model = load_model("squeezenet", runtime="onnxruntime")
    assert onnx_model.runtime == "onnxruntime"
    exported = [f for f in os.listdir(os.path.join(serving_cache, "onnx")) if f.startswith("squeezenet-")]
    assert exported, "the .onnx export is cached"
    for n in (1, 3):  # the batch dimension is dynamic
        x = _batch(squeezenet.input_shape, n=n, seed=n)
        assert _close(onnx_model.logits(x), squeezenet.logits(x))
        np.testing.assert_array_equal(onnx_model.top_k(x, 1)[0], squeezenet.top_k(x, 1)[0])


def test_onnxruntime_follows_a_weights_file(tmp_path):
    spec = spec_of("digits-large")
    net, _ = mxnet_runtime.build_net(spec, seed=11)
    path = str(tmp_path / "digits.params")
    net.save_parameters(path)
    a = load_model("digits-large", weights_path=path)
    b = load_model("digits-large", runtime="onnxruntime", weights_path=path)
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    assert _close(a.logits(x), b.logits(x))


def test_unknown_variant_and_runtime():
    with pytest.raises(UnknownVariant, match="squeezenet"):
        load_model("resnet9000")
    with pytest.raises(ValueError, match="onnxruntime"):
        load_model("squeezenet", runtime="tensorrt")
    with pytest.raises(FileNotFoundError):
        load_model("squeezenet", weights_path="/nonexistent/weights.params")


def test_labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"digit {d}\n" for d in range(10)))
    model = load_model("digits-small", labels_path=str(path))
    assert model.labels[3] == "digit 3"
    path.write_text("only one\n")
    with pytest.raises(ValueError, match="1 labels"):
        load_model("digits-small", labels_path=str(path))


def test_catalog_variants_are_servable():
    for name in ("squeezenet", "mobilenet", "resnet18", "resnet50", "inception", "vgg16"):
        assert name in list_variants()
    assert spec_of("inception").input_shape == (3, 299, 299)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mobilenet", "resnet18", "resnet50", "inception", "vgg16"])
def test_every_zoo_variant_runs_on_both_runtimes(variant):
    mx_model = load_model(variant)
    x = _batch(mx_model.input_shape, n=2)
    probs = mx_model.predict(x)
    assert probs.shape == (2, 1000)
    ort_model = load_model(variant, runtime="onnxruntime")
    assert _close(ort_model.logits(x), mx_model.logits(x), rel=1e-3)
