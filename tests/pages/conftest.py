"""A real server with collected static files (DJANGO_DEBUG off) and Debian's Chromium driven headless.

Chromium and ChromeDriver come from Debian's packages (`make browser`, run by `make test`); test tools
cannot download browsers here. Without them the browser tests skip, except under CI (tests.services.under_ci),
where they fail.
"""

import json
import os
import re
from pathlib import Path

import pytest

from tests.live.server import ROOT, LiveServer
from tests.services import under_ci

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver"))
ARTIFACTS = ROOT / "test-artifacts"
STAFF_USER, STAFF_PASSWORD = "site-owner", "browser-test-password-7"
# As root on these machines Chromium needs no sandbox, and must not reach out to Google's services.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
]


@pytest.fixture(scope="package")
def web_server(tmp_path_factory, weights_path):
    """One uvicorn server as deployed: DJANGO_DEBUG off, collectstatic done, WhiteNoise serving; plain HTTP."""
    root = tmp_path_factory.mktemp("web-live")
    live = LiveServer(
        database_url=f"sqlite:///{root / 'db.sqlite3'}",
        weights=str(weights_path),
        workers=1,
        static_root=root / "static",
        extra_env={"DJANGO_SESSION_COOKIE_SECURE": "false", "DJANGO_CSRF_COOKIE_SECURE": "false"},
    ).start()
    live.create_superuser(STAFF_USER, STAFF_PASSWORD)
    yield live
    live.stop()


def _require_chromium() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"{', '.join(missing)} missing: run `make browser` (.ci/install-browser)"
        if under_ci():
            pytest.fail(f"{message}; CI must run the browser tests", pytrace=False)
        pytest.skip(message)


def save_screenshot(driver, name: str) -> Path:
    """Save what the browser shows now as test-artifacts/<name>.png (git-ignored) and return the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    driver.save_screenshot(str(path))
    return path


@pytest.fixture
def browser(request, tmp_path):
    """A fresh headless Chromium (own profile) that saves a screenshot to test-artifacts/ when the test ends."""
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    try:
        save_screenshot(driver, request.node.name)
    finally:
        driver.quit()


class PageLog:
    """What the browser logged since the last read: console messages and network requests."""

    def __init__(self, driver):
        self.driver = driver

    def console_errors(self) -> list[str]:
        """Console entries at SEVERE level (uncaught errors, console.error, failed resource loads)."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def requests(self) -> list[dict]:
        """Every network request since the last read: {"url", "status" (None if none came), "failed"}."""
        seen: dict[str, dict] = {}
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                seen[params["requestId"]] = {"url": params["request"]["url"], "status": None, "failed": ""}
            elif message["method"] == "Network.responseReceived" and params["requestId"] in seen:
                seen[params["requestId"]]["status"] = params["response"]["status"]
            elif message["method"] == "Network.loadingFailed" and params["requestId"] in seen:
                seen[params["requestId"]]["failed"] = params.get("errorText", "failed")
        return list(seen.values())


@pytest.fixture
def page_log(browser):
    return PageLog(browser)
