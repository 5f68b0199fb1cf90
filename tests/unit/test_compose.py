"""docker-compose.yml: real Kafka (KRaft) + Redis + the simulator + scalable workers, every
setting one the workers read."""

import re
import shutil
import subprocess

import pytest
import yaml

from fixstream.config import PACKAGE_DIR, Settings

COMPOSE = PACKAGE_DIR.parent / "docker-compose.yml"
SPEC = yaml.safe_load(COMPOSE.read_text())
SERVICES = SPEC["services"]


def _setting_names() -> set[str]:
    """Every environment variable Settings reads: FIXSTREAM_<FIELD> and the aliases."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"FIXSTREAM_{name.upper()}")
        alias = field.validation_alias
        names.update(getattr(alias, "choices", [alias] if isinstance(alias, str) else []))
    return names


def test_compose_runs_kraft_kafka_redis_and_scalable_workers():
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "redis" in SERVICES
    worker = SERVICES["worker"]
    assert worker["environment"]["FIXSTREAM_BROKER"] == "kafka:9092"
    assert "container_name" not in worker  # --scale worker=3 works
    assert all(":" not in str(p) for p in worker["ports"])  # no fixed host port to clash
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert SERVICES["topics"]["command"] == ["topics", "apply"]


def test_every_fixstream_variable_is_a_setting_the_workers_read():
    known = _setting_names()
    used = {
        name
        for service in SERVICES.values()
        for name in (service.get("environment") or {})
        if name.startswith("FIXSTREAM_")
    }
    assert used and used <= known, sorted(used - known)


def test_workers_have_a_model_kafka_keeps_its_data_and_metrics_are_published():
    worker = SERVICES["worker"]["environment"]
    default = re.fullmatch(r"\$\{OPENAI_BASE_URL:-(.+)\}", worker["FIXSTREAM_LLM_BASE_URL"])
    assert default, "a real endpoint passes through OPENAI_BASE_URL"
    assert default.group(1).startswith("http://sim:")  # otherwise the simulator service
    assert "--examples" in SERVICES["sim"]["command"]
    assert worker["FIXSTREAM_LLM_API_KEY"].startswith("${OPENAI_API_KEY")
    kafka = SERVICES["kafka"]
    mounts = [v.split(":", 1)[1] for v in kafka["volumes"]]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] in mounts
    assert worker["FIXSTREAM_WEB_HOST"] == "0.0.0.0"
    assert any(
        str(p).split("/")[0] == str(Settings().web_port) for p in SERVICES["worker"]["ports"]
    )


def _compose_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command here"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "docker has no compose plugin here (`docker compose version` fails)"
    return None


@pytest.mark.skipif(_compose_problem() is not None, reason=str(_compose_problem()))
def test_docker_compose_config_validates():
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
