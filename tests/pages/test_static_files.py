"""Static files in production: DJANGO_DEBUG off, collectstatic done, real uvicorn, WhiteNoise serving."""

import re
from urllib.parse import urljoin

import pytest
import requests

pytestmark = pytest.mark.live
ASSET = re.compile(r"""(?:src|href)=["']([^"']*/static/[^"']+)["']""")


def assets_of(server, path: str, session: requests.Session | None = None) -> list[str]:
    """The static files a page links to, as absolute URLs."""
    html = (session or requests).get(f"{server.url}{path}", timeout=30).text
    return [urljoin(f"{server.url}{path}", url) for url in ASSET.findall(html)]


@pytest.fixture(scope="module")
def staff_session(web_server):
    from tests.pages.conftest import STAFF_PASSWORD, STAFF_USER

    session = requests.Session()
    login = f"{web_server.url}/admin/login/"
    token = session.get(login, timeout=30).cookies["csrftoken"]
    response = session.post(
        login,
        data={"username": STAFF_USER, "password": STAFF_PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"},
        headers={"Referer": login},
        timeout=30,
    )
    assert response.url == f"{web_server.url}/admin/"
    return session


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/admin/login/", "admin/css/base."),
        ("/api/docs/", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle."),
        ("/api/redoc/", "drf_spectacular_sidecar/redoc/bundles/redoc.standalone."),
        ("/", "classifier/pages."),
        ("/try/", "classifier/try."),
    ],
)
def test_pages_link_hashed_static_files_that_are_served(web_server, path, expected):
    urls = assets_of(web_server, path)

    assert any(expected in url for url in urls), urls
    for url in urls:
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, url
        # The manifest storage names each file by its content hash, so WhiteNoise lets browsers keep it for good.
        assert re.search(r"\.[0-9a-f]{12}\.\w+$", url), url
        assert "immutable" in response.headers["Cache-Control"], url


def test_staff_dashboard_assets_are_served(web_server, staff_session):
    urls = assets_of(web_server, "/staff/usage/", staff_session)

    assert any("classifier/vendor/chartjs/chart.umd." in url for url in urls)
    assert any("classifier/usage." in url for url in urls)
    for url in urls:
        assert requests.get(url, timeout=30).status_code == 200, url


def test_static_files_are_sent_compressed_with_their_types(web_server):
    script = next(url for url in assets_of(web_server, "/try/") if "classifier/try." in url)
    style = next(url for url in assets_of(web_server, "/admin/login/") if "admin/css/base." in url)

    gzipped = requests.get(script, headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert gzipped.headers["Content-Encoding"] == "gzip" and "text/javascript" in gzipped.headers["Content-Type"]
    assert "sessionStorage" in gzipped.text
    assert "text/css" in requests.get(style, timeout=30).headers["Content-Type"]


def test_unknown_static_file_is_404_and_favicon_is_served(web_server):
    assert requests.get(f"{web_server.url}/static/classifier/nothing-here.js", timeout=30).status_code == 404
    favicon = requests.get(f"{web_server.url}/favicon.ico", timeout=30)
    assert favicon.status_code == 200 and favicon.content[:4] == b"\x00\x00\x01\x00"
