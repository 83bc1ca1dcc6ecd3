"""The console's pages in headless Chromium (Debian's ``chromium`` and ``chromium-driver``), against a real worker
and a real ``fraudstream console`` on the embedded broker. One worker, one console and one browser for the module.

Each test saves a screenshot of its page into var/screenshots/ (tests/conftest.py SCREENSHOTS; the run's summary says
where); `make screenshots` saves them into docs/console/ instead, the README's images.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.console.process import ConsoleProcess
from fraudstream.contracts import encode
from fraudstream.kafka.topics import create_topics

from ..conftest import SCREENSHOTS, WorkerProcess, isolated_settings, produce, read_topic, wait_for

pytestmark = pytest.mark.broker

HOUR = 3_600_000
RULE = {"id": "R-BIG", "description": "Amount above ¥900,000", "condition": "amount > 900000", "mode": "active", "action": "alert"}
SHADOW = {"id": "R-SHADOW", "description": "Amount above ¥400,000, measured before it acts", "condition": "amount > 400000",
          "mode": "shadow", "action": "alert"}


def now_ms() -> int:
    return int(time.time() * 1000)


def auth(tx: str, card: str, amount: float, ts: int, merchant: str = "m-shop") -> tuple[bytes, bytes]:
    return card.encode(), encode({"tx_id": tx, "card_id": card, "merchant_id": merchant, "amount": amount, "ts": ts, "currency": "JPY"})


@dataclass
class Pipeline:
    settings: Settings
    worker: WorkerProcess
    url: str
    console_log: Path

    def scores(self, n: int | None = None) -> dict[str, dict]:
        s = self.settings
        return {v["tx_id"]: v for _, v in read_topic(s, s.topic_scores, until=n, timeout=60, idle=None if n else 2)}

    def wait_scored(self, tx_id: str, timeout: float = 60.0) -> dict:
        found: dict = {}

        def scored() -> bool:
            found.update(self.scores())
            return tx_id in found

        wait_for(scored, timeout=timeout, interval=0.5)
        return found[tx_id]


@pytest.fixture(scope="module")
def pipeline(broker, tmp_path_factory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("console")
    s = isolated_settings(broker, tmp, partitions=1)
    create_topics(s)
    produce(s, s.topic_rules, [(r["id"].encode(), encode(r)) for r in (RULE, SHADOW)])
    worker = WorkerProcess(s, tmp / "worker.log")
    try:
        console = ConsoleProcess(s, tmp / "console.log", [f"http://127.0.0.1:{worker.metrics_port}/metrics"], port=0,
                                 audit_file=tmp / "audit.jsonl")
    except BaseException:
        worker.stop()
        raise
    try:
        yield Pipeline(s, worker, console.url.rstrip("/"), console.log_path)
    finally:
        console.stop()
        worker.stop()
    assert console.process.returncode == 0, f"the console did not stop cleanly:\n{console.log_path.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "the browser tests need Debian's chromium and chromium-driver: run `make system-deps`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait_page(driver, predicate, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: predicate(d))


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def shot(driver, name: str) -> None:
    """The whole page (at most 2400 px high), as the README shows it."""
    height = int(driver.execute_script("return Math.min(document.body.scrollHeight + 20, 2400)"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": max(400, height), "deviceScaleFactor": 1,
                                                                   "mobile": False})
    try:
        driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_label_from_the_queue_lands_on_the_labels_topic(pipeline: Pipeline, browser) -> None:
    s, t = pipeline.settings, now_ms() - 6 * HOUR
    history = [auth(f"q-{i}", "card-Q", 2000 + 100 * i, t + i * 600_000) for i in range(5)]
    browser.get(pipeline.url + "/")
    wait_page(browser, lambda d: css(d, "#queue"))
    browser.execute_script("window.loadedOnce = true")  # gone if the page were reloaded
    produce(s, s.topic_authorizations, [*history, auth("q-big", "card-Q", 950_000, t + HOUR, merchant="m-new")])
    # The alert appears without a reload: the page polls.
    wait_page(browser, lambda d: css(d, 'article[data-alert-id="alert-q-big"]'), timeout=60)
    assert browser.execute_script("return window.loadedOnce") is True, "the page was not reloaded"
    alert = css(browser, 'article[data-alert-id="alert-q-big"]')[0]
    assert "R-BIG" in alert.text and "Amount above ¥900,000" in alert.text
    assert "q-3" in alert.text, "the card's last authorizations are shown with the alert"
    shot(browser, "queue")
    alert.find_element("xpath", ".//button[text()='Confirm fraud']").click()
    wait_page(browser, lambda d: "labelled transaction q-big" in d.page_source)
    labels = [v for _, v in read_topic(s, s.topic_labels, idle=2, timeout=30)]
    assert {"tx_id": "q-big", "card_id": "card-Q", "is_fraud": True, "source": "analyst"}.items() <= labels[-1].items(), labels
    audit = [v for _, v in read_topic(s, s.topic_audit, idle=2, timeout=30)]
    assert audit[-1]["action"] == "label" and audit[-1]["target"] == "card-Q" and audit[-1]["ok"] and audit[-1]["user"].endswith("(local)")
    wait_page(browser, lambda d: not css(d, 'article[data-alert-id="alert-q-big"]'), timeout=15)  # gone from the queue


def test_a_customer_report_blocks_the_cards_next_authorization(pipeline: Pipeline, browser) -> None:
    s, t = pipeline.settings, now_ms() - 5 * HOUR
    produce(s, s.topic_authorizations, [auth(f"r-{i}", "card-R", 3000 + 500 * i, t + i * HOUR, merchant=f"m-{i}") for i in range(3)])
    pipeline.wait_scored("r-2")
    browser.get(pipeline.url + "/report")
    box = css(browser, "form.lookup input[name=card]")[0]
    box.send_keys("card-R")
    box.submit()
    wait_page(browser, lambda d: css(d, 'input[name=tx_id][value="r-2"]'))
    for tx in ("r-1", "r-2"):
        css(browser, f'input[name=tx_id][value="{tx}"]')[0].click()
    css(browser, "form[action='/report/review'] button")[0].click()
    wait_page(browser, lambda d: "Confirm the report" in d.page_source)
    css(browser, "form[action='/report/confirm'] button")[0].click()
    wait_page(browser, lambda d: css(d, "#report-number"))
    number = css(browser, "#report-number")[0].text
    assert re.fullmatch(r"FR-\d+-\d{6}", number), number
    shot(browser, "report")
    report = [v for _, v in read_topic(s, s.topic_labels, idle=2, timeout=30) if v.get("source") == "customer_report"][-1]
    assert report["card_id"] == "card-R" and report["since"] == t + HOUR and "tx_id" not in report

    time.sleep(1.0)  # the label reaches the worker's card state
    produce(s, s.topic_authorizations, [auth("r-next", "card-R", 1200, now_ms())])
    assert pipeline.wait_scored("r-next")["decision"]["action"] == "block"
    browser.get(pipeline.url + "/card?card=card-R")
    wait_page(browser, lambda d: "blocked" in css(d, "#standing")[0].text)
    wait_page(browser, lambda d: "r-next" in d.page_source)
    shot(browser, "card")


def test_a_stopped_rule_hits_no_more(pipeline: Pipeline, browser) -> None:
    s = pipeline.settings
    browser.get(pipeline.url + "/rules")
    wait_page(browser, lambda d: "R-BIG" in d.page_source)
    shot(browser, "rules")
    from selenium.webdriver.support.ui import Select

    form = browser.find_element("xpath", "//form[@action='/rules/change'][input[@name='rule_id' and @value='R-BIG']]")
    Select(form.find_element("css selector", "select[name=mode]")).select_by_value("off")
    form.find_element("css selector", "button").click()
    wait_page(browser, lambda d: "Confirm: set R-BIG to off" in d.page_source)  # the confirmation step
    css(browser, "form[action='/rules/change/confirm'] button")[0].click()
    wait_page(browser, lambda d: "rule R-BIG set to off (was active)" in d.page_source)
    wait_page(browser, lambda d: (d.refresh() or True) and "Off (1)" in d.page_source, timeout=15)
    rules = {k.decode(): v for k, v in read_topic(s, s.topic_rules, idle=2, timeout=30)}
    assert rules["R-BIG"]["mode"] == "off"
    time.sleep(1.5)  # the workers' rule follower polls every 0.2 s
    produce(s, s.topic_authorizations, [auth("s-huge", "card-S", 990_000, now_ms())])
    scored = pipeline.wait_scored("s-huge")
    assert "R-BIG" not in scored.get("rule_hits", []) and "R-BIG" not in scored["decision"]["rules"], scored
    assert "R-SHADOW" in scored["rule_hits"], "the shadow rule still counts"


def test_a_post_without_its_csrf_token_is_refused(pipeline: Pipeline, browser) -> None:
    browser.get(pipeline.url + "/rules")
    wait_page(browser, lambda d: css(d, "form[action='/rules/change']"))
    browser.execute_script("const f = document.querySelector(\"form[action='/rules/change']\");"
                           "f.querySelector('input[name=csrf_token]').remove(); f.submit();")
    wait_page(browser, lambda d: "Refused" in d.title)
    assert "security token (CSRF)" in browser.page_source
    rules = {k.decode(): v for k, v in read_topic(pipeline.settings, pipeline.settings.topic_rules, idle=2, timeout=30)}
    assert rules["R-BIG"]["mode"] == "off", "nothing was changed"


def test_the_live_overview_and_the_audit_log(pipeline: Pipeline, browser) -> None:
    browser.get(pipeline.url + "/overview")
    wait_page(browser, lambda d: int(css(d, "#overview")[0].get_attribute("data-samples") or 0) >= 3, timeout=30)
    charts = css(browser, "figure.chart")
    assert len(charts) == 6
    first = charts[0]
    wait_page(browser, lambda d: "now:" in first.text)
    assert first.find_elements("css selector", "path.line"), "authorizations per second are drawn"
    assert re.search(r"Read from the topics: [\d,]+ scores", css(browser, "#feed-summary")[0].text)
    shot(browser, "overview")
    browser.get(pipeline.url + "/audit")
    text = css(browser, "main")[0].text
    for action in ("label", "report", "rule"):
        assert action in text
    import jsonschema

    from fraudstream.kafka.topics import load_specs

    schema = {spec.name: spec for spec in load_specs()}["fraud.audit"].value_schema
    records = [v for _, v in read_topic(pipeline.settings, pipeline.settings.topic_audit, idle=2, timeout=30)]
    assert [r["action"] for r in records] == ["label", "report", "rule"]
    for record in records:  # what the console publishes is what topics/fraud.audit.json promises
        jsonschema.Draft202012Validator(schema).validate(record)
    shot(browser, "audit")
