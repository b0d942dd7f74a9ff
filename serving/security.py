"""Who may call what on the live router: the admin bearer token, per-app API keys, secret redaction.

- Admin endpoints (`/admin/*`) need `Authorization: Bearer <token>`. The token is read once, from
  the environment variable HYBRIDSERVE_ADMIN_TOKEN or else the file `serving.admin_token_file`;
  with neither the admin endpoints do not exist (404), so an unconfigured daemon has no admin
  surface at all. No header: 401; a wrong token: 403.
- Apps listed in `serving.api_keys` (keys inline) or `serving.api_key_files` (one key a line)
  need `X-API-Key: <key>` (or `Authorization: Bearer <key>`) on infer, model metadata/ready and
  feedback. A model variant served by a protected app is protected by that app's keys too (a
  caller could otherwise skip the app by naming its variant).
- Every comparison is `hmac.compare_digest` over all candidates (no early exit), so the time taken
  does not tell how much of a guess was right.
- Secrets never reach a log line: `install_redaction()` makes every log record of the process
  replace the value of every secret (admin token, API keys, AWS secret key and session token)
  by `***`, a second line of defence behind not logging them at all.
"""
from __future__ import annotations

import hmac
import logging
import os

ADMIN_TOKEN_ENV = "HYBRIDSERVE_ADMIN_TOKEN"
# Environment variables whose values are secrets wherever they appear.
SECRET_ENV = ("HYBRIDSERVE_ADMIN_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_MIN_SECRET_CHARS = 8  # shorter values would redact ordinary words from log lines


class Denied(Exception):
    """A request refused for want of credentials: `status` is 401 (none), 403 (wrong) or 404."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_secret_file(path: str) -> str:
    """The first non-empty line of a file (a token written with a trailing newline works)."""
    with open(path) as fh:
        for line in fh:
            if line.strip():
                return line.strip()
    raise ValueError(f"{path}: empty")


def load_admin_token(token_file: str | None, environ=os.environ) -> str | None:
    """The admin token from the environment, else from `token_file`; None: admin disabled."""
    token = (environ.get(ADMIN_TOKEN_ENV) or "").strip()
    if token:
        return token
    if token_file:
        return read_secret_file(token_file)
    return None


def _same(presented: str, secret: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), secret.encode("utf-8", "surrogateescape"))


def bearer_of(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <x>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def check_admin(token: str | None, authorization: str | None) -> None:
    """Raise Denied unless `authorization` carries the admin token (404 when admin is off)."""
    if not token:
        raise Denied(404, "not found")
    presented = bearer_of(authorization)
    if presented is None:
        raise Denied(401, "authorization: a bearer token is required")
    if not _same(presented, token):
        raise Denied(403, "authorization: token refused")


class ApiKeys:
    """Per-app API keys; `check(name, key)` for a request naming an app or a variant."""

    def __init__(self, keys_by_app: dict[str, list[str]], variants_by_app: dict[str, tuple[str, ...]]):
        self.keys_by_app = {a: [k for k in ks if k] for a, ks in keys_by_app.items() if ks}
        # A variant needs a key of any protected app that serves it.
        self.keys_by_variant: dict[str, list[str]] = {}
        for a, ks in self.keys_by_app.items():
            for v in variants_by_app.get(a, ()):
                self.keys_by_variant.setdefault(v, []).extend(ks)

    @classmethod
    def from_settings(cls, settings, variants_by_app: dict[str, tuple[str, ...]]) -> "ApiKeys":
        keys = {a: list(ks) for a, ks in settings.api_keys.items()}
        for a, path in settings.api_key_files.items():
            with open(path) as fh:
                keys.setdefault(a, []).extend(line.strip() for line in fh if line.strip())
        return cls(keys, variants_by_app)

    def secrets(self) -> list[str]:
        return [k for ks in self.keys_by_app.values() for k in ks]

    def protected(self, name: str) -> bool:
        return name in self.keys_by_app or name in self.keys_by_variant

    def check(self, name: str, key: str | None) -> None:
        """Raise Denied (401 no key, 403 wrong key) when `name` is protected."""
        allowed = self.keys_by_app.get(name) or self.keys_by_variant.get(name)
        if not allowed:
            return
        if not key:
            raise Denied(401, f"x-api-key: {name!r} needs an API key (X-API-Key header)")
        ok = False
        for k in allowed:  # no early exit: the time does not depend on which key matched
            ok |= _same(key, k)
        if not ok:
            raise Denied(403, f"x-api-key: key refused for {name!r}")


def api_key_of(headers) -> str | None:
    """X-API-Key, else a bearer credential (HTTP headers or gRPC metadata as a mapping)."""
    key = headers.get("x-api-key")
    return key.strip() if key else bearer_of(headers.get("authorization"))


def check_settings(settings, app_names) -> None:
    """Fail at start, with one line, on keys for apps that are not served or unreadable files."""
    for field in ("api_keys", "api_key_files"):
        unknown = sorted(set(getattr(settings, field)) - set(app_names))
        if unknown:
            raise ValueError(f"serving.{field}: {unknown} are not served apps ({sorted(app_names)})")
    for a, path in settings.api_key_files.items():
        if not os.access(path, os.R_OK):
            raise ValueError(f"serving.api_key_files.{a} = {path!r}: not readable")
    if not os.environ.get(ADMIN_TOKEN_ENV) and settings.admin_token_file:
        try:
            read_secret_file(settings.admin_token_file)
        except (OSError, ValueError) as e:
            raise ValueError(f"serving.admin_token_file = {settings.admin_token_file!r}: {e}") from None


# --- redaction -----------------------------------------------------------------------------
def secret_values(extra=()) -> list[str]:
    vals = [os.environ.get(n, "") for n in SECRET_ENV] + list(extra)
    return sorted({v for v in vals if v and len(v) >= _MIN_SECRET_CHARS}, key=len, reverse=True)


def redact(text: str, secrets) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


def _redact_record(record: logging.LogRecord, secrets) -> None:
    if not secrets:
        return
    try:
        msg = record.getMessage()
    except Exception:
        return
    clean = redact(msg, secrets)
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and redact(str(exc), secrets) != str(exc):
        clean += f" ({type(exc).__name__}: {redact(str(exc), secrets)})"
        record.exc_info, record.exc_text = None, None
    if clean != msg:
        record.msg, record.args = clean, None


_installed: list = []  # the secrets the record factory redacts (shared, updated in place)


def install_redaction(extra=()) -> list[str]:
    """Redact secrets from every log record this process creates, whatever its handler: a
    record factory (handlers and filters differ between Ray, uvicorn and ours; the factory is
    the one place all of them pass). Idempotent; returns the secrets it redacts."""
    secrets = secret_values([e for e in extra if e])
    if not _installed:
        base = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = base(*args, **kwargs)
            _redact_record(record, _installed[0])
            return record
        _installed.append(secrets)
        logging.setLogRecordFactory(factory)
    else:
        _installed[0][:] = sorted(set(_installed[0]) | set(secrets), key=len, reverse=True)
    return list(_installed[0])


# --- the admin endpoints' inputs, validated once at the edge --------------------------------
from typing import Annotated  # noqa: E402

from pydantic import BaseModel, ConfigDict, Field, ValidationError  # noqa: E402

MemoryMb = Annotated[int, Field(ge=128, le=10240)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class PolicyPatch(_Strict):
    function_memory_mb: dict[str, MemoryMb] = Field(default_factory=dict, description="pinned function "
                                                    "memory per model variant (overrides the tuner's)")
    baseline_function_memory_mb: MemoryMb | None = Field(default=None, description="recorded; read by the "
                                                         "baseline policies at start")


class ServingPatch(_Strict):
    spill_fraction: float | None = Field(default=None, gt=0, le=10)


class AdminPatch(_Strict):
    """The part of a config patch (`hybridserve tune --apply`) a running daemon takes live."""

    policy: PolicyPatch = PolicyPatch()
    serving: ServingPatch = ServingPatch()


class FaultsPatch(_Strict):
    """POST /admin/faults (only when HYBRIDSERVE_ALLOW_FAULT_INJECTION=1)."""

    function: dict | None = Field(default=None, description="FunctionFaults fields; {} clears")
    vm: dict | None = Field(default=None, description="VmFaults fields for the local VMs (from the next "
                            "control tick); {} clears")
    control_collect_errors: int = Field(default=0, ge=0, le=100, description="the next N control-loop "
                                        "collects raise (the loop must survive and count them)")


def validate(model, doc):
    """`model.model_validate(doc)`, a ValueError naming the field on bad input."""
    if not isinstance(doc, dict):
        raise ValueError("body: must be a JSON object")
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(map(str, err["loc"])) or "body"
        raise ValueError(f"{loc}: {err['msg']}") from None
