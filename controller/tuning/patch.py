"""The config patch `hybridserve tune --patch` writes, and `--apply`'s client for a running
daemon's admin endpoint.

The patch is a partial config (deep-merged over the running one): per model the recommended
function memory (`policy.function_memory_mb`, an extra key the policy params allow) and, for the
app's baseline model, `policy.baseline_function_memory_mb`. `--apply` POSTs it as JSON to
`<admin-url>/admin/config` with `Authorization: Bearer <token>`; any failure (daemon not
running, token refused, other HTTP error) is an ApplyError with one line for the operator.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import yaml

ADMIN_PATH = "/admin/config"


class ApplyError(Exception):
    """The daemon did not take the patch (one line)."""


def build_patch(result, cfg) -> dict:
    """Partial config with the recommended memory per model for the result's strategy."""
    per_model = {}
    for mt in result.models:
        rec = result.chosen(mt)
        if rec is not None:
            per_model[mt.model] = int(rec.memory_mb)
    patch = {"policy": {"function_memory_mb": per_model}}
    app = next(a for a in cfg.apps if a.name == result.app)
    baseline = app.model if app.model in per_model else (min(per_model, key=lambda m: _cost(result, m))
                                                         if per_model else None)
    if baseline is not None:
        patch["policy"]["baseline_function_memory_mb"] = per_model[baseline]
    return patch


def _cost(result, model: str) -> float:
    mt = next(m for m in result.models if m.model == model)
    return result.chosen(mt).cost_per_request_usd


def merge(base: dict, patch: dict) -> dict:
    """Deep merge (patch wins); what the daemon does with a patch."""
    out = dict(base)
    for k, v in patch.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def patch_yaml(patch: dict, header: str) -> str:
    lines = "".join(f"# {h}\n" for h in header.splitlines())
    return lines + yaml.safe_dump(patch, sort_keys=True)


def read_token(path: str) -> str:
    try:
        with open(path) as fh:
            token = fh.read().strip()
    except OSError as e:
        raise ApplyError(f"--token-file {path}: {e.strerror}") from None
    if not token:
        raise ApplyError(f"--token-file {path} is empty")
    return token


def apply_patch(admin_url: str, token: str, patch: dict, timeout_s: float = 5.0) -> dict:
    """POST the patch; return the daemon's JSON answer. Raises ApplyError."""
    url = admin_url.rstrip("/") + ADMIN_PATH
    if not url.startswith(("http://", "https://")):
        raise ApplyError(f"--admin-url must start with http:// or https://, got {admin_url!r}")
    req = urllib.request.Request(url, data=json.dumps(patch).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise ApplyError(f"daemon at {admin_url} refused the token (HTTP {e.code})") from None
        raise ApplyError(f"daemon at {admin_url} rejected the patch: HTTP {e.code} {_detail(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ApplyError(f"daemon not reachable at {admin_url}: {reason}") from None
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return {}


def _detail(e) -> str:
    try:
        text = e.read().decode(errors="replace").strip()
    except Exception:
        return ""
    return text.splitlines()[0][:200] if text else ""
