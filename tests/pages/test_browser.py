"""End to end in Debian's Chromium, headless, against a real uvicorn server with DJANGO_DEBUG off.

Each test saves a screenshot to test-artifacts/ and checks the page logged no console error.
"""

import base64

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.model_weights import picture
from tests.pages.conftest import STAFF_PASSWORD, STAFF_USER, save_screenshot

pytestmark = pytest.mark.live
WAIT_SECONDS = 30


def wait(driver):
    return WebDriverWait(driver, WAIT_SECONDS)


def external_or_failed(requests_seen: list[dict], origin: str) -> list[dict]:
    """Requests that left this server, got no answer, or were answered with an error status."""
    return [
        r
        for r in requests_seen
        if r["url"].startswith("http") and (not r["url"].startswith(origin) or r["failed"] or (r["status"] or 0) >= 400)
    ]


def images(tmp_path, *labels_and_formats):
    """Write the synthetic pictures; return their paths in order."""
    paths = []
    for i, (label, fmt) in enumerate(labels_and_formats):
        path = tmp_path / f"{i}-{label.replace(' ', '-')}.{fmt.lower()}"
        path.write_bytes(picture(label, fmt=fmt))
        paths.append(str(path))
    return paths


def classify_in_page(driver, server, key, paths):
    driver.get(f"{server.url}/try/")
    key_input = driver.find_element(By.ID, "api-key")
    key_input.clear()
    key_input.send_keys(key)
    driver.find_element(By.ID, "files").send_keys("\n".join(paths))
    driver.find_element(By.ID, "classify-button").click()


def test_landing_page_renders_with_its_styles_and_links(browser, page_log, web_server):
    browser.get(f"{web_server.url}/")

    status = wait(browser).until(EC.visibility_of_element_located((By.ID, "server-status")))
    assert status.text == "ready"
    # The stylesheet came through WhiteNoise with DEBUG off: the badge has its colour.
    assert status.value_of_css_property("background-color") == "rgba(223, 245, 227, 1)"
    row = browser.find_element(By.CSS_SELECTOR, '#models tr[data-model="resnet18"]')
    assert row.find_element(By.CLASS_NAME, "model-status").text == "loaded"
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav a")}
    assert links["Try it in the browser"] == f"{web_server.url}/try/"
    assert links["API docs (Swagger UI)"] == f"{web_server.url}/api/docs/"
    assert links["Admin"] == f"{web_server.url}/admin/"
    assert f"curl -s {web_server.url}/api/v2/classify" in browser.find_element(By.ID, "curl-example").text
    assert external_or_failed(page_log.requests(), web_server.url) == []
    assert page_log.console_errors() == []


def test_try_page_classifies_images_and_shows_labelled_bars(browser, page_log, web_server, tmp_path):
    key = web_server.create_key("browser-try", rate_limit=100)
    paths = images(tmp_path, ("goldfish", "JPEG"), ("tree frog", "PNG"))

    classify_in_page(browser, web_server, key, paths)

    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == 2)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    for card, expected in zip(cards, ["goldfish", "tree frog"]):
        bars = card.find_elements(By.CSS_SELECTOR, ".prediction")
        assert len(bars) == 5
        assert bars[0].find_element(By.CLASS_NAME, "label").text == expected
        confidences = [float(bar.get_attribute("data-confidence")) for bar in bars]
        assert confidences == sorted(confidences, reverse=True) and confidences[0] > 0.5
        fill = bars[0].find_element(By.CLASS_NAME, "bar-fill")
        track = bars[0].find_element(By.CLASS_NAME, "bar")
        assert fill.size["width"] == pytest.approx(track.size["width"] * confidences[0], abs=2)
        assert browser.execute_script("return arguments[0].naturalWidth", card.find_element(By.TAG_NAME, "img")) > 0
    save_screenshot(browser, "try_page_results")
    # The key lives in this tab's session storage only, and survives a reload there.
    assert browser.execute_script("return sessionStorage.getItem('aiserver.apiKey')") == key
    assert browser.execute_script("return localStorage.length") == 0 and browser.get_cookies() == []
    browser.refresh()
    assert wait(browser).until(lambda d: d.find_element(By.ID, "api-key").get_attribute("value")) == key
    assert page_log.console_errors() == []
    sent = [r for r in page_log.requests() if r["url"].endswith("/api/v2/classify")]
    assert [r["status"] for r in sent] == [200]


