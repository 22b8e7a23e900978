"""The model versions admin in Debian's Chromium against a real uvicorn server (DJANGO_DEBUG off, the strict
Content-Security-Policy): upload a version's files, read its validation report, activate it, upload a second,
activate that, and roll back to the first with the Roll back button; the server answers with each in turn."""

import base64
import time

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.live.server import LiveServer
from tests.model_weights import flower_picture
from tests.pages.conftest import STAFF_PASSWORD, STAFF_USER, save_screenshot
from tests.pages.test_browser import external_or_failed

pytestmark = pytest.mark.live
WAIT_SECONDS = 30
# The upload runs the validation gate (a separate process) before the page answers: give it the gate's time.
UPLOAD_PAGE_SECONDS = 300
SWITCH_DEADLINE_SECONDS = 5.0  # the promise (tests/live/test_version_switch_live.py checks it under load)
ROSE = base64.b64encode(flower_picture("rose")).decode()
LABEL_OF = {"1": "rose", "2": "rose-v2"}  # relabelled_flowers: v2's labels end in "-v2"
CHECKS = ["loads", "labels", "forward", "latency"]


@pytest.fixture(scope="module")
def versions_server(tmp_path_factory):
    """A server whose body limit takes a ResNet-18's TorchScript file (~45 MB) through the admin form, with its
    own media and model cache folders; the settings model is random weights (this test serves "flowers")."""
    root = tmp_path_factory.mktemp("admin-versions-live")
    live = LiveServer(
        database_url=f"sqlite:///{root / 'db.sqlite3'}",
        weights="random",
        workers=1,
        extra_env={
            "DJANGO_SESSION_COOKIE_SECURE": "false",
            "DJANGO_CSRF_COOKIE_SECURE": "false",
            "API_MAX_BODY_BYTES": str(200 * 1024 * 1024),
            "DJANGO_MEDIA_ROOT": str(root / "media"),
            "CLASSIFIER_MODEL_CACHE_DIR": str(root / "model-cache"),
            "CLASSIFIER_ENGINE": "torch",
            "CLASSIFIER_RESULT_CACHE_SECONDS": "0",
            "CLASSIFIER_MODEL_DRAIN_SECONDS": "0.5",
            "CLASSIFIER_MAX_BATCH_SIZE": "4",
        },
    ).start()
    live.create_superuser(STAFF_USER, STAFF_PASSWORD)
    yield live
    live.stop()


def wait(driver, seconds: float = WAIT_SECONDS):
    return WebDriverWait(driver, seconds)


def log_in(driver, server) -> None:
    driver.get(f"{server.url}/admin/login/?next=/admin/")
    driver.find_element(By.ID, "id_username").send_keys(STAFF_USER)
    driver.find_element(By.ID, "id_password").send_keys(STAFF_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "site-name")))


def upload_version(driver, server, folder, version: str) -> None:
    """Fill the add form with the folder's model.ts, labels.json and config.json and save it; end on the version's page."""
    driver.get(f"{server.url}/admin/classifier/modelversion/add/")
    driver.find_element(By.ID, "id_name").send_keys("flowers")
    driver.find_element(By.ID, "id_version").send_keys(version)
    driver.find_element(By.ID, "id_model_upload").send_keys(str(folder / "model.ts"))
    driver.find_element(By.ID, "id_labels_upload").send_keys(str(folder / "labels.json"))
    driver.find_element(By.ID, "id_config_upload").send_keys(str(folder / "config.json"))
    driver.find_element(By.ID, "id_notes").send_keys(f"uploaded in the browser test, version {version}")
    driver.find_element(By.CSS_SELECTOR, "input[name=_save]").click()
    message = wait(driver, UPLOAD_PAGE_SECONDS).until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, "ul.messagelist li"))
    )
    # The admin's base template shows messages through capfirst.
    assert message.text.startswith(f"Flowers@{version}: Passed: loads"), message.text
    assert "success" in message.get_attribute("class")
    driver.find_element(By.LINK_TEXT, f"flowers@{version}").click()
    wait(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#content h2"), f"flowers@{version}"))


def field_text(driver, field: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f".field-{field} .readonly").text


def press_activate(driver, expected_button: str, expected_message: str) -> None:
    button = driver.find_element(By.ID, "activate-version")
    assert button.text == expected_button and button.is_enabled()
    button.click()
    message = wait(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "ul.messagelist li")))
    assert message.text.startswith(expected_message), message.text
    assert field_text(driver, "status") == "Active"
    assert driver.find_elements(By.ID, "activate-version") == []  # no button on the active version


