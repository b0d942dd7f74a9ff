"""A test server implementing the AWS Lambda Runtime API on 127.0.0.1, and the Lambda image's entry
point (`python -m awslambdaric <handler>`, what the base image's bootstrap runs) as a subprocess
polling it: the handler runs under the real runtime interface client, as in Lambda.

Implemented (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):
- GET  /2018-06-01/runtime/invocation/next: blocks until an event is queued, answers it with the
  headers Lambda sends (Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Invoked-Function-Arn,
  -Trace-Id);
- POST /2018-06-01/runtime/invocation/<id>/response: the handler's result (202);
- POST /2018-06-01/runtime/invocation/<id>/error: a function error, body {errorMessage,
  errorType, stackTrace}, with its headers (awslambdaric 4.2 sends the X-Ray error cause,
  Lambda-Runtime-Function-XRay-Error-Cause) (202);
- POST /2018-06-01/runtime/init/error: the handler failed to load (202).

`LambdaRuntime.invoke(event)` queues one event and waits for its outcome: `("response", body)`
or `("error", body, headers)` (header names lower-cased).
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:hs-test"


class _Api(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: queue.Queue = queue.Queue()
        self.outcomes: dict[str, queue.Queue] = {}
        self.init_errors: list[dict] = []
        self.closing = threading.Event()

    def handle_error(self, request, client_address):
        # The runtime client hangs up its long poll when it is stopped: not a server error.
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Api
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != f"{PREFIX}/invocation/next":
            return self._reply(404)
        while not self.server.closing.is_set():  # long poll, as Lambda's does
            try:
                request_id, event, deadline_s = self.server.events.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        else:
            return self._reply(503)
        self._reply(200, json.dumps(event).encode(), {
            "Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + deadline_s) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
            "Lambda-Runtime-Trace-Id": f"Root=1-00000000-{request_id[-24:]:0>24}"})

    def do_POST(self):
        body = self._body()
        if self.path == f"{PREFIX}/init/error":
            self.server.init_errors.append(json.loads(body or b"{}"))
            return self._reply(202, b'{"status":"OK"}')
        parts = self.path[len(PREFIX):].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
            return self._reply(404)
        waiting = self.server.outcomes.get(parts[1])
        if waiting is None:
            return self._reply(400, b'{"errorType":"InvalidRequestID"}')
        headers = {k.lower(): v for k, v in self.headers.items()}
        outcome = ("response", json.loads(body)) if parts[2] == "response" else ("error", json.loads(body), headers)
        waiting.put(outcome)
        self._reply(202, b'{"status":"OK"}')


class LambdaRuntime:
    """The Runtime API server and one execution environment running `handler` under awslambdaric."""

    def __init__(self, handler: str, env: dict[str, str] | None = None, log_path: str | None = None):
        self.api = _Api()
        threading.Thread(target=self.api.serve_forever, name="lambda-runtime-api", daemon=True).start()
        self.address = f"127.0.0.1:{self.api.server_address[1]}"
        self._ids = itertools.count(1)
        child_env = {**os.environ, **(env or {}), "AWS_LAMBDA_RUNTIME_API": self.address,
                     "AWS_LAMBDA_FUNCTION_NAME": "hs-test", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
                     "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_FORMAT": "Text"}
        self.log_path = log_path or os.devnull
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "awslambdaric", handler], env=child_env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def invoke(self, event, timeout_s: float = 120.0, deadline_s: float = 60.0):
        request_id = f"req-{next(self._ids):04d}-0000-0000-0000-000000000000"
        waiting: queue.Queue = queue.Queue()
        self.api.outcomes[request_id] = waiting
        self.api.events.put((request_id, event, deadline_s))
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                return waiting.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the runtime exited ({self.process.returncode}); init errors: "
                                       f"{self.api.init_errors}; log: {self.log_tail()}")
        raise TimeoutError(f"no outcome for {request_id} in {timeout_s:g} s; log: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        if self.log_path == os.devnull:
            return ""
        with open(self.log_path, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
        self.api.closing.set()
        self.api.shutdown()
        self.api.server_close()
