"""The Content-Security-Policy on every page: scripts only from this server, inline styles only with the nonce.
(tests/pages/test_browser.py loads the pages in Chromium, where a violation is a console error.)"""

import re

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db
PAGES = [
    "/",
    "/try/",
    "/staff/usage/",
    "/api/docs/",
    "/api/redoc/",
    "/admin/login/",
    "/admin/",
    "/admin/accounts/apikey/add/",
]
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.S)
INLINE_STYLE = re.compile(r"<style\b[^>]*>", re.S)


@pytest.fixture
def superuser_client():
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    return client


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.usefixtures("loaded_model")
@pytest.mark.parametrize("url", PAGES)
def test_every_page_has_a_strict_policy_and_no_inline_script(superuser_client, url):
    response = (Client() if url == "/admin/login/" else superuser_client).get(url)
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert not any("unsafe" in value for name, values in policy.items() if name != "style-src" for value in values)
    html = response.content.decode()
    assert INLINE_SCRIPT.findall(html) == []
    if url == "/api/redoc/":  # ReDoc's bundle adds <style> elements before it could be given a nonce
        assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    else:
        assert "'unsafe-inline'" not in policy["style-src"]
        nonce = next(value for value in policy["style-src"] if value.startswith("'nonce-"))[len("'nonce-") : -1]
        assert all(f'nonce="{nonce}"' in tag for tag in INLINE_STYLE.findall(html))
    assert not re.search(r"<[^>]+\sstyle=", html), "inline style attributes would be blocked"
    assert not re.search(r"<[^>]+\son[a-z]+=", html), "inline event handlers would be blocked"


def test_each_response_gets_a_fresh_nonce(client):
    nonces = {
        re.search(r"'nonce-([^']+)'", client.get("/api/docs/")["Content-Security-Policy"]).group(1) for _ in range(3)
    }
    assert len(nonces) == 3


def test_the_swagger_page_loads_its_start_up_script_from_this_server(client):
    html = client.get("/api/docs/").content.decode()
    script_url = re.search(r'<script src="(/api/docs/\?[^"]*script[^"]*)"', html).group(1).replace("&amp;", "&")
    script = client.get(script_url)
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


def test_api_answers_carry_the_policy_too(client):
    assert "Content-Security-Policy" in client.get("/api/v2/models")


def test_the_policy_is_a_setting_and_empty_sends_none(client, settings):
    assert "{nonce}" in django_settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = settings.CONTENT_SECURITY_POLICY_REDOC = ""
    assert "Content-Security-Policy" not in client.get("/api/docs/")
    assert "Content-Security-Policy" not in client.get("/api/redoc/")