def open_version(driver, server, version: str) -> None:
    driver.get(f"{server.url}/admin/classifier/modelversion/")
    driver.find_element(By.LINK_TEXT, f"flowers@{version}").click()
    wait(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#content h2"), f"flowers@{version}"))


def wait_until_served(server, key: str, version: str) -> float:
    """Poll /api/v2/models until the server lists flowers@version loaded, then check a classification is that
    version's; return the seconds the listing took (failing after WAIT_SECONDS)."""
    started = time.monotonic()
    listed = None
    while time.monotonic() < started + WAIT_SECONDS:
        models = requests.get(f"{server.url}/api/v2/models", timeout=10).json()["models"]
        listed = next((m for m in models if m["name"] == "flowers"), None)
        if listed and listed["version"] == version and listed["status"] == "loaded":
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"flowers@{version} was not served within {WAIT_SECONDS} s; /api/v2/models lists {listed}")
    took = time.monotonic() - started
    response = requests.post(
        f"{server.url}/api/v2/classify",
        headers={"X-API-Key": key},
        timeout=30,
        json={"images": [{"image": ROSE}], "model": "flowers", "top_k": 1},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == version
    assert body["results"][0]["predictions"][0]["label"] == LABEL_OF[version]
    return took


def report_checks(driver) -> dict[str, str]:
    rows = driver.find_elements(By.CSS_SELECTOR, ".validation-checks tr")[1:]
    return {cells[0].text: cells[1].text for cells in (row.find_elements(By.TAG_NAME, "td") for row in rows)}


@pytest.mark.timeout(900)
def test_upload_see_the_report_activate_and_roll_back_in_the_admin(
    browser, page_log, versions_server, relabelled_flowers
):
    server = versions_server
    key = server.create_key("admin-versions", rate_limit=1000)
    browser.set_page_load_timeout(UPLOAD_PAGE_SECONDS)
    log_in(browser, server)

    upload_version(browser, server, relabelled_flowers["v1"], "1")
    assert field_text(browser, "status") == "Staged"
    assert browser.find_element(By.CSS_SELECTOR, ".field-validated img").get_attribute("alt") == "True"
    assert browser.find_element(By.CSS_SELECTOR, ".validation-summary").text.startswith("Passed: loads: torchscript")
    assert report_checks(browser) == {check: "passed" for check in CHECKS}
    latency = browser.find_element(By.XPATH, "//table[@class='validation-checks']/following-sibling::p").text
    assert latency.startswith("Latency (median ms): batch_1: ") and "batch_4: " in latency
    assert float(latency.split("batch_1: ")[1].split(",")[0]) > 0
    save_screenshot(browser, "admin_version_report")

    press_activate(browser, "Activate", "Activated flowers@1")
    switch_seconds = [wait_until_served(server, key, "1")]

    upload_version(browser, server, relabelled_flowers["v2"], "2")
    assert report_checks(browser) == {check: "passed" for check in CHECKS}
    press_activate(browser, "Activate", "Activated flowers@2")
    switch_seconds.append(wait_until_served(server, key, "2"))

    open_version(browser, server, "1")
    assert field_text(browser, "status") == "Retired"
    press_activate(browser, "Roll back to this version", "Rolled back to flowers@1")
    switch_seconds.append(wait_until_served(server, key, "1"))
    open_version(browser, server, "2")
    assert field_text(browser, "status") == "Retired"
    assert browser.find_element(By.ID, "activate-version").text == "Roll back to this version"
    assert all(seconds < SWITCH_DEADLINE_SECONDS for seconds in switch_seconds), switch_seconds

    assert page_log.console_errors() == []
    assert external_or_failed(page_log.requests(), server.url) == []
