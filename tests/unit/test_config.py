"""Settings reach every client: security for Kafka, endpoints and prices for the LLM."""

import ssl

import pytest

from fixstream.app import _credentials
from fixstream.config import Settings
from fixstream.llm.build import NoLLMConfiguredError, build_gateway


def test_sasl_settings_reach_aiokafka_and_faust(monkeypatch):
    monkeypatch.setenv("FIXSTREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FIXSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FIXSTREAM_SASL_USERNAME", "fix")
    monkeypatch.setenv("FIXSTREAM_SASL_PASSWORD", "s3cret")
    settings = Settings()
    options = settings.kafka_client_options()
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "fix",
        "sasl_plain_password": "s3cret",
    }
    credentials = _credentials(settings)
    assert credentials.username == "fix" and credentials.password == "s3cret"
    assert "s3cret" not in repr(settings)  # secrets stay out of logs


def test_tls_builds_an_ssl_context():
    settings = Settings(security_protocol="SSL")
    assert isinstance(settings.kafka_client_options()["ssl_context"], ssl.SSLContext)
    assert _credentials(settings) is not None


def test_openai_variables_swap_the_endpoint_with_no_code_change(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("FIXSTREAM_LLM_MODELS", '{"default": "my-model"}')
    gateway = build_gateway(Settings())
    client = gateway.transport.client
    assert str(client.base_url).startswith("http://127.0.0.1:9/v1")
    assert client.api_key == "sk-test" and client.max_retries == 0
    assert gateway.model_for("fix") == "my-model"


def test_no_llm_configured_is_a_clear_error(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FIXSTREAM_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NoLLMConfiguredError, match="run `fixstream sim`"):
        build_gateway(Settings())


def test_state_lives_in_var_of_a_checkout_and_in_the_user_data_directory_when_installed(
    tmp_path, monkeypatch
):
    from fixstream import config

    assert config.default_data_dir() == config.PACKAGE_DIR.parent / "var"  # this checkout
    installed = tmp_path / "site-packages" / "fixstream"
    installed.mkdir(parents=True)
    monkeypatch.setattr(config, "PACKAGE_DIR", installed)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert config.default_data_dir() == tmp_path / "data" / "fixstream"
    assert Settings().data_dir == tmp_path / "data" / "fixstream"
