"""Headless Chromium (Debian's package) driven by Playwright, shared by the browser tests."""

import shutil

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is required: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _nudge_slider(page, timeout: int) -> None:
    """Press → on the first slider and wait until the widget's picture changes: the kernel
    answered the slider."""
    picture = page.locator(".widget-output img").first
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = picture.get_attribute("src")
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([prev]) => { const img = document.querySelector('.widget-output img');"
        " return img !== null && img.getAttribute('src') !== prev; }",
        arg=[before],
        timeout=timeout,
    )


@pytest.fixture
def nudge_slider():
    return _nudge_slider
