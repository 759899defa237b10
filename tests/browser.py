"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver`` (which ``.ci/run``
installs with apt-get) driven through selenium, never a browser downloaded at run time.

Where the browser is absent the tests skip and say how to install it; with ``CASCADE_REQUIRE_BROWSER=1`` (set
by ``.ci/run``) they fail instead, so CI cannot pass without running them. Screenshots go to pytest's
temporary folder, or to ``CASCADE_SCREENSHOT_DIR`` when set (``docs`` regenerates the README's pictures).
"""

import contextlib
import io
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from cascade.utils.atomic import write_atomically

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# No first-run screens, no background traffic (the machine has no internet), no sandbox (CI runs as root).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


def require_chromium() -> None:
    """Skips the test (fails it under ``CASCADE_REQUIRE_BROWSER=1``) when Chromium or its driver is missing."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        message = f"{', '.join(missing)} not found: apt-get install -y chromium chromium-driver (Debian)"
        if os.environ.get("CASCADE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium() -> Iterator:
    """A selenium driver of headless Chromium with a fresh profile, quit on exit."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def screenshot_folder(tmp_path: Path) -> Path:
    """Where screenshots go: ``CASCADE_SCREENSHOT_DIR`` when set, else ``tmp_path``."""
    return Path(os.environ.get("CASCADE_SCREENSHOT_DIR") or tmp_path)


def save_screenshot(driver, path: Path) -> Path:
    """The page as a small PNG at ``path``: the screenshot in at most 256 colours (a web page has few)."""
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda partial: image.quantize(256).save(partial, optimize=True))
    return path
