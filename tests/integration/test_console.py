"""The operator console in real headless Chromium against a live worker (Kafka + Redis):
find a restricted account in the active list and by search, read its evidence, mark it a
false positive with the operator token, see it lifted, and Redis allows it again.

Needs Debian's chromium + chromium-driver and selenium: `scripts/browser.sh` (run by `make test`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis

from harness import REPO, produce, running_worker, wait_for
from projections.client import SyncWardenClient

TOKEN = "console-test-token"
CSP = "default-src 'self'; frame-ancestors 'none'"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30
# This machine has no internet: without these, Chromium stalls on network and first-run work.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1280,1900")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise AssertionError("chromium / chromium-driver missing: run scripts/browser.sh")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise AssertionError("selenium missing from .venv: run scripts/browser.sh") from None
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def worker(tmp_path_factory, kafka_bootstrap, redis_url):
    """A worker with an operator token, and two accounts it restricted: one for an emulator,
    one for an unverifiable overseas number. Shared by the module; only the last test acts."""
    tmp_path = tmp_path_factory.mktemp("console-worker")
    uid = uuid.uuid4().hex[:10]
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": f"{uid}-", "WARDEN_APP_ID": f"w{uid}",
           "WARDEN_REDIS_PREFIX": f"w{uid}", "WARDEN_PARTITIONS": "1",
           "WARDEN_OPERATOR_TOKEN": TOKEN}
    emulator, overseas = f"emu-{uid}", f"voip-{uid}"
    now = int(time.time() * 1000)
    inputs = [
        ("device-signals", {"event_id": f"{uid}-s1", "ts": now - 60_000, "account_id": overseas,
                            "device_id": f"dev-{uid}-b", "phone_country": "US",
                            "carrier_verified": False}),
        ("device-signals", {"event_id": f"{uid}-s2", "ts": now, "account_id": emulator,
                            "device_id": f"dev-{uid}-a", "emulator": True}),
    ]
    with running_worker(tmp_path, env) as w:
        asyncio.run(produce(kafka_bootstrap, f"{uid}-", inputs))
        for account in (emulator, overseas):
            wait_for(lambda a=account: w.http(f"/accounts/{a}")[1].get("status") == "restricted",
                     timeout=WAIT_S, what=f"{account} restricted over HTTP")
        redis = Redis.from_url(redis_url)
        try:
            yield {"worker": w, "emulator": emulator, "overseas": overseas, "uid": uid,
                   "client": SyncWardenClient(redis, prefix=f"w{uid}", pointer_ttl_s=0)}
        finally:
            redis.close()


def test_console_is_served_same_origin_under_the_strict_csp(worker):
    w = worker["worker"]
    for path, kind in (("/console", "text/html"), ("/console/console.js", "text/javascript"),
                       ("/console/console.css", "text/css")):
        status, _ = w.http(path)
        assert status == 200, path
        assert w.last_headers["Content-Type"].startswith(kind), path
        assert w.last_headers["Content-Security-Policy"] == CSP
        assert w.last_headers["X-Content-Type-Options"] == "nosniff"
    status, body = w.http("/console/..%2Fweb.py")
    assert (status, body["error"]) == (404, "not_found")


def test_operator_finds_an_account_and_lifts_a_false_positive_in_the_browser(worker, browser,
                                                                              tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    w, emulator, overseas = worker["worker"], worker["emulator"], worker["overseas"]
    client = worker["client"]
    assert not client.is_allowed(emulator, "join_open_chat")
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)

    def text(element_id):
        return browser.find_element(By.ID, element_id).text

    def shows_account(account, status):
        return lambda _: text("account-id") == account and text("account-status") == status

    browser.get(f"{w.url}/console")
    wait.until(lambda _: "Worker healthy" in text("health"))

    # 1. The active list, newest first, links to the emulator account (restricted last).
    wait.until(lambda _: "2 active restrictions" in text("active-caption"))
    Select(browser.find_element(By.ID, "active-order")).select_by_value("newest")
    wait.until(lambda _: "newest first" in text("active-caption"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#active-rows a")
    assert [r.text for r in rows] == [emulator, overseas]
    rows[0].click()
    wait.until(shows_account(emulator, "restricted"))
    timeline = text("timeline")
    assert f"emulator: signed in from a PC emulator (device dev-{worker['uid']}-a)" in timeline
    assert f"sample events: {worker['uid']}-s2" in timeline
    assert "add_friend" in text("summary") and "join_open_chat" in text("summary")

    # 2. Search, by keyboard: the other account, with its evidence in words, then back.
    search = browser.find_element(By.ID, "lookup-id")
    search.clear()
    search.send_keys(overseas, Keys.ENTER)
    wait.until(shows_account(overseas, "restricted"))
    assert ("virtual_number: phone number from US (home KR) the carrier could not verify"
            in text("timeline"))
    search.clear()
    search.send_keys(emulator, Keys.ENTER)
    wait.until(shows_account(emulator, "restricted"))

    # 3. A wrong token is refused and said so; the right one lifts the account.
    fp_button = browser.find_element(By.CSS_SELECTOR, "button[data-action=false_positive]")
    assert fp_button.is_enabled()
    assert not browser.find_element(By.CSS_SELECTOR, "button[data-action=grant]").is_enabled()
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "actor").send_keys("op-console")
    browser.find_element(By.ID, "actor").send_keys(Keys.ENTER)
    wait.until(lambda _: "Token saved" in text("token-state"))
    fp_button.click()
    wait.until(lambda _: "invalid_token" in text("result"))
    browser.find_element(By.ID, "token").send_keys(TOKEN, Keys.ENTER)
    wait.until(lambda _: fp_button.is_enabled())
    fp_button.click()
    wait.until(lambda _: "lifted (false_positive) by op-console" in text("result"))
    wait.until(shows_account(emulator, "clear"))
    newest = browser.find_element(By.CSS_SELECTOR, "#timeline > li")
    assert newest.get_attribute("data-type") == "lifted"
    assert "false_positive: restriction began" in newest.text
    wait.until(lambda _: "of 1 active restriction," in text("active-caption"))

    # 4. Downstream services see it: Redis allows the account's limited features again.
    for scope in ("join_open_chat", "add_friend", "create_room"):
        wait_for(lambda s=scope: client.is_allowed(emulator, s), timeout=WAIT_S,
                 what=f"{emulator} allowed {scope}")
    assert not client.is_allowed(overseas, "join_open_chat")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "401" not in e["message"] and "403" not in e["message"]]
    assert errors == [], errors  # a CSP violation or script error would show here

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 40, 2400))
    shot = tmp_path / "console.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("WARDEN_UPDATE_SCREENSHOT"):  # refresh the README's picture on request only
        docs = REPO / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(shot, docs / "console.png")
