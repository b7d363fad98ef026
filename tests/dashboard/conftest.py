"""A real headless browser for the dashboard tests: Debian's chromium driven by playwright.

The set-up installs chromium with apt-get where it is missing (CI's fresh machines); the tests
skip, saying why, only where no browser can be installed. Playwright never downloads a browser
of its own: it launches the system one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterator

import pytest

from tests.api.conftest import (api, api_settings, base_settings, engine,  # noqa: F401
                                redis_client, session_engine)

_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def _installed() -> str | None:
    return next((p for p in _CANDIDATES if os.access(p, os.X_OK)), None)


def _install() -> str | None:
    """Installs Debian's chromium; None on success, else why it could not."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "apt-get needs root (run `apt-get install -y chromium` once)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(argv)}` failed: {exc}"
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
            return f"`{' '.join(argv)}` exited {proc.returncode}: {' '.join(tail)}"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _installed()
    if path is None:
        why = _install()
        path = _installed()
        if path is None:
            pytest.skip(f"no chromium to run the dashboard test in: {why or 'not found after install'}")
    return path


# Module scope: playwright's sync API keeps an event loop running in the main thread while it is
# open, and later tests that call asyncio.run() would fail beside it.
@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (`make install` installs the dev extras)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()
