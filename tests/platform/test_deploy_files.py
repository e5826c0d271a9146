"""The deployment files describe what the README promises (Docker itself does not run here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.platform.helpers import ROOT, clean_env


def test_compose_runs_postgres_redis_web_worker_and_beat():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    assert "gunicorn" in services["web"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "fintech_portal", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "fintech_portal", "beat"]
    env = services["web"]["environment"]
    assert env["DEBUG"] == "0" and env["SECRET_KEY_FILE"].startswith("/run/secrets/")
    assert "SECRET_KEY" not in env  # secrets come from files, never inline


def test_the_dockerfiles_collectstatic_step_runs_with_debug_off():
    """The image's build step, run here as written (dry run): production settings must load."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    step = next(run for run in re.split(r"\n(?=[A-Z]+ )", dockerfile) if "collectstatic" in run)
    command = step.removeprefix("RUN ").replace("\\\n", " ").split(" && mkdir")[0]
    command = command.replace(
        "python manage.py collectstatic --noinput", "python manage.py collectstatic --noinput --dry-run"
    )
    assert "DEBUG=0" in command
    env = clean_env(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")  # the python of this run
    result = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "static files copied" in result.stdout


def test_dockerfile_runs_as_a_non_root_user():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "deploy/gunicorn.conf.py" in dockerfile


def _host_address(port: object) -> str:
    """The host address a compose ``ports`` entry publishes on (all interfaces unless bound)."""
    if isinstance(port, dict):
        return str(port.get("host_ip") or "0.0.0.0")  # noqa: S104 - what compose means by no host_ip
    parts = str(port).rsplit(":", 2)
    return parts[0].strip("[]") if len(parts) == 3 else "0.0.0.0"  # noqa: S104


def test_only_the_proxy_is_reachable_from_outside_the_host():
    """gunicorn trusts X-Forwarded-For and -Proto: nobody but the proxy may reach it."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    exposed = {
        name
        for name, service in services.items()
        for port in service.get("ports", [])
        if _host_address(port) not in ("127.0.0.1", "::1")
    }
    assert exposed == {"proxy"}
    assert "ports" not in services["web"] and services["web"]["expose"] == ["8000"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy" in caddyfile and "name web" in caddyfile and "port 8000" in caddyfile
    assert "trusted_proxies" not in caddyfile  # so Caddy replaces X-Forwarded-For: one hop, ours
    env = services["web"]["environment"]
    assert env["TRUSTED_PROXY_COUNT"] == "1" and env["TRUST_X_FORWARDED_PROTO"] == "1"
    assert not env.get("PAYMENTS_IP_COUNTRY_HEADER")  # no CDN in front: no country header is trusted


def _consumed_queues(command: list[str]) -> set[str]:
    return set(command[command.index("-Q") + 1].split(",")) if "-Q" in command else {"celery"}


def test_compose_workers_consume_every_queue_and_merchant_webhooks_have_their_own():
    from django.conf import settings

    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    workers = {
        name: _consumed_queues(service["command"])
        for name, service in services.items()
        if service.get("command", [])[:4] == ["celery", "-A", "fintech_portal", "worker"]
    }
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert settings.MERCHANT_WEBHOOK_QUEUE in routed
    assert routed | {settings.CELERY_TASK_DEFAULT_QUEUE} <= set().union(*workers.values())
    # The workers that call merchants' servers serve nothing else, and the default queue's
    # workers never call merchants' servers.
    for queues in workers.values():
        assert queues == {settings.MERCHANT_WEBHOOK_QUEUE} or settings.MERCHANT_WEBHOOK_QUEUE not in queues