def test_a_bad_key_shows_the_401_message(browser, page_log, web_server, tmp_path):
    classify_in_page(browser, web_server, "ais_00000000.not-a-real-key", images(tmp_path, ("jellyfish", "PNG")))

    message = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#message.error")))
    assert message.text.startswith("401") and "API key was not accepted" in message.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results .result") == []
    # The only console error is the browser's own report of the 401 answer.
    errors = page_log.console_errors()
    assert len(errors) == 1 and "/api/v2/classify" in errors[0] and "401" in errors[0]


def test_a_spent_quota_shows_the_429_message_with_the_wait(browser, web_server, tmp_path):
    key = web_server.create_key("browser-429", rate_limit=1, window=600)
    paths = images(tmp_path, ("goldfish", "PNG"))
    classify_in_page(browser, web_server, key, paths)
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == 1)

    browser.find_element(By.ID, "classify-button").click()

    message = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#message.error")))
    assert message.text.startswith("429") and "Try again in" in message.text
    seconds = int(message.text.split("Try again in ")[1].split()[0])
    assert 590 <= seconds <= 600


def test_dashboard_charts_the_requests_that_were_made(browser, page_log, web_server):
    key = web_server.create_key("dashboard-key", rate_limit=2)
    body = {"images": [{"image": base64.b64encode(picture("goldfish")).decode()}]}
    statuses = [
        requests.post(
            f"{web_server.url}/api/v2/classify", json=body, headers={"X-API-Key": key}, timeout=60
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]

    browser.get(f"{web_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(STAFF_USER)
    browser.find_element(By.ID, "id_password").send_keys(STAFF_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(browser).until(EC.element_to_be_clickable((By.LINK_TEXT, "Usage dashboard"))).click()
    Select(wait(browser).until(EC.presence_of_element_located((By.ID, "id_key")))).select_by_visible_text(
        next(
            o.text for o in Select(browser.find_element(By.ID, "id_key")).options if o.text.startswith("dashboard-key")
        )
    )
    unfiltered = browser.find_element(By.ID, "requests-chart")
    browser.find_element(By.CSS_SELECTOR, "#usage-filter input[type=submit]").click()
    wait(browser).until(EC.staleness_of(unfiltered))  # the filtered page, not the one before it

    datasets = wait(browser).until(
        lambda d: d.execute_script(
            "const chart = window.Chart && Chart.getChart('requests-chart');"
            "return chart && chart.data.datasets.map(s => [s.label, s.data.reduce((a, b) => a + b, 0)]);"
        )
    )
    assert datasets == [["dashboard-key", 3]]
    status_chart = browser.execute_script(
        "const c = Chart.getChart('status-chart'); return [c.data.labels, c.data.datasets[0].data];"
    )
    assert status_chart == [["200", "429"], [2, 1]]
    painted = browser.execute_script(
        "const c = document.getElementById('requests-chart');"
        "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n;"
    )
    assert painted > 1000  # the bars and axes were drawn
    assert browser.find_element(By.ID, "throttled-requests").text == "1"
    assert browser.find_element(By.ID, "total-requests").text == "3"
    assert external_or_failed(page_log.requests(), web_server.url) == []
    assert page_log.console_errors() == []


def test_swagger_ui_loads_offline_and_try_it_out_works_with_a_key(browser, page_log, web_server):
    key = web_server.create_key("swagger-key", rate_limit=10)
    browser.get(f"{web_server.url}/api/docs/")
    operation = wait(browser).until(
        EC.element_to_be_clickable(
            (By.XPATH, "//div[contains(@class,'opblock-get') and .//*[@data-path='/api/v2/usage']]")
        )
    )

    browser.find_element(By.CSS_SELECTOR, "button.authorize").click()
    bearer = wait(browser).until(
        EC.visibility_of_element_located(
            (By.XPATH, "//div[contains(@class,'auth-container') and .//h4[contains(., 'BearerAuth')]]//input")
        )
    )
    bearer.send_keys(key)
    browser.find_element(
        By.XPATH,
        "//div[contains(@class,'auth-container') and .//h4[contains(., 'BearerAuth')]]"
        "//button[contains(@class,'authorize')]",
    ).click()
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait(browser).until(EC.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn"))).click()
    wait(browser).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "button.execute"))).click()

    status = wait(browser).until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"))
    )
    assert status.text == "200"
    assert '"name": "swagger-key"' in browser.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text
    # persistAuthorization is off: the pasted key lives in the page only, never in localStorage.
    assert key not in browser.execute_script("return JSON.stringify(localStorage)")
    assert external_or_failed(page_log.requests(), web_server.url) == []
    assert page_log.console_errors() == []


