"""docker-compose.yml: real Kafka (KRaft) + Redis + scalable workers."""

import shutil
import subprocess

import pytest
import yaml

from fixstream.config import PACKAGE_DIR

COMPOSE = PACKAGE_DIR.parent / "docker-compose.yml"


def test_compose_runs_kraft_kafka_redis_and_scalable_workers():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "redis" in services
    worker = services["worker"]
    assert worker["environment"]["FIXSTREAM_BROKER"] == "kafka:9092"
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=3 works
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["command"] == ["topics", "apply"]


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="`docker compose` is not installed here")
def test_docker_compose_config_validates():
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
