"""The customer-base audit report in a real browser: headless Chromium (Debian's ``chromium``,
driven by Playwright) opens it from disk, with no server, and from the read API."""

from __future__ import annotations

import io
import shutil

import pytest

from tests.lake.conftest import API_KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def check_page(page) -> None:
    """Every image loaded (decoded, with a size), the lens sections are there, and the
    screenshot is not one flat colour."""
    from PIL import Image, ImageStat

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.naturalHeight])"
    )
    assert len(images) == 5
    assert all(complete and width > 100 and height > 100 for _, complete, width, height in images)
    assert page.locator("section h2").count() == 5
    assert page.locator("table").count() == 5
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("L")
    assert shot.height > 2000
    assert ImageStat.Stat(shot).stddev[0] > 10  # not blank


def test_the_report_opens_from_disk_with_no_server(lake_home, browser) -> None:
    path = lake_home / "reports" / "customer_base_audit" / "index.html"
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    check_page(page)
    assert failed == []
    page.close()


def test_the_report_from_the_read_api(reader, browser) -> None:
    context = browser.new_context(extra_http_headers={"X-API-Key": API_KEY})
    page = context.new_page()
    answer = page.goto(f"{reader.url}/report/")
    assert answer is not None and answer.status == 200
    check_page(page)
    context.close()
