"""The load generator's pure parts (schedule, the gRPC request and response, argument errors) and
its gRPC transport against an in-process KServe v2 server implementing the real service."""
import asyncio

import numpy as np
import pytest

from controller.cli import main
from serving import grpc_v2, oip
from controller.live.loadgen import (GRPC_APPLICATION, LoadgenError, grpc_request, grpc_response_params,
                                     parse_grpc_target, run_load, schedule)


def test_schedule_spreads_each_second_evenly():
    np.testing.assert_allclose(schedule(np.array([2, 0, 1])), [0.25, 0.75, 2.5])
    assert schedule(np.array([0, 0])).size == 0


@pytest.mark.parametrize("target", ["127.0.0.1:9000", "localhost:1", "[::1]:50051"])
def test_grpc_target_accepted(target):
    assert parse_grpc_target(target) == target


@pytest.mark.parametrize("target", ["127.0.0.1", ":9000", "host:0", "host:70000", "host:port"])
def test_grpc_target_rejected(target):
    with pytest.raises(LoadgenError, match="--grpc-target"):
        parse_grpc_target(target)


def test_grpc_request_is_the_rest_request():
    """What the router parses from the gRPC request: the same tensor, id and parameters."""
    x = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    req = grpc_request("digits", x, "lg-7", {"slo_ms": 150.0})
    parsed = grpc_v2.to_infer_request(req)
    assert parsed.id == "lg-7" and parsed.slo_ms == 150.0 and req.model_name == "digits"
    (inp,) = parsed.inputs
    assert inp.name == "input" and inp.datatype == "FP32" and inp.shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(inp.data, x[None])


def test_grpc_png_request_carries_one_image():
    from serving import images

    x = np.zeros((1, 8, 8), np.float32)
    parsed = grpc_v2.to_infer_request(grpc_request("digits", x, "p-1", payload="png"))
    (inp,) = parsed.inputs
    assert inp.name == "image" and inp.datatype == "BYTES" and inp.data.reshape(-1)[0] == images.encode_png(x)


def test_grpc_response_params_are_plain_values():
    resp = oip.InferResponse(model_name="digits", outputs=[], id="r",
                             parameters={"variant": "digits-small", "backend": "function", "cold_start": True,
                                         "latency_ms": 12.5})
    assert grpc_response_params(grpc_v2.from_infer_response(resp)) == {
        "variant": "digits-small", "backend": "function", "cold_start": True, "latency_ms": 12.5}


@pytest.mark.parametrize("argv, words", [
    (["--grpc-target", "nohost"], "--grpc-target must be host:port"),
    (["--grpc", "--grpc-target", "h:99999"], "--grpc-target must be host:port"),
])
def test_bad_grpc_arguments_exit_2_with_one_line(argv, words, capsys):
    assert main(["loadgen", "--duration-s", "10", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_run_load_over_grpc_reads_the_response_parameters():
    """A real grpc.aio server with the KServe v2 servicer: every request arrives with the
    `application` metadata, its own id and the SLO parameter; the answers' parameters are counted."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    seen = []

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request, context):
            meta = dict(context.invocation_metadata())
            seen.append((request.id, meta.get("application"), grpc_v2.to_infer_request(request).slo_ms))
            if request.id.endswith("-3"):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "no capacity")
            cold = request.id.endswith("-0")
            return grpc_v2.from_infer_response(oip.InferResponse(
                model_name=request.model_name, outputs=[], id=request.id,
                parameters={"variant": "digits-small", "backend": "function" if cold else "vm", "cold_start": cold}))

    async def go():
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await run_load("http://127.0.0.1:1", "digits", schedule(np.array([4, 2])), 1000.0,
                                  parameters={"slo_ms": 1000.0}, feedback=False, grpc_target=f"127.0.0.1:{port}")
        finally:
            await server.stop(None)

    res = asyncio.run(go())
    assert res.scheduled == 6 and len(res.latencies_ms) == 5 and res.errors == {"grpc UNAVAILABLE": 1}
    assert res.backends == {"vm": 4, "function": 1} and res.cold_starts == 1 and res.variants == {"digits-small": 5}
    assert len({rid for rid, _, _ in seen}) == 6
    assert all(app == GRPC_APPLICATION and slo == 1000.0 for _, app, slo in seen)
