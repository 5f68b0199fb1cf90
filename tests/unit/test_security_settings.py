"""SASL/TLS settings reach every Kafka client: the worker's Faust producer and consumers (and
the topic creation that rides on its producer), the CLI's producer and reader, the admin
client of ``topics apply`` and the demo, and a worker started as a child process.

No broker: every aiokafka class is replaced by a recorder that keeps the keyword arguments it
was built with and refuses before anything connects."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiokafka
import pytest
from aiokafka.client import AIOKafkaClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from rich.console import Console
from typer.testing import CliRunner

import fixstream.kafka
import fixstream.telemetry
import fixstream.topics
from fixstream.app import _credentials, create_app
from fixstream.cli import cli
from fixstream.config import Settings
from fixstream.demo import embedded
from fixstream.kafka import producer, reader
from fixstream.llm.gateway import Gateway
from fixstream.llm.transport import ScriptedTransport
from fixstream.topics import apply_topics, load_catalog
from fixstream.worker import subprocess_env

BROKER = "kafka.example:9093"
CA_NAME = "fixstream test CA"


@dataclass(frozen=True)
class Variant:
    settings: dict[str, object]
    """Security settings (the CA file is added when ``tls``)."""
    wants: dict[str, object]
    """What every client must receive: ``security_protocol`` and the ``sasl_*`` options."""
    tls: bool = False
    """Every client must also receive an SSL context that trusts the test CA."""


SASL = {"sasl_plain_username": "u", "sasl_plain_password": "p"}
VARIANTS = {
    "sasl-ssl-scram": Variant(
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", **SASL},
        tls=True,
    ),
    "sasl-plaintext-plain": Variant(
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", **SASL},
    ),
    "ssl": Variant({"security_protocol": "SSL"}, {"security_protocol": "SSL"}, tls=True),
    "plaintext": Variant({"security_protocol": "PLAINTEXT"}, {"security_protocol": "PLAINTEXT"}),
    # security_protocol decides, for the worker exactly as for the CLI: a mechanism without a
    # SASL protocol is not used, and a SASL protocol without a mechanism means PLAIN
    "ssl-with-stray-sasl": Variant(
        {"security_protocol": "SSL", "sasl_mechanism": "SCRAM-SHA-256"},
        {"security_protocol": "SSL"},
        tls=True,
    ),
    "plaintext-with-stray-sasl": Variant(
        {"security_protocol": "PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256"},
        {"security_protocol": "PLAINTEXT"},
    ),
    "sasl-plaintext-no-mechanism": Variant(
        {"security_protocol": "SASL_PLAINTEXT"},
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", **SASL},
    ),
}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> Path:
    """A real self-signed CA certificate (PEM), as a cluster's operator would hand out."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    """Only what a test passes counts, not the developer's FIXSTREAM_/OPENAI_ variables."""
    for name in list(os.environ):
        if name.startswith(("FIXSTREAM_", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture(params=list(VARIANTS))
def secured(request, ca_file, tmp_path) -> tuple[Settings, Variant]:
    variant = VARIANTS[request.param]
    settings = Settings(
        broker=BROKER,
        sasl_username="u",
        sasl_password="p",
        ssl_cafile=ca_file,
        data_dir=tmp_path / "var",
        llm_base_url="http://127.0.0.1:9/v1",
        web_enabled=False,
        **variant.settings,
    )
    return settings, variant


class Refused(Exception):
    """Raised by a recorder where the real client would go on to connect."""


def recorder(calls: list[dict[str, object]]) -> type:
    class Client:
        def __init__(self, *args: object, **kwargs: object) -> None:
            calls.append(kwargs)
            raise Refused

    return Client


def ca_names(context: ssl.SSLContext) -> set[str]:
    return {
        value
        for cert in context.get_ca_certs()
        for rdn in cert["subject"]
        for key, value in rdn
        if key == "commonName"
    }


def assert_secured(kwargs: dict[str, object], variant: Variant) -> None:
    security = {k: v for k, v in kwargs.items() if k.startswith(("security_", "sasl_"))}
    assert security == variant.wants
    context = kwargs.get("ssl_context")
    if variant.tls:
        assert isinstance(context, ssl.SSLContext)
        assert CA_NAME in ca_names(context), "the context trusts the configured CA"
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    else:
        assert context is None


async def assert_aiokafka_accepts(kwargs: dict[str, object]) -> None:
    """aiokafka's own checks (a mechanism it knows, PLAIN with user and password, a context
    under SSL) pass for these options: construction raises where they fail."""
    options = {k: v for k, v in kwargs.items() if k.startswith(("security_", "sasl_", "ssl_"))}
    client = AIOKafkaClient(bootstrap_servers=BROKER, **options)
    await client.close()


def test_the_worker_app_gives_its_producer_and_consumers_the_security_settings(
    secured, monkeypatch
):
    settings, variant = secured
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", recorder(calls))
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", recorder(calls))
    # create_app installs process-wide telemetry and Faust's fetch-wait patch: put them back
    monkeypatch.setattr(fixstream.telemetry, "_active", fixstream.telemetry.active())
    monkeypatch.setattr(
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        AIOKafkaConsumerThread._create_worker_consumer,
    )

    app = create_app(settings, llm=Gateway(ScriptedTransport()))

    credentials = app.conf.broker_credentials
    if variant.wants["security_protocol"] == "PLAINTEXT":
        assert credentials is None
    else:
        assert credentials.protocol.value == variant.wants["security_protocol"]
    if "sasl_mechanism" in variant.wants:
        assert credentials.mechanism.value == variant.wants["sasl_mechanism"]
        assert (credentials.username, credentials.password) == ("u", "p")
    # the worker's producer (topic creation goes through its client), its group consumer and
    # a client-only consumer, each built exactly as Faust builds it when the worker starts
    with pytest.raises(Refused):
        app.producer._new_producer()
    thread = app.consumer._thread
    with pytest.raises(Refused):
        thread._create_worker_consumer(app.transport)
    with pytest.raises(Refused):
        thread._create_client_consumer(app.transport)
    assert len(calls) == 3
    for kwargs in calls:
        assert BROKER in kwargs["bootstrap_servers"]
        assert_secured(kwargs, variant)
        asyncio.run(assert_aiokafka_accepts(kwargs))


async def test_the_cli_producer_and_reader_get_the_security_settings(secured, monkeypatch):
    settings, variant = secured
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(fixstream.kafka, "AIOKafkaProducer", recorder(calls))
    monkeypatch.setattr(fixstream.kafka, "AIOKafkaConsumer", recorder(calls))
    with pytest.raises(Refused):
        async with producer(settings):
            pass
    with pytest.raises(Refused):
        async with reader(settings, ["bugs.reported"]):
            pass
    assert len(calls) == 2
    for kwargs in calls:
        assert kwargs["bootstrap_servers"] == BROKER
        assert_secured(kwargs, variant)
        await assert_aiokafka_accepts(kwargs)


def test_every_admin_client_gets_the_security_settings(secured, monkeypatch):
    """``apply_topics`` itself, ``fixstream topics apply`` (settings from the environment) and
    the demo against a named cluster."""
    settings, variant = secured
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(fixstream.topics, "AIOKafkaAdminClient", recorder(calls))
    catalog = load_catalog(settings.topics_file)

    with pytest.raises(Refused):
        asyncio.run(apply_topics(catalog, settings.bootstrap(), settings.kafka_client_options()))

    for name, value in subprocess_env(settings).items():
        if name.startswith("FIXSTREAM_"):
            monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["topics", "apply"])
    assert isinstance(result.exception, Refused), result.output

    with pytest.raises(Refused), embedded(settings, Console(quiet=True), 1.0):
        pass

    assert len(calls) == 3
    for kwargs in calls:
        assert kwargs["bootstrap_servers"] == BROKER
        assert_secured(kwargs, variant)


CHILD = """
import json
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from fixstream.app import _credentials
from fixstream.config import Settings

