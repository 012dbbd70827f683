import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/submissions.py
os.environ.setdefault("DLCOURSE_QUIET", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def chromium_path() -> str:
    for candidate in (os.environ.get("DLCOURSE_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate:
            return candidate
    pytest.fail("no Chromium found: `make test` installs Debian's package; elsewhere set DLCOURSE_CHROMIUM")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by playwright (no browser is downloaded)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()
