"""The SLO dashboards (console templates served by the platform's Prometheus at /consoles/), opened in
a real browser: headless Chromium through Selenium. Each graph must draw lines from data, none may
say "No timeseries returned" or "Error loading data", and the tables must show values. A screenshot
of each page is written to the test's directory, and to docs/img/dashboards/ when
OPSLAB_DASHBOARD_SCREENSHOTS=1 (how the documentation's pictures are made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from opslab.grading.fixtures import eventually
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform

SERVICES = ("gateway", "catalog", "cart", "checkout", "payments", "fulfilment")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboards"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, (
        "the dashboard tests need Chromium and its driver: apt-get install chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    session.set_page_load_timeout(60)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture(scope="module")
def traffic(platform: Platform) -> None:
    """Requests to every service through the gateway's routes, so the SLIs have data (a bounded burst)."""
    shop = f"http://127.0.0.1:{platform.settings.ports.shop}"
    with httpx.Client(timeout=10) as client:
        for _ in range(40):
            client.get(f"{shop}/api/products")
            client.post(f"{shop}/api/cart/dashboards/items", json={"sku": "sku-003", "quantity": 1})
            client.post(f"{shop}/api/checkout/dashboards")
    prometheus = f"http://127.0.0.1:{platform.settings.ports.prometheus}"

    def recorded() -> bool:
        query = "count(shop:sli_availability:ratio_rate5m)"
        result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= 3

    assert eventually(recorded, 60), "the SLI recording rules have no data after the burst of requests"


def graphs_drawn(browser: WebDriver) -> dict[str, str]:
    """Per graph node: "ok" when it drew a line, else what it shows (an error, or nothing yet)."""
    script = """
      const found = {};
      for (const node of document.querySelectorAll('.opslab-graph-node')) {
        const error = node.querySelector('.prom_graph_error');
        const lines = [...node.querySelectorAll('svg path')].filter(p => (p.getAttribute('d') || '').length > 20);
        found[node.id] = error ? error.textContent : (lines.length ? 'ok' : 'nothing drawn');
      }
      return found;
    """
    found: dict[str, str] = browser.execute_script(script)
    return found


def screenshot(browser: WebDriver, name: str, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(where / f"{name}.png"))
    if os.environ.get("OPSLAB_DASHBOARD_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(DOCS / f"{name}.png"))


def test_the_index_lists_every_service_with_its_current_slis(
    platform: Platform, browser: WebDriver, traffic: None, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{platform.settings.ports.prometheus}"
    browser.get(f"{base}/consoles/index.html")
    rows = browser.execute_script(
        "return [...document.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    assert [row[0] for row in rows] == list(SERVICES), rows
    gateway = rows[0]
    assert gateway[2].endswith("%") and gateway[3].endswith("%"), f"the gateway's SLIs show no value: {gateway}"
    screenshot(browser, "index", tmp_path)


@pytest.mark.parametrize("service", ["gateway", "checkout"])
def test_a_service_dashboard_draws_every_graph_from_data(
    platform: Platform, browser: WebDriver, traffic: None, tmp_path: Path, service: str
) -> None:
    base = f"http://127.0.0.1:{platform.settings.ports.prometheus}"
    browser.get(f"{base}/consoles/shop-slo.html?service={service}")
    title = browser.title
    assert title.startswith(f"{service} SLOs"), f"the console template did not render: {title!r}"

    def all_drawn() -> dict[str, str] | None:
        # A graph is fetched once, when the page loads: a line needs two points of the 5-minute
        # SLIs, which a platform that just started may not have yet, so each try loads it anew.
        browser.get(f"{base}/consoles/shop-slo.html?service={service}")
        settled = eventually(lambda: all(v != "nothing drawn" for v in graphs_drawn(browser).values()), 5)
        found = graphs_drawn(browser)
        return found if settled and found and set(found.values()) == {"ok"} else None

    drawn = eventually(all_drawn, 60, interval=2)
    assert drawn, f"graphs not drawn from data: {graphs_drawn(browser)}"
    assert set(drawn) == {"availability", "latency", "burn", "latency-burn", "requests"}, drawn
    now = browser.find_element(By.ID, "availability-now").text
    assert now.endswith("%"), f"the availability SLI shows {now!r}"
    screenshot(browser, f"shop-slo-{service}", tmp_path)
