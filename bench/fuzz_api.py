"""Fuzz the live daemon's HTTP API from its OpenAPI document (schemathesis on hypothesis).

Every operation of /openapi.json gets generated requests (paths, query strings, headers and
bodies, valid and invalid by the schema) plus, for the two body-taking endpoints whose schema
is free-form (infer, feedback), hypothesis-drawn JSON documents and raw bytes. A case fails
when the answer is a 5xx, or a 4xx that is not a JSON object with an "error" naming the field.
Afterwards the server must still answer /v2/health/ready and serve a real infer.

    python bench/fuzz_api.py --cases 5000            # starts `hybridserve run` with the test config
    python bench/fuzz_api.py --url http://127.0.0.1:8000 --cases 5000   # against a running daemon

Writes the "fuzz-api" section of BENCHMARKS.md (cases, 5xx count, server alive).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import requests
import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Arbitrary JSON, biased towards the shapes the infer parser walks (inputs, shape, datatype, data).
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20))
_json = st.recursive(_scalar, lambda c: st.one_of(st.lists(c, max_size=5),
                                                  st.dictionaries(st.text(max_size=10), c, max_size=5)),
                     max_leaves=20)
_tensor = st.fixed_dictionaries({"name": st.sampled_from(["input", "image", "x", ""]),
                                 "shape": st.lists(st.integers(-3, 70), max_size=5),
                                 "datatype": st.sampled_from(["FP32", "FP64", "INT8", "UINT8", "BYTES", "BOOL",
                                                              "FP16", "BF16", "INT64", "bogus"]),
                                 "data": st.one_of(st.lists(_scalar, max_size=70), _json),
                                 "parameters": st.one_of(st.just({}), st.dictionaries(
                                     st.sampled_from(["binary_data_size", "content_type", "x"]), _scalar))})
_infer_doc = st.fixed_dictionaries({"inputs": st.one_of(st.lists(_tensor, max_size=3), _json)},
                                   optional={"id": _scalar, "outputs": _json, "parameters": st.dictionaries(
                                       st.sampled_from(["slo_ms", "min_accuracy", "binary_data_output", "x"]),
                                       _scalar)})
# A header value a real HTTP/1.1 client sends: visible ASCII with inner spaces (RFC 9110 field-value;
# obs-text is obsolete). Control bytes or non-ASCII are refused by the HTTP parser (httptools / h11)
# before the app runs, with uvicorn's own plain-text 400: that tests uvicorn, not hybridserve.
_header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).map(str.strip)
_feedback_doc = st.one_of(_json, st.fixed_dictionaries({"id": _scalar, "label": _scalar}),
                          st.lists(st.fixed_dictionaries({"id": _scalar, "label": _scalar}), max_size=4))


class Tally:
    def __init__(self):
        self.cases = 0
        self.status = Counter()
        self.failures: list[str] = []

    def check(self, label: str, resp) -> None:
        self.cases += 1
        self.status[resp.status_code // 100 * 100] += 1
        bad = None
        if resp.status_code >= 500:
            bad = f"{resp.status_code}"
        elif 400 <= resp.status_code < 500 and resp.status_code not in (405,):
            if resp.text.startswith("Invalid HTTP request"):  # uvicorn refused the bytes before the app
                self.status["http_layer_400"] += 1  # its own column: not our app's answer
                return
            try:
                doc = resp.json()
                if not (isinstance(doc, dict) and (doc.get("error") or doc.get("detail"))):
                    bad = f"{resp.status_code} without an error message"
            except ValueError:
                bad = f"{resp.status_code} not JSON"
        if bad and len(self.failures) < 50:
            self.failures.append(f"{label}: {bad}: {resp.text[:200]!r}")


def fuzz(url: str, cases: int, seed: int = 0, timeout_s: float = 30.0) -> Tally:
    """Run about `cases` requests against the daemon at `url`; return the tally."""
    import schemathesis

    tally = Tally()
    session = requests.Session()
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    # Half the budget on the schema's operations, half on the free-form bodies of infer/feedback.
    per_op = max(1, cases // 2 // max(1, len(ops)))
    common = settings(max_examples=per_op, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
    for op in ops:
        @common
        @given(case=op.as_strategy())
        def run(case):
            resp = case.call(base_url=url, session=session, timeout=timeout_s)
            tally.check(f"{case.method} {case.formatted_path}", resp)
        run()
    def infer_json(doc, name):
        body = json.dumps(doc, allow_nan=True).encode()
        resp = session.post(f"{url}/v2/models/{name}/infer", data=body, timeout=timeout_s,
                            headers={"Content-Type": "application/json"})
        tally.check(f"POST infer json {body[:80]!r}", resp)

    def infer_binary(head, tail, hlen):
        h = json.dumps(head, allow_nan=True).encode()
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(len(h) if hlen is None else hlen)}
        resp = session.post(f"{url}/v2/models/digits-small/infer", data=h + tail, timeout=timeout_s,
                            headers=headers)
        tally.check(f"POST infer binary hlen={hlen!r}", resp)

    def feedback(doc):
        resp = session.post(f"{url}/feedback", data=json.dumps(doc, allow_nan=True).encode(), timeout=timeout_s,
                            headers={"Content-Type": "application/json"})
        tally.check("POST /feedback", resp)

    bodies = ((infer_json, {"doc": _infer_doc, "name": st.sampled_from(
                  ["digits", "digits-small", "digits-large", "nope", "a%2Fb"])}),
              (infer_binary, {"head": _infer_doc, "tail": st.binary(max_size=2048),
                              "hlen": st.one_of(st.none(), st.integers(-5, 5000), _header_value)}),
              (feedback, {"doc": _feedback_doc}))
    # Hypothesis stops an operation early once it has exhausted its inputs (a path without
    # parameters), so the schema half falls short of its share: the body fuzzers take the rest,
    # round after round (round 0 derandomized, then seeded from `seed`) until `cases` is reached.
    for round_no in range(20):
        rest = cases - tally.cases
        if rest <= 0:
            break
        for fn, strategies in bodies:
            test = settings(max_examples=max(1, -(-rest // len(bodies))), deadline=None, database=None,
                            derandomize=round_no == 0, suppress_health_check=list(HealthCheck))(
                given(**strategies)(fn))
            (test if round_no == 0 else hypothesis.seed(seed * 1000 + round_no)(test))()
    return tally


def alive(url: str) -> bool:
    """Ready, and a real infer succeeds."""
    from serving import digits
    try:
        if requests.get(url + "/v2/health/ready", timeout=10).status_code != 200:
            return False
        x, _ = digits.test_samples()
        doc = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                           "data": x[0].ravel().tolist()}]}
        return requests.post(url + "/v2/models/digits/infer", json=doc, timeout=30).status_code == 200
    except requests.RequestException:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running daemon (default: start one with tests/integration/live.yaml)")
    ap.add_argument("--cases", type=int, default=5000)
    args = ap.parse_args()
    import contextlib

    import schemathesis

    from bench.live_common import Daemon
    t0 = time.perf_counter()
    with (contextlib.nullcontext(args.url) if args.url else Daemon(control=True)) as d:
        url = d if isinstance(d, str) else d.url
        tally = fuzz(url, args.cases)
        ok = alive(url)
    elapsed_s = time.perf_counter() - t0
    n5xx = tally.status.get(500, 0)
    body = (f"schemathesis {schemathesis.__version__} (hypothesis) against every operation of the daemon's "
            f"/openapi.json, plus hypothesis-drawn JSON and binary-extension bodies for infer and feedback.\n\n"
            f"Header values are what a real HTTP/1.1 client sends (visible ASCII); a 400 that uvicorn's "
            f"HTTP parser gives before the app runs (`Invalid HTTP request received.`) would be counted "
            f"in its own column, not as a bad 4xx.\n\n"
            f"| cases | 2xx | 4xx | 5xx | bad 4xx (no JSON error) | HTTP-parser 400 | server alive after | time |\n"
            f"|---:|---:|---:|---:|---:|---:|---|---:|\n"
            f"| {tally.cases} | {tally.status.get(200, 0)} | {tally.status.get(400, 0)} | {n5xx} | "
            f"{len(tally.failures) - min(n5xx, len(tally.failures))} | {tally.status.get('http_layer_400', 0)} | "
            f"{'yes' if ok else 'NO'} | {elapsed_s:.0f} s |\n")
    if tally.failures:
        body += "\nFirst failures:\n\n" + "".join(f"- `{f[:160]}`\n" for f in tally.failures[:10])
    from bench._report import write_section
    write_section("fuzz-api", "Fuzzed bad input against the HTTP API", body,
                  f"python bench/fuzz_api.py --cases {args.cases}")
    print(body)
    return 0 if ok and not tally.failures else 1


if __name__ == "__main__":
    sys.exit(main())
