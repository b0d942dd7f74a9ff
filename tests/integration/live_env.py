"""What the live test daemon runs with beyond the caller's environment: fake secrets (the
security tests check that none of them leaks into logs, status or metrics) and the switch that
exposes the fault-injection endpoint. Set on the daemon's environment only, never on the
pytest process's."""
ADMIN_TOKEN_ENV = "HYBRIDSERVE_ADMIN_TOKEN"
ADMIN_TOKEN = "it-admin-token-5e1d93c0b7"
FAKE_AWS_SECRET = "itFAKEsecretKEY/0123456789abcdefghij"


def daemon_env(base: dict) -> dict:
    env = dict(base)
    env[ADMIN_TOKEN_ENV] = ADMIN_TOKEN
    env["AWS_SECRET_ACCESS_KEY"] = FAKE_AWS_SECRET
    env["HYBRIDSERVE_ALLOW_FAULT_INJECTION"] = "1"
    return env
