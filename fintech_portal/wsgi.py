"""WSGI entry point (gunicorn): Django, with the gateways' webhooks answered on a fast path."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fintech_portal.settings")
django_application = get_wsgi_application()

from fintech_portal.webhook_wsgi import webhook_fast_path  # noqa: E402 - needs Django set up

application = webhook_fast_path(django_application)
