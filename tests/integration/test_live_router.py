"""The live system end to end: Open Inference Protocol over Ray Serve, the digits app, feedback,
errors, spill to a local function. One `hybridserve run` serves the whole module (conftest)."""
import base64
import json

import numpy as np
import pytest

from serving import digits, images
from serving.oip import encode_infer_request, parse_infer_response

pytestmark = pytest.mark.live

VARIANTS = {"digits-small", "digits-medium", "digits-large"}


@pytest.fixture(scope="module")
def samples():
    return digits.test_samples()


def _png_body(x, request_id, parameters=None):
    doc = {"id": request_id, "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                         "data": [base64.b64encode(images.encode_png(x)).decode()]}]}
    if parameters:
        doc["parameters"] = parameters
    return doc


def test_health_and_metadata(live):
    assert live.get_json("/v2/health/live") == (200, {"live": True})
    assert live.get_json("/v2/health/ready") == (200, {"ready": True})
    status, meta = live.get_json("/v2")
    assert status == 200 and meta["name"] == "hybridserve" and "binary_tensor_data" in meta["extensions"]
    status, model = live.get_json("/v2/models/digits")
    assert status == 200 and model["parameters"]["slo_ms"] == 200
    assert {"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]} in model["inputs"]
    assert live.get_json("/v2/models/digits-large/ready")[0] == 200


def test_infer_digits_json_then_feedback(live, samples):
    x, y = samples
    status, doc = live.post_json("/v2/models/digits/infer", _png_body(x[0], "it-json-1"))
    assert status == 200, doc
    assert doc["id"] == "it-json-1" and doc["model_name"] == "digits"
    p = doc["parameters"]
    assert p["variant"] in VARIANTS and p["backend"] == "vm" and p["latency_ms"] > 0
    assert isinstance(p["cold_start"], bool)
    ids = {o["name"]: o for o in doc["outputs"]}["class_ids"]
    assert ids["shape"] == [1, 5] and len(set(ids["data"])) == 5

    status, fb = live.post_json("/feedback", {"id": "it-json-1", "label": int(y[0])})
    assert status == 200 and fb["correct"] == (ids["data"][0] == int(y[0]))
    # The label was consumed: a second one for the same request is refused, naming the field.
    status, err = live.post_json("/feedback", {"id": "it-json-1", "label": int(y[0])})
    assert status == 404 and err["error"].startswith("id:")


def test_infer_variant_binary_pixels_is_accurate(live, samples):
    x, y = samples
    body, headers = encode_infer_request({"input": x[:32]}, request_id="it-bin-1")
    status, h, out = live.request("POST", "/v2/models/digits-large/infer", body, headers)
    assert status == 200, out[:300]
    resp = parse_infer_response(out, h.get("Inference-Header-Content-Length"))
    assert resp.id == "it-bin-1" and resp.parameters["variant"] == "digits-large"
    # A standing variant (min_replicas 1) runs in the router by default (serving.head_in_process),
    # loaded at start: its answers say "vm" and are never a cold start.
    p = resp.parameters
    assert p["backend"] == "vm" and p["cold_start"] is False
    assert p["target"] == "head" or p["target"].startswith("vm-")
    top1 = resp.output("class_ids").data[:, 0]
    assert (top1 == y[:32]).mean() >= 0.85  # a trained model, not an initialisation


def test_tritonclient_http(live, samples):
    httpclient = pytest.importorskip("tritonclient.http")
    x, y = samples
    client = httpclient.InferenceServerClient(live.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("digits")
    inp = httpclient.InferInput("input", [4, 1, 8, 8], "FP32")
    inp.set_data_from_numpy(x[:4].astype(np.float32), binary_data=True)
    outputs = [httpclient.InferRequestedOutput("class_ids", binary_data=True)]
    result = client.infer("digits", [inp], outputs=outputs, request_id="it-triton-1")
    ids = result.as_numpy("class_ids")
    assert ids.shape == (4, 5)
    assert result.get_response()["id"] == "it-triton-1"
    assert result.get_response()["parameters"]["variant"] in VARIANTS


def test_bad_requests_name_the_field(live, samples):
    x, _ = samples
    status, err = live.post_json("/v2/models/digits/infer", b"{not json")
    assert status == 400 and err["error"].startswith("body:")
    status, err = live.post_json("/v2/models/digits/infer", {"inputs": 3})
    assert status == 400 and err["error"].startswith("inputs:")
    doc = {"inputs": [{"name": "input", "shape": [1, 1, 8, 7], "datatype": "FP32", "data": [0.0] * 56}]}
    status, err = live.post_json("/v2/models/digits-small/infer", doc)
    assert status == 400 and err["error"].startswith("inputs[0].shape:")
    doc = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                       "data": [base64.b64encode(b"not an image").decode()]}]}
    status, err = live.post_json("/v2/models/digits/infer", doc)
    assert status == 400 and err["error"].startswith("inputs[0].data[0]:")
    status, err = live.post_json("/v2/models/digits/infer", _png_body(x[0], "x", {"min_accuracy": 0.999}))
    assert status == 422 and "min_accuracy" in err["error"]
    status, err = live.post_json("/v2/models/digits/infer", b"x" * (1024 * 1024 + 1))
    assert status == 413 and err["error"].startswith("body:")
    # The server is unaffected.
    assert live.post_json("/v2/models/digits/infer", _png_body(x[1], "after-errors"))[0] == 200


