"""Tune's report files, the config patch, and the --apply client against a stand-in endpoint."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from controller.config import Config
from controller.tuning.analyzer import tune_app
from controller.tuning.patch import ApplyError, apply_patch, build_patch, merge
from controller.tuning.report import write_report

TOKEN = "s3cret-token"


class _AdminHandler(BaseHTTPRequestHandler):
    """What a daemon's admin endpoint must do: check the bearer token, take a JSON patch."""
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/admin/config":
            self.send_response(404)
            self.end_headers()
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        _AdminHandler.received.append(json.loads(body))
        out = json.dumps({"status": "applied"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def admin_url():
    srv = HTTPServer(("127.0.0.1", 0), _AdminHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_report_has_tables_and_every_linked_png(tmp_path, config, catalog):
    res = tune_app(catalog, config, config.apps[0].name, strategy="balanced", weight=0.7)
    path = write_report(res, str(tmp_path), "configs/catalog", notes="noisy machine")
    text = open(path).read()
    assert "noisy machine" in text and "balanced" in text and "(M / 2 GB)" in text
    for mt in res.models:
        assert f"### {mt.model}" in text
    links = [seg.split(")")[0] for seg in text.split("](")[1:]]
    assert len(links) >= 4
    for link in links:
        assert os.path.getsize(tmp_path / link) > 1000


def test_patch_merges_into_a_valid_config(config, catalog):
    res = tune_app(catalog, config, config.apps[0].name, strategy="cost")
    patch = build_patch(res, config)
    per_model = patch["policy"]["function_memory_mb"]
    assert per_model == {mt.model: res.chosen(mt).memory_mb for mt in res.models}
    merged = Config.model_validate(merge(config.model_dump(), yaml.safe_load(yaml.safe_dump(patch))))
    # The baseline memory is the app's pinned model's, or (no model pinned) its cheapest model's.
    app = config.apps[0]
    cheapest = min(per_model, key=lambda m: res.chosen(next(mt for mt in res.models if mt.model == m)).cost_per_request_usd)
    assert merged.policy.baseline_function_memory_mb == per_model[app.model or cheapest]


def test_apply_posts_with_the_token(admin_url, config, catalog):
    patch = build_patch(tune_app(catalog, config, config.apps[0].name), config)
    _AdminHandler.received.clear()
    assert apply_patch(admin_url, TOKEN, patch) == {"status": "applied"}
    assert _AdminHandler.received == [patch]


def test_apply_wrong_token_and_no_daemon(admin_url):
    with pytest.raises(ApplyError, match="refused the token"):
        apply_patch(admin_url, "wrong", {"policy": {}})
    srv = HTTPServer(("127.0.0.1", 0), _AdminHandler)
    port = srv.server_address[1]
    srv.server_close()  # a port nothing listens on
    with pytest.raises(ApplyError, match="not reachable"):
        apply_patch(f"http://127.0.0.1:{port}", TOKEN, {"policy": {}})
