"""Infer request codec: JSON and binary round trips, and every malformed field named."""
import json

import numpy as np
import pytest

from serving.oip import (CLASSIFICATION_OUTPUTS, HEADER_LENGTH, InvalidInput, encode_infer_request,
                         parse_infer_request)


def _tensors():
    blobs = np.empty(2, dtype=object)
    blobs[:] = [b"\x89PNG\x00\xff raw", b""]
    return {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "f16": np.array([[0.5, -2.0]], dtype=np.float16),
        "f64": np.array([1e-300, 3.5]),
        "i32": np.array([-5, 7], dtype=np.int32),
        "i64": np.array([[2**40]], dtype=np.int64),
        "u8": np.array([0, 255], dtype=np.uint8),
        "flag": np.array([True, False, True]),
        "blob": blobs,
    }


def _parse(body, headers, **kw):
    return parse_infer_request(body, headers.get(HEADER_LENGTH), **kw)


def test_binary_round_trip_of_every_datatype():
    tensors = _tensors()
    body, headers = encode_infer_request(tensors, request_id="abc", parameters={"slo_ms": 150, "min_accuracy": 0.7})
    assert headers["Content-Type"] == "application/octet-stream"
    req = _parse(body, headers)
    assert req.id == "abc" and req.slo_ms == 150.0 and req.min_accuracy == 0.7 and req.top_k is None
    got = {t.name: t for t in req.inputs}
    assert [t.datatype for t in req.inputs] == ["FP32", "FP16", "FP64", "INT32", "INT64", "UINT8", "BOOL", "BYTES"]
    for name, array in tensors.items():
        assert got[name].binary and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name].data, array)


def test_json_round_trip_base64_encodes_bytes():
    tensors = {k: v for k, v in _tensors().items() if k != "f16"}
    body, headers = encode_infer_request(tensors, binary=False, parameters={"top_k": 3})
    assert HEADER_LENGTH not in headers
    req = _parse(body, headers)
    assert req.top_k == 3
    for t in req.inputs:
        assert not t.binary
        if t.datatype != "BYTES":
            np.testing.assert_allclose(t.data, tensors[t.name])
    import base64

    blob = next(t for t in req.inputs if t.name == "blob")
    assert [base64.b64decode(x) for x in blob.data] == list(tensors["blob"])


def test_nested_json_data_and_requested_outputs():
    doc = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]}],
           "outputs": [{"name": "scores", "parameters": {"binary_data": True, "classification": 3}},
                       {"name": "labels"}],
           "parameters": {"binary_data_output": True, "custom": "kept"}}
    req = parse_infer_request(json.dumps(doc).encode(), output_names=CLASSIFICATION_OUTPUTS)
    np.testing.assert_array_equal(req.inputs[0].data, [[1, 2], [3, 4.5]])
    assert [(o.name, o.binary, o.class_count) for o in req.outputs] == [("scores", True, 3), ("labels", None, 0)]
    assert req.binary_data_output and req.parameters["custom"] == "kept"


def _doc(**changes):
    doc = {"id": "1", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
    for key, value in changes.items():
        if key.startswith("input_"):
            doc["inputs"][0][key[len("input_"):]] = value
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"),
    (b"\xff\xfe", "body"),
    (b"[1, 2]", "body"),
    (_doc(id=5), "id"),
    (_doc(inputs=[]), "inputs"),
    (_doc(inputs=["x"]), "inputs[0]"),
    (_doc(input_name=""), "inputs[0].name"),
    (_doc(input_shape=[1, -2]), "inputs[0].shape"),
    (_doc(input_shape="1x2"), "inputs[0].shape"),
    (_doc(input_datatype="FP8"), "inputs[0].datatype"),
    (_doc(input_shape=[1, 3]), "inputs[0].data"),
    (_doc(input_data=[1.0, "two"]), "inputs[0].data"),
    (_doc(input_data=[1.0, None]), "inputs[0].data"),
    (_doc(input_data="1,2"), "inputs[0].data"),
    (_doc(input_datatype="INT32", input_data=[1.5, 2]), "inputs[0].data"),
    (_doc(input_datatype="UINT8", input_data=[1, 300]), "inputs[0].data"),
    (_doc(input_datatype="BOOL", input_data=[1, 0]), "inputs[0].data"),
    (_doc(input_datatype="BYTES", input_data=[1, 2]), "inputs[0].data"),
    (_doc(input_data=None) .replace(b'"data": null', b'"other": 1'), "inputs[0].data"),
    (_doc(input_parameters={"binary_data_size": 8}), "inputs[0].data"),
    (_doc(parameters=[1]), "parameters"),
    (_doc(parameters={"slo_ms": -5}), "parameters.slo_ms"),
    (_doc(parameters={"slo_ms": "fast"}), "parameters.slo_ms"),
    (_doc(parameters={"min_accuracy": 1.5}), "parameters.min_accuracy"),
    (_doc(parameters={"top_k": 2.5}), "parameters.top_k"),
    (_doc(parameters={"binary_data_output": "yes"}), "parameters.binary_data_output"),
    (_doc(outputs={"name": "scores"}), "outputs"),
    (_doc(outputs=[{"name": "logits"}]), "outputs[0].name"),
    (_doc(outputs=[{"name": "scores", "parameters": {"binary_data": 1}}]), "outputs[0].parameters.binary_data"),
    (_doc(outputs=[{"name": "scores", "parameters": {"classification": -1}}]),
     "outputs[0].parameters.classification"),
])
def test_malformed_json_names_the_field(body, field):
    with pytest.raises(InvalidInput) as err:
        parse_infer_request(body, output_names=CLASSIFICATION_OUTPUTS)
    assert err.value.field == field, err.value
    payload = json.loads(err.value.to_json())
    assert set(payload) == {"error"} and payload["error"].startswith(field + ":")


def test_binary_data_without_the_header_is_refused():
    body, _ = encode_infer_request({"x": np.zeros(2, np.float32)})
    with pytest.raises(InvalidInput) as err:
        parse_infer_request(body)  # the header length was dropped: the body is not plain JSON
    assert err.value.field == "body"


def _binary(header_doc, raw):
    header = json.dumps(header_doc).encode()
    return header + raw, len(header)


@pytest.mark.parametrize("header_doc, raw, field", [
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
     b"\0" * 4, "inputs[0].parameters.binary_data_size"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]},
     b"\0" * 8, "inputs[0].parameters.binary_data_size"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": -8}}]},
     b"\0" * 8, "inputs[0].parameters.binary_data_size"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]},
     b"\0" * 12, "body"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2],
                  "parameters": {"binary_data_size": 8}}]}, b"\0" * 8, "inputs[0].data"),
    ({"inputs": [{"name": "b", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}]},
     b"\x01\0\0\0a\x09\0\0\0", "inputs[0].parameters.binary_data_size"),
    ({"inputs": [{"name": "b", "shape": [1], "datatype": "BOOL", "parameters": {"binary_data_size": 1}}]},
     b"\x07", "inputs[0].data"),
])
def test_malformed_binary_names_the_field(header_doc, raw, field):
    body, n = _binary(header_doc, raw)
    with pytest.raises(InvalidInput) as err:
        parse_infer_request(body, n)
    assert err.value.field == field, err.value


@pytest.mark.parametrize("length", ["abc", "0", "99999"])
def test_bad_header_length_is_named(length):
    with pytest.raises(InvalidInput) as err:
        parse_infer_request(_doc(), length)
    assert err.value.field == HEADER_LENGTH
