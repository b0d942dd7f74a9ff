"""Response building and encoding (JSON and binary), metadata bodies."""
import json

import numpy as np
import pytest

from serving.oip import (HEADER_LENGTH, InferRequest, InvalidInput, RequestedOutput, classification_response,
                         encode_infer_response, health, model_metadata, parse_infer_request, parse_infer_response,
                         server_metadata)

LABELS = [f"class-{i}" for i in range(6)]
PROBS = np.array([[0.1, 0.5, 0.05, 0.2, 0.1, 0.05],
                  [0.6, 0.1, 0.1, 0.1, 0.05, 0.05]], dtype=np.float32)


def _request(**kw):
    return InferRequest(inputs=[], **kw)


def _round_trip(resp):
    body, headers = encode_infer_response(resp)
    return parse_infer_response(body, headers.get(HEADER_LENGTH)), headers


def test_default_outputs_in_json_echo_id_and_parameters():
    resp = classification_response(_request(id="q-7", top_k=3), "image-classify", PROBS, LABELS,
                                   parameters={"variant": "resnet18", "backend": "vm",
                                               "latency_ms": np.float64(12.5), "cold_start": False})
    back, headers = _round_trip(resp)
    assert headers["Content-Type"] == "application/json"
    assert (back.model_name, back.model_version, back.id) == ("image-classify", "1", "q-7")
    assert back.parameters == {"variant": "resnet18", "backend": "vm", "latency_ms": 12.5, "cold_start": False}
    assert [o.name for o in back.outputs] == ["class_ids", "labels", "scores"]
    np.testing.assert_array_equal(back.output("class_ids").data, [[1, 3, 0], [0, 1, 2]])
    assert back.output("labels").data[0].tolist() == [b"class-1", b"class-3", b"class-0"]
    np.testing.assert_allclose(back.output("scores").data, [[0.5, 0.2, 0.1], [0.6, 0.1, 0.1]])


def test_top_k_defaults_to_five_and_is_capped_by_classes():
    assert classification_response(_request(), "m", PROBS, LABELS).output("class_ids").shape == (2, 5)
    assert classification_response(_request(top_k=50), "m", PROBS, LABELS).output("scores").shape == (2, 6)


def test_binary_outputs_follow_the_json_header():
    req = _request(outputs=[RequestedOutput("scores", binary=True), RequestedOutput("labels", binary=True),
                            RequestedOutput("class_ids", binary=False)], top_k=2)
    resp = classification_response(req, "m", PROBS, LABELS)
    body, headers = encode_infer_response(resp)
    n = int(headers[HEADER_LENGTH])
    header = json.loads(body[:n])
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in header["outputs"]]
    assert sizes[0] == 2 * 2 * 4 and sizes[2] is None and "data" in header["outputs"][2]
    assert len(body) - n == sizes[0] + sizes[1]
    back = parse_infer_response(body, n)
    np.testing.assert_allclose(back.output("scores").data, [[0.5, 0.2], [0.6, 0.1]])
    assert back.output("labels").data[1].tolist() == [b"class-0", b"class-1"]


def test_binary_data_output_makes_every_output_binary_unless_told_otherwise():
    req = _request(binary_data_output=True)
    resp = classification_response(req, "m", PROBS, LABELS)
    assert all(o.binary for o in resp.outputs)
    back, headers = _round_trip(resp)
    assert HEADER_LENGTH in headers and back.output("class_ids").data[0, 0] == 1


def test_triton_classification_extension():
    req = _request(outputs=[RequestedOutput("scores", class_count=2)])
    resp = classification_response(req, "m", PROBS, LABELS)
    out = resp.output("scores")
    assert out.datatype == "BYTES" and out.shape == (2, 2)
    assert out.data[0, 0] == b"0.500000:1:class-1"


def test_full_probabilities_on_request():
    resp = classification_response(_request(outputs=[RequestedOutput("probabilities")]), "m", PROBS, LABELS)
    back, _ = _round_trip(resp)
    np.testing.assert_allclose(back.output("probabilities").data, PROBS)


def test_unknown_output_is_named():
    with pytest.raises(InvalidInput) as err:
        classification_response(_request(outputs=[RequestedOutput("scores"), RequestedOutput("logits")]),
                                "m", PROBS, LABELS)
    assert err.value.field == "outputs[1].name"


def test_server_error_body_raises_on_the_client():
    with pytest.raises(ValueError, match="inputs"):
        parse_infer_response(InvalidInput("inputs", "bad").to_json())


def test_parsed_request_drives_the_response():
    body = json.dumps({"id": "x1", "inputs": [{"name": "i", "shape": [1], "datatype": "FP32", "data": [0]}],
                       "outputs": [{"name": "labels", "parameters": {"binary_data": True}}]}).encode()
    resp = classification_response(parse_infer_request(body), "m", PROBS[:1], LABELS)
    back, headers = _round_trip(resp)
    assert back.id == "x1" and [o.name for o in back.outputs] == ["labels"] and HEADER_LENGTH in headers


def test_metadata_bodies():
    server = server_metadata(version="9.9")
    assert server["name"] == "hybridserve" and "binary_tensor_data" in server["extensions"]
    meta = model_metadata("image-classify", (3, 224, 224), 1000, parameters={"slo_ms": 300})
    assert meta["name"] == "image-classify" and meta["versions"] == ["1"]
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"image": [-1], "input": [-1, 3, 224, 224]}
    assert {o["name"] for o in meta["outputs"]} >= {"class_ids", "labels", "scores"}
    json.dumps(meta)
    assert health() == {"live": True} and health(ready=False) == {"ready": False}
