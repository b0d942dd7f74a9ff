"""Config validation: errors name the file, the key and the value."""
import pytest

from controller.config import ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_default_config_loads(config):
    assert config.apps[0].slo_ms == 300
    assert config.functions.price_usd_per_gb_s == pytest.approx(0.0000166667)


def test_error_names_file_key_and_value(tmp_path):
    path = write(tmp_path, "apps:\n  - name: a\n    slo_ms: -5\n    min_accuracy: 0.5\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert path in msg and "apps.0.slo_ms" in msg and "-5" in msg


def test_unknown_key_rejected(tmp_path):
    path = write(tmp_path, "apps:\n  - {name: a, slo_ms: 100, min_accuracy: 0.5}\nvms:\n  max_instancez: 3\n")
    with pytest.raises(ConfigError, match="vms.max_instancez"):
        load_config(path)


def test_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "apps: [\n"))


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/x.yaml")


def test_duplicate_app_names(tmp_path):
    path = write(tmp_path, "apps:\n  - {name: a, slo_ms: 100, min_accuracy: 0.5}\n"
                           "  - {name: a, slo_ms: 200, min_accuracy: 0.5}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_config(path)


def test_cross_field_memory_range(tmp_path):
    path = write(tmp_path, "apps:\n  - {name: a, slo_ms: 100, min_accuracy: 0.5}\n"
                           "functions: {min_memory_mb: 4096, max_memory_mb: 1024}\n")
    with pytest.raises(ConfigError, match="4096"):
        load_config(path)