settings = Settings()
def plain(options):
    return {k: v for k, v in options.items() if k.startswith(("security_", "sasl_"))}
def names(options):
    context = options.get("ssl_context")
    if context is None:
        return None
    return sorted(v for c in context.get_ca_certs() for rdn in c["subject"] for _, v in rdn)
clients = settings.kafka_client_options()
worker = credentials_to_aiokafka_auth(_credentials(settings))
print(json.dumps({
    "broker": settings.broker,
    "clients": plain(clients), "clients_ca": names(clients),
    "worker": plain(worker), "worker_ca": names(worker),
}))
"""


def test_a_worker_child_process_connects_with_the_same_security(secured, caplog):
    """What ``WorkerProcess`` (demo, bench, tests) hands its ``fixstream worker`` child: the
    child's own Settings() and Faust credentials come out the same as the parent's."""
    settings, variant = secured
    with caplog.at_level(logging.DEBUG):
        env = subprocess_env(settings)
    assert env["FIXSTREAM_SECURITY_PROTOCOL"] == settings.security_protocol
    assert env["FIXSTREAM_SASL_USERNAME"] == "u"
    assert env["FIXSTREAM_SASL_PASSWORD"] == "p"  # the secret itself, not "**********"
    assert env["FIXSTREAM_SSL_CAFILE"] == str(settings.ssl_cafile)
    if settings.sasl_mechanism:
        assert env["FIXSTREAM_SASL_MECHANISM"] == settings.sasl_mechanism
    assert not caplog.records, "building the environment logs nothing (it holds a secret)"

    run = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    child = json.loads(run.stdout.strip().splitlines()[-1])
    assert child["broker"] == BROKER
    assert child["clients"] == variant.wants
    assert child["worker"] == variant.wants
    ca = [CA_NAME] if variant.tls else None
    assert child["clients_ca"] == ca and child["worker_ca"] == ca


def test_the_password_stays_out_of_reprs_and_logs(ca_file, caplog):
    secret = "s3cret-never-logged"
    settings = Settings(
        broker=BROKER,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password=secret,
        ssl_cafile=ca_file,
    )
    with caplog.at_level(logging.DEBUG):
        env = subprocess_env(settings)
    assert env["FIXSTREAM_SASL_PASSWORD"] == secret
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    assert secret not in repr(_credentials(settings))  # Faust logs its credentials' repr
    assert secret not in caplog.text


def test_a_worker_child_gets_the_llm_api_key_in_clear_and_no_parent_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-should-not-leak")
    settings = Settings(broker=BROKER, llm_api_key="sk-child")
    env = subprocess_env(settings)
    assert env["FIXSTREAM_LLM_API_KEY"] == "sk-child"
    assert "OPENAI_API_KEY" not in env
    assert "sk-parent-should-not-leak" not in env.values()
