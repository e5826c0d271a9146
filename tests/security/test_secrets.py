"""Secrets come from the environment, <NAME>_FILE, or AWS at start-up; none are committed."""

from __future__ import annotations

import json
import math
import os
import re
import runpy
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from security.secrets import SecretsLoadError, load_external_secrets

ROOT = Path(__file__).resolve().parents[2]


def test_settings_read_a_secret_from_a_file_named_by_name_file(tmp_path) -> None:
    secret = secrets.token_urlsafe(40)
    (tmp_path / "secret_key").write_text(secret)
    (tmp_path / "bidx").write_text(__import__("base64").b64encode(os.urandom(32)).decode())
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "BLIND_INDEX_KEY")}
    env.update(SECRET_KEY_FILE=str(tmp_path / "secret_key"), BLIND_INDEX_KEY_FILE=str(tmp_path / "bidx"))
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "import hashlib; print(hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __import__("hashlib").sha256(secret.encode()).hexdigest()


def ssm_client():
    return boto3.client(
        "ssm", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_ssm_parameters_under_a_path_become_environment_variables() -> None:
    client = ssm_client()
    environ = {"AWS_SSM_PARAMETER_PATH": "/fintech_portal/prod", "EMAIL_URL": "smtp://set-by-hand"}
    with Stubber(client) as stub:
        stub.add_response(
            "get_parameters_by_path",
            {
                "Parameters": [
                    {
                        "Name": "/fintech_portal/prod/STRIPE_SECRET_KEY",
                        "Value": "from-ssm-1",
                        "Type": "SecureString",
                    },
                    {
                        "Name": "/fintech_portal/prod/EMAIL_URL",
                        "Value": "smtp://from-ssm",
                        "Type": "SecureString",
                    },
                    {"Name": "/fintech_portal/prod/not a name", "Value": "ignored", "Type": "String"},
                ],
                "NextToken": "page2",
            },
            {"Path": "/fintech_portal/prod", "Recursive": True, "WithDecryption": True},
        )
        stub.add_response(
            "get_parameters_by_path",
            {
                "Parameters": [
                    {
                        "Name": "/fintech_portal/prod/db/DATABASE_URL",
                        "Value": "postgres://x",
                        "Type": "SecureString",
                    }
                ]
            },
            {"Path": "/fintech_portal/prod", "Recursive": True, "WithDecryption": True, "NextToken": "page2"},
        )
        loaded = load_external_secrets(environ, client_factory=lambda service, region: client)
        stub.assert_no_pending_responses()
    assert loaded == ["DATABASE_URL", "STRIPE_SECRET_KEY"]
    assert environ["STRIPE_SECRET_KEY"] == "from-ssm-1"
    assert environ["EMAIL_URL"] == "smtp://set-by-hand"  # the environment wins


def test_secrets_manager_json_secret_becomes_environment_variables() -> None:
    client = boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    environ = {"AWS_SECRETS_MANAGER_SECRET_ID": "fintech_portal/prod"}
    with Stubber(client) as stub:
        stub.add_response(
            "get_secret_value",
            {"SecretString": json.dumps({"BRAINTREE_PRIVATE_KEY": "from-sm", "lower": "ignored"})},
            {"SecretId": "fintech_portal/prod"},
        )
        stub.add_response(
            "get_secret_value", {"SecretString": "not json"}, {"SecretId": "fintech_portal/prod"}
        )
        stub.add_client_error(
            "get_secret_value", "AccessDeniedException", expected_params={"SecretId": "fintech_portal/prod"}
        )
        assert load_external_secrets(environ, client_factory=lambda s, r: client) == ["BRAINTREE_PRIVATE_KEY"]
        with pytest.raises(SecretsLoadError, match="not a JSON object"):
            load_external_secrets(
                {"AWS_SECRETS_MANAGER_SECRET_ID": "fintech_portal/prod"}, client_factory=lambda s, r: client
            )
        with pytest.raises(SecretsLoadError, match="AccessDenied"):
            load_external_secrets(
                {"AWS_SECRETS_MANAGER_SECRET_ID": "fintech_portal/prod"}, client_factory=lambda s, r: client
            )
    assert environ["BRAINTREE_PRIVATE_KEY"] == "from-sm" and "lower" not in environ


def test_nothing_is_loaded_or_contacted_when_not_configured() -> None:
    def never(service: str, region: str | None) -> None:
        raise AssertionError("AWS must not be contacted")

    assert load_external_secrets({}, client_factory=never) == []


def test_the_settings_module_loads_ssm_secrets_at_start_up(monkeypatch) -> None:
    with mock_aws():
        client = ssm_client()
        client.put_parameter(
            Name="/fp/test/STRIPE_WEBHOOK_SECRET", Value="loaded-at-start-up", Type="SecureString"
        )
        monkeypatch.setattr(os, "environ", os.environ.copy())  # the settings module writes to it
        for name in ("STRIPE_WEBHOOK_SECRET", "AWS_SECRETS_MANAGER_SECRET_ID"):
            os.environ.pop(name, None)
        monkeypatch.setenv("AWS_SSM_PARAMETER_PATH", "/fp/test")
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        runpy.run_path(str(ROOT / "fintech_portal" / "settings.py"))
        assert os.environ["STRIPE_WEBHOOK_SECRET"] == "loaded-at-start-up"


# --- No committed secrets ---------------------------------------------------------------------------

SECRET_PATTERNS = {
    "Stripe secret key": re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"),
    "Stripe webhook secret": re.compile(r"\bwhsec_[0-9A-Za-z+/=]{16,}"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "PEM private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
}
ASSIGNMENT = re.compile(
    r"(?i)\b[\w.-]*(?:secret|password|passwd|token|api_?key|private_?key|signing_?key)[\w.-]*\b"
    r"\s*[:=]\s*[\"']([^\"'\s]{20,})[\"']"
)
FAKE_MARKERS = (
    "example",
    "test",
    "dummy",
    "fake",
    "dev-only",
    "insecure",
    "not-for-production",
    "placeholder",
)


def entropy(text: str) -> float:
    counts = {ch: text.count(ch) for ch in set(text)}
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def findings(path: str, text: str) -> list[str]:
    found = [f"{path}: {kind}" for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    for match in ASSIGNMENT.finditer(text):
        value = match.group(1)
        if entropy(value) >= 4.0 and not any(marker in value.lower() for marker in FAKE_MARKERS):
            found.append(
                f"{path}: high-entropy value assigned to {match.group(0).split('=')[0].strip()[:40]}"
            )
    return found


def test_the_scanner_catches_each_kind_of_secret() -> None:
    planted = {
        "stripe": "sk_" + "live_" + secrets.token_hex(16),
        "restricted": "rk_" + "test_" + secrets.token_hex(16),
        "webhook": "whsec_" + secrets.token_hex(16),
        "aws": "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        "pem": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE",
        "assignment": "DB_PASSWORD" + ' = "' + secrets.token_urlsafe(32) + '"',
    }
    for kind, text in planted.items():
        assert findings("planted.py", text), kind
    assert not findings("ok.py", 'SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"')


def test_no_secrets_are_committed_to_the_repository() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing tracked to scan")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    problems: list[str] = []
    scanned = 0
    for raw in filter(None, listed):
        path = ROOT / raw.decode()
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue
        problems.extend(findings(raw.decode(), data.decode("utf-8", "replace")))
        scanned += 1
    assert scanned > 50
    assert not problems, problems
