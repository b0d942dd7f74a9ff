"""controller.live.vm_fleet: which VM provider `hybridserve run` drives, and the aws fleet's settings."""
import pytest

from controller.cli import EXIT_USAGE, main
from controller.config import ConfigError, load_config
from serving.settings import serving_config
from controller.live.vm_fleet import AWS, LOCAL, fleet_settings, provider_kind, with_endpoint_url


def test_aws_config_fills_the_fleet_from_the_provider_and_the_guard():
    cfg = with_endpoint_url(load_config("configs/aws.yaml"), "http://127.0.0.1:5000")
    assert provider_kind(cfg) == AWS and cfg.provider["endpoint_url"] == "http://127.0.0.1:5000"
    ctl = fleet_settings(cfg, serving_config(cfg)).control
    # the local defaults (local.small, local.medium; 2 VMs) give way to the config's EC2 types and cap
    assert ctl.instance_types == cfg.vms.instance_types and ctl.max_vms == cfg.vms.max_instances == 20
    assert ctl.release_on_exit is False


def test_explicit_serving_control_settings_win():
    cfg = load_config("configs/aws.yaml")
    settings = serving_config(cfg, {"control": {"instance_types": ["c5.large"], "max_vms": 1}})
    ctl = fleet_settings(cfg, settings).control
    assert ctl.instance_types == ["c5.large"] and ctl.max_vms == 1


def test_local_config_is_untouched_and_refuses_an_endpoint_url(capsys):
    cfg = load_config("tests/integration/live.yaml")
    settings = serving_config(cfg)
    assert provider_kind(cfg) == LOCAL and fleet_settings(cfg, settings) is settings
    with pytest.raises(ConfigError, match="--endpoint-url needs an aws provider"):
        with_endpoint_url(cfg, "http://127.0.0.1:5000")
    assert main(["run", "--config", "tests/integration/live.yaml", "--endpoint-url", "http://x"]) == EXIT_USAGE
    assert "--endpoint-url needs an aws provider" in capsys.readouterr().err


def test_a_bad_aws_section_is_one_config_error():
    cfg = load_config("configs/aws.yaml")
    bad = cfg.model_copy(update={"provider": {**cfg.provider, "region": "mars"}})
    with pytest.raises(ConfigError, match="provider.region"):
        fleet_settings(bad, serving_config(bad))
    assert provider_kind(cfg.model_copy(update={"provider": {"kind": "aws"}})) == AWS
    with pytest.raises(ConfigError, match="expected 'local' or 'aws'"):
        provider_kind(cfg.model_copy(update={"provider": {"name": "gcp"}}))
