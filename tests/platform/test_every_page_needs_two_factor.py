"""No page forgets the second factor.

Walks every URL pattern of the project, fills its parameters with plausible
values, and checks that anything not on the explicit public allow-list sends
an anonymous visitor to sign-in and a password-only session to the code step.
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch

CANDIDATE_VALUES = ["1", "x", "accounts", "pay_x1", "00000000-0000-0000-0000-000000000000", "abc-def"]


def _walk(patterns: list, namespace: str = "", prefix: str = "") -> tuple[list[str], list[str]]:
    """Returns (named view names, sample paths of unnamed patterns such as the admin's redirects)."""
    names: list[str] = []
    unnamed: list[str] = []
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            sub_names, sub_unnamed = _walk(entry.url_patterns, ns, route)
            names.extend(sub_names)
            unnamed.extend(sub_unnamed)
        elif isinstance(entry, URLPattern):
            if entry.name:
                names.append(f"{namespace}{entry.name}")
            else:
                unnamed.append(_fill_route(route))
    return names, unnamed


def _fill_route(route: str) -> str:
    route = re.sub(r"<(?:\w+:)?\w+>", "1", route)
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    return "/" + route.replace("^", "").replace("$", "")


def all_view_names() -> list[str]:
    return sorted(set(_walk(get_resolver().url_patterns)[0]))


UNNAMED_PATHS = sorted(set(_walk(get_resolver().url_patterns)[1]))


def _params_for(view_name: str) -> list[str]:
    resolver = get_resolver()
    *namespaces, name = view_name.split(":")
    for ns in namespaces:
        resolver = resolver.namespace_dict[ns][1]
    params: set[str] = set()
    for possibility, _pattern, _defaults, _converters in resolver.reverse_dict.getlist(name):
        for _fmt, keys in possibility:
            params.update(keys)
    return sorted(params)


def sample_url(view_name: str) -> str:
    params = _params_for(view_name)
    if not params:
        return reverse(view_name)
    for values in itertools.product(CANDIDATE_VALUES, repeat=len(params)):
        try:
            return reverse(view_name, kwargs=dict(zip(params, values, strict=True)))
        except NoReverseMatch:
            continue
    raise AssertionError(f"could not build a sample URL for {view_name} ({params})")


VIEW_NAMES = all_view_names()
PROTECTED = [n for n in VIEW_NAMES if n not in settings.PUBLIC_URL_NAMES]


def test_the_walk_finds_the_projects_pages() -> None:
    # Guard against the walk silently finding nothing.
    for expected in ("home", "team", "admin:index", "account_change_password", "api_me"):
        assert expected in VIEW_NAMES
    assert len(PROTECTED) > 30


def test_public_allow_list_names_real_pages() -> None:
    missing = settings.PUBLIC_URL_NAMES - set(VIEW_NAMES)
    assert not missing, f"allow-listed names with no URL: {missing}"


@pytest.mark.django_db
@pytest.mark.parametrize("view_name", PROTECTED)
def test_anonymous_visitor_is_sent_to_sign_in(client, view_name: str) -> None:
    url = sample_url(view_name)
    response = client.get(url)
    if url.startswith("/api/"):
        assert response.status_code == 401, (view_name, response.status_code)
        assert response.json()["error"]["code"] == "not_authenticated"
        return
    assert response.status_code == 302, (view_name, url, response.status_code)
    assert urlparse(response["Location"]).path == reverse("account_login"), (view_name, response["Location"])


@pytest.mark.django_db
@pytest.mark.parametrize("view_name", [n for n in PROTECTED if n not in settings.PARTIAL_AUTH_URL_NAMES])
def test_password_only_session_is_sent_to_the_code_step(password_only_client, owner, view_name: str) -> None:
    client = password_only_client(owner)
    url = sample_url(view_name)
    response = client.get(url)
    if url.startswith("/api/"):
        assert response.status_code == 403, (view_name, response.status_code)
        assert response.json()["error"]["code"] == "second_factor_required"
        return
    assert response.status_code == 302, (view_name, url, response.status_code)
    assert urlparse(response["Location"]).path == reverse("two_factor_verify"), (
        view_name,
        response["Location"],
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", UNNAMED_PATHS)
def test_unnamed_patterns_are_protected_too(client, password_only_client, owner, path: str) -> None:
    anonymous = client.get(path)
    assert anonymous.status_code == 302 and urlparse(anonymous["Location"]).path == reverse("account_login")
    partial = password_only_client(owner).get(path)
    assert partial.status_code == 302 and urlparse(partial["Location"]).path == reverse("two_factor_verify")


@pytest.mark.django_db
def test_password_only_session_without_authenticator_is_sent_to_enrolment(password_only_client, db) -> None:
    from tests.conftest import make_user

    user = make_user("fresh@example.com", with_totp=False)
    response = password_only_client(user).get(reverse("team"))
    assert response.status_code == 302
    assert urlparse(response["Location"]).path == reverse("two_factor_enrol")


@pytest.mark.django_db
@pytest.mark.parametrize("view_name", sorted(settings.PUBLIC_URL_NAMES))
def test_public_pages_open_without_signing_in(client, view_name: str) -> None:
    response = client.get(sample_url(view_name))
    # Public pages answer themselves (an invalid token is a 404 page, a webhook refuses GET with 405).
    assert response.status_code in (200, 302, 404, 405, 410), (view_name, response.status_code)
    if response.status_code == 302:
        assert urlparse(response["Location"]).path != reverse("account_login")