def test_redoc_loads_offline_with_no_failed_request(browser, page_log, web_server):
    browser.get(f"{web_server.url}/api/redoc/")

    wait(browser).until(
        EC.visibility_of_element_located((By.XPATH, "//h1[contains(., 'aiserver image classification API')]"))
    )
    assert browser.find_elements(By.XPATH, "//*[contains(@data-section-id, 'v2_classify')]")
    seen = page_log.requests()
    assert any(r["url"].endswith("/api/schema/") and r["status"] == 200 for r in seen)
    assert external_or_failed(seen, web_server.url) == []
    assert page_log.console_errors() == []


@pytest.mark.parametrize(
    "status,headers,body,expected",
    [
        (
            413,
            {},
            {"detail": "The request body is over the limit of 10 bytes.", "code": "payload_too_large"},
            "413 — the upload is too large: The request body is over the limit of 10 bytes. Send fewer or smaller images.",
        ),
        (
            503,
            {"Retry-After": "7"},
            {"detail": "The model is loading.", "code": "model_unavailable"},
            "503 — the server cannot classify right now: The model is loading. Try again in 7 seconds.",
        ),
        (
            429,
            {"RateLimit": '"sliding";r=0;t=1'},
            {"detail": "Request was throttled.", "code": "throttled"},
            "429 — rate limit reached for this key: Request was throttled. Try again in 1 second.",
        ),
    ],
)
def test_try_page_explains_each_error_answer(browser, web_server, tmp_path, status, headers, body, expected):
    """The page's own handling of answers hard to provoke on demand, with the browser's fetch answering them."""
    browser.get(f"{web_server.url}/try/")
    browser.execute_script(
        "const [status, headers, body] = arguments;"
        "window.fetch = async (url, init) => {"
        "  window.sent = [url, init.method, init.headers.Authorization, init.body.getAll('files').length];"
        "  return new Response(JSON.stringify(body), {status, headers});"
        "};",
        status,
        headers,
        body,
    )
    classify_path = images(tmp_path, ("goldfish", "PNG"))
    browser.find_element(By.ID, "api-key").send_keys("ais_12345678.some-key")
    browser.find_element(By.ID, "files").send_keys(classify_path[0])
    browser.find_element(By.ID, "classify-button").click()

    message = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#message.error")))
    assert message.text == expected
    assert browser.execute_script("return window.sent") == [
        "/api/v2/classify",
        "POST",
        "Bearer ais_12345678.some-key",
        1,
    ]


def test_images_dropped_on_the_page_are_classified(browser, page_log, web_server):
    key = web_server.create_key("browser-drop", rate_limit=100)
    browser.get(f"{web_server.url}/try/")
    browser.find_element(By.ID, "api-key").send_keys(key)

    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const files = new DataTransfer();"
        "files.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));"
        "document.getElementById('drop-zone').dispatchEvent("
        "  new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true}));",
        base64.b64encode(picture("jellyfish", fmt="PNG")).decode(),
    )
    browser.find_element(By.ID, "classify-button").click()

    card = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#results .result")))
    assert card.find_element(By.CLASS_NAME, "filename").text == "dropped.png"
    assert card.find_element(By.CSS_SELECTOR, ".prediction .label").text == "jellyfish"
    assert page_log.console_errors() == []