def test_unknown_model_is_404(live, samples):
    x, _ = samples
    status, err = live.post_json("/v2/models/no-such-model/infer", _png_body(x[0], "u"))
    assert status == 404 and "no-such-model" in err["error"]
    assert live.get_json("/v2/models/no-such-model")[0] == 404
    assert live.get_json("/v2/models/no-such-model/ready")[0] == 404


def test_feedback_validation(live):
    assert live.post_json("/feedback", {"label": 3})[0] == 400
    assert live.post_json("/feedback", {"id": "never-sent", "label": 3})[0] == 404
    status, err = live.post_json("/feedback", {"id": "x", "label": [1]})
    assert status == 400 and err["error"].startswith("label:")


def test_tight_slo_spills_to_a_local_function(live, samples):
    """Once the VM deployment has a measured batch time, a request whose SLO is below it goes
    to a function: the first one is a real cold start (a new worker process loads the model)."""
    x, _ = samples
    assert live.post_json("/v2/models/digits-medium/infer", _png_body(x[2], "warm-vm"))[0] == 200
    status, doc = live.post_json("/v2/models/digits-medium/infer", _png_body(x[3], "spill-1", {"slo_ms": 0.001}))
    assert status == 200, doc
    assert doc["parameters"]["backend"] == "function" and doc["parameters"]["cold_start"] is True
    status, doc = live.post_json("/v2/models/digits-medium/infer", _png_body(x[4], "spill-2", {"slo_ms": 0.001}))
    assert status == 200 and doc["parameters"]["backend"] == "function" and doc["parameters"]["cold_start"] is False
    status, st = live.get_json("/status")
    fn = st["functions"]["digits-medium"]
    assert fn["invocations"] >= 2 and fn["cold_starts"] == 1 and fn["instances"] == 1


def test_status_apps_and_metrics(live):
    status, apps = live.get_json("/apps")
    assert status == 200 and [a["name"] for a in apps["apps"]] == ["digits"]
    assert {v["name"] for v in apps["variants"]} == VARIANTS
    status, st = live.get_json("/status")
    assert status == 200 and set(st["apps"]["digits"]["variants"]) == VARIANTS
    assert set(st["vm_targets"]) == VARIANTS and all("head" in t for t in st["vm_targets"].values())
    status, _, body = live.request("GET", "/metrics")
    assert status == 200 and b"hybridserve_requests_total" in body
    assert json.loads(live.request("GET", "/openapi.json")[2])["info"]["title"] == "hybridserve"
