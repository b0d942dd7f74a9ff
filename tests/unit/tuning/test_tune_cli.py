"""`hybridserve tune` as a subprocess: a report on success; bad input -> one line, exit 2."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "controller.cli", "tune", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_tune_writes_report_and_patch(tmp_path):
    r = _cli("--app", "image-classify", "--strategy", "balanced", "--weight", "0.6", "--out", str(tmp_path),
             "--patch")
    assert r.returncode == 0, r.stderr
    assert "resnet18: balanced ->" in r.stdout
    assert (tmp_path / "README.md").exists() and (tmp_path / "config-patch.yaml").exists()


def _closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unknown_app_subprocess_one_line_exit_2(tmp_path):
    r = _cli("--app", "nope", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown app 'nope'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _main(argv, capsys):
    """The same entry point in-process (a subprocess per case costs seconds on a busy machine)."""
    from controller.cli import main
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors exit from inside the parser
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--app", "image-classify", "--weight", "2"], "--weight must be in [0, 1]"),
    (["--app", "image-classify", "--strategy", "cheap"], "invalid choice"),
    (["--app", "image-classify", "--profile-dir", "/nonexistent"], "no such folder"),
    (["--app", "image-classify", "--batch", "3"], "no model has a profile at that batch size"),
    (["--app", "image-classify", "--apply"], "--apply needs --admin-url and --token-file"),
    (["--app", "image-classify", "--instance-types", "t9.huge"], "unknown instance type 't9.huge'"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, needle):
    rc, err = _main(["tune", *args, "--out", str(tmp_path)], capsys)
    assert rc == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_apply_without_daemon_exits_2(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("right\n")
    r = _cli("--app", "image-classify", "--out", str(tmp_path), "--apply",
             "--admin-url", f"http://127.0.0.1:{_closed_port()}", "--token-file", str(tok))
    assert r.returncode == 2 and "daemon not reachable" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # two more CLI runs; the token check itself is also tested in-process
def test_apply_with_wrong_then_right_token(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("wrong\n")
    # A stand-in admin endpoint in a child process that refuses every token but its own.
    srv = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        r = _cli("--app", "image-classify", "--out", str(tmp_path), "--apply",
                 "--admin-url", f"http://127.0.0.1:{port}", "--token-file", str(tok))
        assert r.returncode == 2 and "refused the token (HTTP 401)" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        tok.write_text("right\n")
        r = _cli("--app", "image-classify", "--out", str(tmp_path), "--apply",
                 "--admin-url", f"http://127.0.0.1:{port}", "--token-file", str(tok))
        assert r.returncode == 0, r.stderr
        assert "applied to" in r.stdout
    finally:
        srv.kill()
        srv.wait()


_SERVER = r'''
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.headers.get("Authorization") == "Bearer right"
        self.send_response(200 if ok else 401)
        body = b'{"status": "applied"}' if ok else b''
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
'''
