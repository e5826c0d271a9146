"""Load secrets from AWS SSM Parameter Store or Secrets Manager into the environment.

Called at the very top of ``fintech_portal/settings.py``, before any setting is
read, and only does something when configured:

* ``AWS_SSM_PARAMETER_PATH=/fintech_portal/prod``: every parameter under the
  path (recursively, decrypted) becomes an environment variable named by the
  last path segment (``/fintech_portal/prod/STRIPE_SECRET_KEY`` →
  ``STRIPE_SECRET_KEY``).
* ``AWS_SECRETS_MANAGER_SECRET_ID=fintech_portal/prod``: the secret's value is
  a JSON object of ``{"NAME": "value"}`` pairs.

Variables already set in the environment win (so one can be overridden by
hand). Names must look like environment variables (``A-Z``, digits, ``_``).
Nothing here imports Django: settings are not loaded yet.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, MutableMapping
from typing import Any

NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")


class SecretsLoadError(RuntimeError):
    """The configured secret store could not be read: the app must not start half-configured."""


def _boto3_client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region or None)


def from_ssm(client: Any, path: str) -> dict[str, str]:
    found: dict[str, str] = {}
    paginator = client.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=path, Recursive=True, WithDecryption=True):
        for parameter in page.get("Parameters", []):
            name = parameter["Name"].rstrip("/").rsplit("/", 1)[-1]
            if NAME_RE.match(name):
                found[name] = parameter["Value"]
    return found


def from_secrets_manager(client: Any, secret_id: str) -> dict[str, str]:
    answer = client.get_secret_value(SecretId=secret_id)
    text = answer.get("SecretString")
    if text is None:
        raise SecretsLoadError(
            f"Secret {secret_id!r} has no SecretString (binary secrets are not supported)."
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SecretsLoadError(f"Secret {secret_id!r} is not a JSON object of NAME: value pairs.") from exc
    if not isinstance(data, dict):
        raise SecretsLoadError(f"Secret {secret_id!r} is not a JSON object of NAME: value pairs.")
    return {str(k): str(v) for k, v in data.items() if NAME_RE.match(str(k))}


def load_external_secrets(
    environ: MutableMapping[str, str] | None = None,
    *,
    client_factory: Callable[[str, str | None], Any] = _boto3_client,
) -> list[str]:
    """Fill ``environ`` from the configured stores; returns the names it set (never the values)."""
    environ = os.environ if environ is None else environ
    path = environ.get("AWS_SSM_PARAMETER_PATH", "").strip()
    secret_id = environ.get("AWS_SECRETS_MANAGER_SECRET_ID", "").strip()
    if not path and not secret_id:
        return []
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    loaded: dict[str, str] = {}
    try:
        if path:
            loaded.update(from_ssm(client_factory("ssm", region), path))
        if secret_id:
            loaded.update(from_secrets_manager(client_factory("secretsmanager", region), secret_id))
    except SecretsLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read the store stops start-up
        raise SecretsLoadError(f"Could not load secrets from AWS ({exc.__class__.__name__}: {exc}).") from exc
    set_names = []
    for name, value in sorted(loaded.items()):
        if name not in environ:
            environ[name] = value
            set_names.append(name)
    return set_names
