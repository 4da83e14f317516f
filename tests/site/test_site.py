"""Browser test of the built site: every chapter page loads its local assets, asks no other host
for anything, typesets its math, shows its figures and its saved widgets, and its plotly sliders
work without a kernel and without the internet; the search page works offline. Needs `make book`
first and Debian's chromium (see README). Pages are found from `_toc.yml`, so a new chapter is
tested as soon as it is listed there."""

import functools
import http.server
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
PRIMER = "chapters/00_primer/01_threat_models_and_attacks.html"


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = []
    for part in toc.get("parts", []):
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return [f"{f}.html" for f in files if (ROOT / f"{f}.ipynb").exists()]


PAGES = _toc_pages()


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / PRIMER).exists():
        pytest.fail("the site is not built: run `make book` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _open(browser, site_url, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # the site must not need the internet: refuse every other host, and remember who was asked
    page.external = []

    def route(r):
        if r.request.url.startswith(site_url):
            return r.continue_()
        page.external.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.failed_local = []
    page.on("response", lambda r: r.status >= 400 and page.failed_local.append(r.url))
    page.goto(f"{site_url}/{path}", wait_until="load")
    return page


@pytest.fixture(scope="module", params=PAGES, ids=lambda p: Path(p).stem)
def page(request, browser, site_url):
    assert (SITE / request.param).exists(), f"{request.param} was not built"
    page = _open(browser, site_url, request.param)
    yield page
    page.close()


def test_primer_has_its_title_and_plotly_figures(browser, site_url):
    page = _open(browser, site_url, PRIMER)
    assert "Threat models and attacks" in page.title()
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
    assert page.locator(".js-plotly-plot").count() >= 2
    page.close()


def test_page_loads_its_local_assets_and_images(page):
    assert page.failed_local == []
    images = page.locator("img[src*='_images']")
    assert images.count() >= 1  # matplotlib figures of the executed notebook
    assert all(images.nth(i).evaluate("img => img.naturalWidth > 0") for i in range(images.count()))


def test_page_asks_no_other_host(page):
    page.wait_for_load_state("networkidle")
    assert page.external == [], f"third-party requests at view time: {page.external[:5]}"


def test_math_is_typeset_offline(page):
    math = page.locator(".math")
    if math.count() == 0:
        return  # nothing to typeset on this page
    page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
    typeset = "[...document.querySelectorAll('.math')].every(m => m.querySelector('mjx-container'))"
    page.wait_for_function(f"() => {typeset}", timeout=20_000)


def test_saved_widgets_render_offline(page):
    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]')
    if views.count() == 0:
        return  # a page without widgets
    # every saved view is drawn by the offline widget manager (a finished tqdm bar of a model the
    # zoo trained is drawn too, hidden, so the count is the check, not the visibility; the
    # primer's slider is checked visible in test_the_site_has_saved_widgets)
    page.wait_for_function(
        "n => document.querySelectorAll('.jupyter-widgets').length >= n",
        arg=views.count(),
        timeout=20_000,
    )


def test_the_site_has_saved_widgets(browser, site_url):
    """The pages carry their widgets' saved state (chapters/conftest.py records it)."""
    page = _open(browser, site_url, PRIMER)
    assert page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count() == 1
    page.wait_for_selector(".widget-slider", timeout=20_000)
    page.close()


def test_search_works_offline(browser, site_url):
    page = _open(browser, site_url, "search.html?q=Lipschitz")
    page.wait_for_selector("#search-results li, ul.search li", timeout=20_000)
    assert page.locator("ul.search li").count() >= 1
    assert page.external == []
    page.close()


def test_plotly_figures_render_offline(page):
    # every chapter offers its sweeps as plotly figures, so the static site stays interactive
    assert page.locator(".plotly-graph-div").count() >= 1, "no plotly figure on this page"
    plots = page.locator(".js-plotly-plot")
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
    assert plots.count() == page.locator(".plotly-graph-div").count()  # every figure was drawn
    # plotly drew real traces (heatmap images / scatter points / bars), not an empty frame
    traces = ", ".join(
        f".js-plotly-plot {layer}"
        for layer in (".heatmaplayer image", ".scatterlayer path", ".barlayer path")
    )
    assert page.locator(traces).count() > 0


# does a slider step carry a layout title (a per-step title) in its update?
STEPS_SET_TITLE = (
    "(gd.layout.sliders || []).some(s => s.steps.some("
    "st => JSON.stringify(st.args || []).includes('\"title')))"
)
VISIBLE_JS = "gd.data.flatMap((t, i) => (t.visible === true ? [i] : []))"


def _visible(plot):
    return plot.evaluate(f"gd => {VISIBLE_JS}")


def test_plotly_sliders_change_the_plot(page):
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
    plots = page.locator(".js-plotly-plot")
    sliders = 0
    for i in range(plots.count()):
        plot = plots.nth(i)
        if plot.locator(".slider-rail-touch-rect").count() == 0:
            continue
        sliders += 1
        plot.scroll_into_view_if_needed()
        before_traces = _visible(plot)
        before_label = plot.locator(".slider-group > text.slider-label").text_content()
        before_title = plot.locator(".gtitle").all_text_contents()
        steps_set_title = plot.evaluate(f"gd => {STEPS_SET_TITLE}")
        before_pixels = plot.screenshot()
        rail = plot.locator(".slider-rail-touch-rect").bounding_box()
        page.mouse.click(rail["x"] + 0.8 * rail["width"], rail["y"] + rail["height"] / 2)
        page.wait_for_function(
            f"([gd, before]) => {VISIBLE_JS}.join() !== before",
            arg=[plot.element_handle(), ",".join(map(str, before_traces))],
            timeout=10_000,
        )
        assert _visible(plot) != before_traces
        assert plot.locator(".slider-group > text.slider-label").text_content() != before_label
        assert plot.screenshot() != before_pixels
        after_title = plot.locator(".gtitle").all_text_contents()
        assert len(after_title) == len(before_title)  # a title is never lost
        if steps_set_title:  # a per-step title follows the slider
            assert after_title != before_title
    assert sliders >= 1, "no plotly slider on this page: offer the chapter's sweep as one"
