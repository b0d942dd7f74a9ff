"""The router's Open Inference Protocol over gRPC: Serve's gRPC proxy routes each KServe v2 RPC
(`inference.GRPCInferenceService`) to the deployment method of the same name, defined here and
mixed into serving.router_app.Router. They share the REST path's work (`_infer`, `_metadata`,
`_standing_loaded`, `_check_key`); errors carry the matching gRPC status code (serving.grpc_v2).
"""
from __future__ import annotations

import time

import grpc

from serving import grpc_v2, oip
from serving.router import VERSION, RequestFailure, UnknownName

_GRPC_AUTH = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}


class GrpcV2Methods:
    """KServe v2 gRPC methods of the Router (they use its core, settings, metrics, api keys)."""

    def ServerLive(self, request):
        return grpc_v2.pb.ServerLiveResponse(live=True)

    def ServerReady(self, request):
        return grpc_v2.pb.ServerReadyResponse(ready=self._standing_loaded(self.core.variants))

    def ModelReady(self, request, grpc_context):
        try:
            a, variant = self.core.resolve(request.name)
        except UnknownName as e:
            grpc_v2.fail(grpc_context, 404, str(e))
            return grpc_v2.pb.ModelReadyResponse(ready=False)
        return grpc_v2.pb.ModelReadyResponse(ready=self._standing_loaded([variant] if variant else a.variants))

    def ServerMetadata(self, request):
        return grpc_v2.server_metadata(oip.server_metadata("hybridserve", VERSION))

    def ModelMetadata(self, request, grpc_context):
        try:
            return grpc_v2.model_metadata(self._metadata(request.name))
        except UnknownName as e:
            grpc_v2.fail(grpc_context, 404, str(e))
            return grpc_v2.pb.ModelMetadataResponse()

    async def ModelInfer(self, request, grpc_context):
        t0 = time.perf_counter()
        size = request.ByteSize()
        limit = int(self.settings.max_body_mb * 1024 * 1024)
        try:
            if size > limit:
                raise RequestFailure(413, f"body: {size} bytes exceed the limit of {limit}")
            if self.api_keys.protected(request.model_name):
                meta = {k.lower(): v for k, v in grpc_context.invocation_metadata() if isinstance(v, str)}
                self._check_key(request.model_name, meta, "grpc_infer")
            resp = await self._infer(request.model_name, t0, lambda: grpc_v2.to_infer_request(request))
        except RequestFailure as e:
            if e.status != 503:
                app_label = request.model_name if request.model_name in self.core.apps else ""
                self.metrics.requests.labels(app_label, "", "none", "client_error").inc()
            if e.status in _GRPC_AUTH:
                grpc_context.set_code(_GRPC_AUTH[e.status])
                grpc_context.set_details(str(e))
            else:
                grpc_v2.fail(grpc_context, e.status, str(e))
            return grpc_v2.pb.ModelInferResponse()
        return grpc_v2.from_infer_response(resp)
