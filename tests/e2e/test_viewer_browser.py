"""The session viewer in a real browser: Debian's headless Chromium driven by Selenium
through /usr/bin/chromedriver, against a real receiver on loopback fed by smtplib.

The pages are saved as screenshots to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import contextlib
import shutil
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

pytestmark = pytest.mark.e2e

CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TOKEN = "viewer-e2e-token"
HOSTILE = "<script>alert(1)</script>"
SCENARIO: dict[str, Any] = {
    "name": "viewer-e2e",
    "description": "Refuses HELO names that are not fully qualified, at RCPT",
    "policies": {"helo": [{"policy": "helo_syntax", "require_fqdn": True}]},
    "world": {"clients": {"127.0.0.1": {"address": "203.0.113.7", "name": "mail.example.net"}}},
}
HTML_MESSAGE = (
    b"From: <alice@example.net>\r\n"
    b"To: <bob@example.org>\r\n"
    b"Subject: <script>alert(1)</script> newsletter\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <viewer-e2e-1@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<h1>Hello</h1><script>alert(2)</script><img src=x onerror=alert(3)>\r\n"
)
#: Seconds the list may take to show a session after the client was refused.
LIVE_WITHIN = 1.0


def chromium(javascript: bool = True) -> WebDriver:
    if shutil.which("chromium") is None or not Path(CHROMEDRIVER).exists():
        pytest.fail("Debian's chromium and chromium-driver are needed (scripts/test installs them)")
    options = webdriver.ChromeOptions()
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, where Chromium's sandbox will not start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    browser = chromium()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def rx(strictmx: StrictmxFactory) -> StrictmxReceiver:
    scenario = scenarios.from_dict(SCENARIO, source="<test>")
    return strictmx(scenario, api_listen=("127.0.0.1", 0), api_token=TOKEN)


def base_of(rx: StrictmxReceiver) -> str:
    assert rx.api is not None
    return rx.api.url.removesuffix("/api/v1")


def sign_in(driver: WebDriver, rx: StrictmxReceiver) -> None:
    driver.delete_all_cookies()
    driver.get(base_of(rx) + "/")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(driver, 5).until(ec.presence_of_element_located((By.ID, "sessions")))


def smtp(rx: StrictmxReceiver, helo: str, message: bytes | None = None) -> bool:
    """One session; True if the recipient was accepted."""
    with smtplib.SMTP("127.0.0.1", rx.port, timeout=10) as client:
        client.ehlo(helo)
        try:
            client.sendmail("alice@example.net", ["bob@example.org"], message or b"x\r\n")
        except smtplib.SMTPRecipientsRefused:
            return False
    return True


def no_alert(driver: WebDriver) -> None:
    with contextlib.suppress(NoAlertPresentException):
        text = driver.switch_to.alert.text
        pytest.fail(f"a script of the client's ran: alert {text!r}")


def shoot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The window's own bars take part of its height: add them to the page's.
    height = driver.execute_script(
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight"
    )
    driver.set_window_size(1400, max(700, min(int(height) + 20, 2400)))
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def test_refused_session_appears_live_and_filters_work(
    driver: WebDriver, rx: StrictmxReceiver
) -> None:
    smtp(rx, "mail.example.net")  # one accepted before the page is open
    rx.settle()
    sign_in(driver, rx)
    WebDriverWait(driver, 5).until(ec.visibility_of_element_located((By.ID, "live")))
    assert not smtp(rx, "localhost")  # refused: not fully qualified
    refused_at = time.monotonic()
    row = WebDriverWait(driver, LIVE_WITHIN, poll_frequency=0.02).until(
        ec.visibility_of_element_located((By.XPATH, "//tr[td[@class='helo' and .='localhost']]"))
    )
    assert time.monotonic() - refused_at < LIVE_WITHIN
    assert "rejected" in row.text and "helo_syntax" in row.text
    assert "203.0.113.7" in row.text  # the client as simulated
    # The newest is on top.
    first = driver.find_elements(By.CSS_SELECTOR, "#rows tr")[0]
    assert "localhost" in first.text

    # Filters: by outcome.
    Select(driver.find_element(By.ID, "f-outcome")).select_by_value("accepted")
    driver.find_element(By.ID, "f-apply").click()
    WebDriverWait(driver, 5).until(ec.url_contains("outcome=accepted"))
    helos = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#rows td.helo")]
    assert helos == ["mail.example.net"]
    # A refused session does not reach a list filtered to accepted ones, an accepted one
    # does (live, too).
    assert not smtp(rx, "badhost")
    assert smtp(rx, "relay.example.net")
    WebDriverWait(driver, 2, poll_frequency=0.02).until(
        ec.visibility_of_element_located(
            (By.XPATH, "//tr[td[@class='helo' and .='relay.example.net']]")
        )
    )
    helos = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#rows td.helo")]
    assert "badhost" not in helos
    # Text search.
    driver.get(base_of(rx) + "/")
    box = driver.find_element(By.ID, "f-q")
    box.send_keys("HELO_NOT_FQDN")
    box.submit()
    WebDriverWait(driver, 5).until(ec.url_contains("q=HELO_NOT_FQDN"))
    helos = sorted(e.text for e in driver.find_elements(By.CSS_SELECTOR, "#rows td.helo"))
    assert helos == ["badhost", "localhost"]
    driver.get(base_of(rx) + "/")
    shoot(driver, "list")


def test_session_page_shows_transcript_verdict_reason_fix_and_inert_hostile_input(
    driver: WebDriver, rx: StrictmxReceiver
) -> None:
    assert not smtp(rx, HOSTILE)
    assert smtp(rx, "mail.example.net", HTML_MESSAGE)
    rx.settle()
    sign_in(driver, rx)
    no_alert(driver)
    # The hostile HELO is text in the list.
    cell = driver.find_element(By.XPATH, "//tr[contains(@class,'outcome-rejected')]/td[3]")
    assert cell.text == HOSTILE
    driver.find_element(By.XPATH, "//tr[contains(@class,'outcome-rejected')]/td[1]/a").click()
    WebDriverWait(driver, 5).until(ec.presence_of_element_located((By.ID, "transcript")))
    no_alert(driver)
    assert driver.find_element(By.ID, "helo").text == HOSTILE
    transcript = driver.find_element(By.ID, "transcript").text
    assert f"C: ehlo {HOSTILE}" in transcript or f"C: EHLO {HOSTILE}" in transcript
    assert "S: 220 " in transcript
    verdict = driver.find_element(By.CSS_SELECTOR, "#transcript .verdict")
    assert "helo_syntax" in verdict.text and "reject" in verdict.text
    assert driver.find_element(By.CSS_SELECTOR, "#transcript .verdict .reason").text
    assert driver.find_element(By.CSS_SELECTOR, "#transcript .verdict .fix").text
    assert "permits this refusal" in verdict.find_element(By.CSS_SELECTOR, ".rfc").text
    assert driver.find_element(By.ID, "swaks").text.startswith("swaks --server")
    assert driver.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
    shoot(driver, "session")

    # The accepted message with a hostile HTML body: shown as source, framed inert.
    driver.get(base_of(rx) + "/?outcome=accepted")
    driver.find_element(By.CSS_SELECTOR, "#rows td.time a").click()
    WebDriverWait(driver, 5).until(ec.presence_of_element_located((By.ID, "message-1")))
    no_alert(driver)
    source = driver.find_element(By.CSS_SELECTOR, "pre.html-source")
    assert "<script>alert(2)</script>" in source.text
    headers = driver.find_element(By.CSS_SELECTOR, "table.headers").text
    assert "<script>alert(1)</script> newsletter" in headers
    frame = driver.find_element(By.CSS_SELECTOR, "iframe.html-frame")
    assert frame.get_attribute("sandbox") == ""
    driver.switch_to.frame(frame)
    assert driver.find_element(By.TAG_NAME, "h1").text == "Hello"
    driver.switch_to.default_content()
    no_alert(driver)


def test_scenario_editor_shows_a_yaml_error_with_its_line(
    driver: WebDriver, rx: StrictmxReceiver
) -> None:
    sign_in(driver, rx)
    driver.get(base_of(rx) + "/scenario")
    assert driver.find_element(By.ID, "scenario-name").text == "viewer-e2e"
    editor = driver.find_element(By.ID, "yaml")
    editor.clear()
    editor.send_keys(
        "name: broken\npolicies:\n  helo:\n    - policy: helo_syntax\n      mode: nonsense\n"
    )
    driver.find_element(By.ID, "apply").click()
    problem = WebDriverWait(driver, 5).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "<editor>:5 policies.helo[0].mode" in problem.text
    assert driver.find_element(By.ID, "scenario-name").text == "viewer-e2e"  # unchanged
    Select(driver.find_element(By.ID, "bundled")).select_by_visible_text("postfix-strict")
    driver.find_element(By.ID, "switch").click()
    WebDriverWait(driver, 5).until(ec.visibility_of_element_located((By.ID, "switched")))
    assert driver.find_element(By.ID, "scenario-name").text == "postfix-strict"


def test_dashboard_chart(driver: WebDriver, rx: StrictmxReceiver) -> None:
    for helo in ("localhost", "mail.example.net", "relay.example.net", "bad_name"):
        smtp(rx, helo)
    rx.settle()
    sign_in(driver, rx)
    driver.get(base_of(rx) + "/dashboard?bucket=minute")
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 2
    legend = driver.find_element(By.CSS_SELECTOR, "#chart-outcomes .legend").text
    assert "accepted: 2" in legend and "rejected: 2" in legend
    shoot(driver, "dashboard")


def test_read_only_views_work_without_javascript(rx: StrictmxReceiver) -> None:
    assert not smtp(rx, "localhost")
    assert smtp(rx, "mail.example.net")
    rx.settle()
    browser = chromium(javascript=False)
    try:
        sign_in(browser, rx)
        assert browser.find_element(By.ID, "live").is_displayed() is False  # no script
        helos = sorted(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rows td.helo"))
        assert helos == ["localhost", "mail.example.net"]
        box = browser.find_element(By.ID, "f-helo")
        box.send_keys("localhost")
        box.submit()
        WebDriverWait(browser, 5).until(ec.url_contains("helo=localhost"))
        helos = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rows td.helo")]
        assert helos == ["localhost"]
        browser.find_element(By.CSS_SELECTOR, "#rows td.time a").click()
        WebDriverWait(browser, 5).until(ec.presence_of_element_located((By.ID, "transcript")))
        assert "helo_syntax" in browser.find_element(By.CSS_SELECTOR, ".verdict").text
        # The copy buttons need a script: without one they stay hidden, the text shows.
        assert not browser.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
        assert browser.find_element(By.ID, "swaks").text.startswith("swaks ")
        browser.get(base_of(rx) + "/dashboard")
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
    finally:
        browser.quit()
