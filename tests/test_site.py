"""The site builds as CI builds it (warnings are errors), leaks nothing from the solutions, and
works in a browser: Debian's Chromium, driven by playwright, opens every page offline."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from grader import pages, pipeline
from test_grader import secret_lines

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", "--path-output", str(out), "."],
                          cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "DLCOURSE_QUIET": "1"})
    assert proc.returncode == 0, f"the book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln and "[IPKernelApp]" not in ln]
    assert not warnings, "the build warned:\n" + "\n".join(warnings)
    return out / "_build" / "html"


def test_every_page_of_the_toc_is_built(site):
    for page in ["index.html", "book/intro.html", "book/setup.html", "book/references.html",
                 "notebooks/01_embeddings.html"]:
        assert (site / page).is_file(), page


def test_chapter_page_has_results_figures_math_and_citations(site):
    html = (site / "notebooks" / "01_embeddings.html").read_text()
    assert html.count("<img") >= 4 and 'alt="' in html
    assert "Fig. 1" in html and "sense accuracy, contextual biLM vector:  1.00" in html
    assert "_static/mathjax/tex-chtml.js" in html and "cdn.jsdelivr" not in html
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "Mikolov" in html and "colab.research.google.com" in html
    assert "Traceback" not in html and "stderr" not in html


def test_every_assignment_has_a_page_with_its_download_and_colab_link(site):
    for name in pipeline.assignments():
        html = (site / "book" / "assignments" / f"{name}.html").read_text()
        assert "YOUR CODE HERE" in html and re.search(rf'href="[^"]*_downloads/[^"]*/{name}.ipynb"', html)
        assert pages.colab_url(name) in html
        assert list(site.glob(f"_downloads/*/{name}.ipynb")), f"no download of {name}.ipynb"


def test_no_solution_or_hidden_test_anywhere_in_the_site(site):
    secrets = [line for name in pipeline.assignments() for line in secret_lines(name)]
    assert secrets
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".ipynb", ".md", ".txt", ".js", ".json", ".py"}:
            text = path.read_text(errors="ignore")
            assert not any(m in text for m in pipeline.SECRET_MARKERS), f"solution marker in {path}"
            assert not [s for s in secrets if s in text], f"solution text in {path}"


# --- in a browser ------------------------------------------------------------------------------

SCREENSHOTS = REPO / "test-results" / "screenshots"
KEY_PAGES = ["book/intro.html", "notebooks/07_elbo.html", "notebooks/09_vq_vae.html", "book/errata.html",
             "book/cheatsheet.html", "book/assignments/08_vae.html"]


def pages_of(site: Path) -> list[Path]:
    skip = ("_static", "_sources", "_downloads", "_images")
    return sorted(p for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith(skip)
                  and p.name != "genindex.html")


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on this machine, as a reader's web server would serve it (pages
    opened as file:// URLs cannot fetch each other, which the search page does)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def open_page(browser, url: str, dark: bool = False):
    """A fresh page at url, and the problems it reported: console errors, script errors,
    failed requests, and any request that goes anywhere but the site's own server."""
    home = "/".join(url.split("/")[:3])
    context = browser.new_context(color_scheme="dark" if dark else "light", viewport={"width": 1280, "height": 900})
    page, problems = context.new_page(), []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    page.on("request", lambda r: problems.append(f"network request {r.url}")
            if not r.url.startswith((home, "data:", "about:")) else None)
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)
    return page, problems


def test_every_page_loads_offline_with_a_clean_console(site, served, browser):
    pages = pages_of(site)
    assert len(pages) > 20
    for path in pages:
        page, problems = open_page(browser, f"{served}/{path.relative_to(site).as_posix()}")
        assert not problems, f"{path.relative_to(site)}: {problems}"
        page.context.close()


def test_math_is_typeset_and_every_figure_loads_with_alt_text(site, served, browser):
    chapters = sorted((site / "notebooks").glob("*.html")) + [site / "book" / "cheatsheet.html"]
    for path in chapters:
        page, _ = open_page(browser, f"{served}/{path.relative_to(site).as_posix()}")
        page.wait_for_function("document.querySelectorAll('mjx-container').length > 0")
        text = page.inner_text("article")
        assert "\\(" not in text and "$$" not in text, f"raw TeX shown in {path.name}"
        images = page.eval_on_selector_all(
            "article img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0, e.alt])")
        for src, loaded, alt in images:
            assert loaded, f"{path.name}: image {src} did not load"
            assert alt.strip() or "logo" in src, f"{path.name}: image {src} has no alt text"
        page.context.close()


def test_internal_links_and_anchors_resolve(site):
    for path in pages_of(site):
        html = path.read_text()
        for href in re.findall(r'<a [^>]*href="([^"]+)"', html):
            parts = urlsplit(href)
            if parts.scheme or href.startswith(("mailto:", "javascript:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            assert target.exists(), f"{path.relative_to(site)} links to missing {href}"
            if parts.fragment and target.suffix == ".html":
                assert f'id="{parts.fragment}"' in target.read_text(), f"{path.relative_to(site)}: no anchor {href}"


@pytest.mark.parametrize("word,page", [("ELBO", "07_elbo"), ("reparameterization", "08_vae")])
def test_search_finds_the_course_terms(served, browser, word, page):
    search, problems = open_page(browser, f"{served}/search.html?q={word}")
    search.wait_for_selector("#search-results ul.search li", timeout=15_000)
    hits = search.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.href)")
    assert any(page in h for h in hits), f"searching {word!r} did not find {page}: {hits[:5]}"
    search.wait_for_timeout(1000)  # the result summaries are fetched from the pages
    assert not problems, problems
    search.context.close()


def test_figures_stay_legible_in_dark_mode_and_key_pages_are_photographed(served, browser):
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for rel in KEY_PAGES:
        for dark in (False, True):
            page, problems = open_page(browser, f"{served}/{rel}", dark=dark)
            assert not problems, f"{rel} (dark={dark}): {problems}"
            name = rel.replace("/", "_").removesuffix(".html") + ("_dark" if dark else "") + ".png"
            page.screenshot(path=str(SCREENSHOTS / name))
            if dark:
                assert page.evaluate("document.documentElement.dataset.theme") == "dark"
                figure = page.locator("article img").first
                if figure.count():
                    shot = Image.open(io.BytesIO(figure.screenshot())).convert("L")
                    corner = shot.getpixel((2, 2))
                    assert corner > 200, f"{rel}: a figure lost its light background in dark mode ({corner})"
            page.context.close()


def test_no_page_weighs_more_than_a_megabyte(site):
    for path in pages_of(site):
        html = path.read_text()
        own = {(path.parent / unquote(src)).resolve() for src in re.findall(r'<img[^>]+src="([^"]+)"', html)
               if "/_static/" not in src and not src.startswith(("http", "data:"))}
        weight = len(html.encode()) + sum(p.stat().st_size for p in own if p.is_file())
        assert weight <= 1_000_000, f"{path.relative_to(site)} weighs {weight / 1e6:.2f} MB"


def test_headings_descend_one_level_at_a_time(site):
    for path in pages_of(site):
        if "<article" not in path.read_text():
            continue  # index.html only redirects to the intro
        article = path.read_text().split("<article", 1)[-1].split("</article>", 1)[0]
        levels = [int(h) for h in re.findall(r"<h([1-6])[ >]", article)]
        assert levels and levels[0] == 1, f"{path.relative_to(site)} does not start with one h1"
        for a, b in zip(levels, levels[1:]):
            assert b <= a + 1, f"{path.relative_to(site)}: heading h{a} is followed by h{b}"


def contrast(a: list[float], b: list[float]) -> float:
    """WCAG contrast ratio of two sRGB colours given as 0-255 triples."""
    def luminance(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("dark", [False, True])
def test_text_contrast_meets_wcag_aa(served, browser, dark):
    page, _ = open_page(browser, f"{served}/notebooks/08_vae.html", dark=dark)
    colours = page.evaluate("""() => {
        const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const bg = rgb(getComputedStyle(document.body).backgroundColor);
        const pick = sel => [...document.querySelectorAll(sel)].slice(0, 5).map(e => rgb(getComputedStyle(e).color));
        return {bg, text: pick("article p"), links: pick("article p a"), captions: pick("figcaption p")};
    }""")
    for kind in ("text", "links", "captions"):
        assert colours[kind], f"no {kind} found"
        for colour in colours[kind]:
            ratio = contrast(colour, colours["bg"])
            assert ratio >= 4.5, f"{kind} {colour} on {colours['bg']} (dark={dark}): contrast {ratio:.2f} < 4.5"
    page.context.close()


def test_figures_are_served_compressed(site):
    from PIL import Image

    figures = sorted((site / "_images").glob("*.png"))
    assert len(figures) > 20
    palette = [f for f in figures if Image.open(f).mode == "P"]
    assert len(palette) >= 0.9 * len(figures), f"only {len(palette)} of {len(figures)} figures are palette PNGs"
