"""``cascade serve``'s app in a real browser: the server on 127.0.0.1, headless Chromium types a prompt, presses
Generate, waits for the video, and the file the page plays decodes to the cascade's frame count and size.

The tiny cascade (one step a stage) keeps it fast; with ``CASCADE_SCREENSHOT_DIR`` set the app runs the demo
cascade instead, so the screenshot written there (``docs/serve.png`` in the README) shows real videos.
"""

import os
import urllib.request

import imageio.v3 as iio
import pytest

from cascade.app.generation import default_num_frames
from cascade.app.ui import build_app, launch
from cascade.pipelines.cascade import load_cascade
from cascade.testing.tiny_models import fast_tiny_cascade

from browser import chromium, free_port, save_screenshot, screenshot_folder

PROMPT = "a blue square moving up"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The app on a free port of 127.0.0.1, gradio's files in ``tmp_path/gradio``; yields ``(url, app)``."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    if os.environ.get("CASCADE_SCREENSHOT_DIR"):
        cascade = load_cascade()
        cascade.set_progress_bar_config(disable=True)
    else:
        cascade = fast_tiny_cascade()
    app = build_app(cascade, cache_size=2)
    port = free_port()
    launch(app, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        app.close()


def test_a_prompt_typed_in_the_browser_becomes_a_playable_video(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server
    cascade = app.generate_tab.pool.first
    # The last stage's frame count and size at the model's default keyframes count (what the page starts with).
    frames, size = list(cascade.output_shapes(default_num_frames(cascade)).values())[-1]
    with chromium() as browser:
        browser.get(url)
        prompt = WebDriverWait(browser, 60).until(
            lambda b: b.find_element(By.CSS_SELECTOR, "#prompt textarea")
        )
        prompt.clear()
        prompt.send_keys(PROMPT)
        browser.find_element(By.CSS_SELECTOR, "#generate").click()
        video = WebDriverWait(browser, 300).until(lambda b: b.find_element(By.CSS_SELECTOR, "#video video"))
        # The browser decoded it: metadata loaded, the video's own width and height.
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return arguments[0].readyState", video) >= 1
        )
        shown = browser.execute_script("return [arguments[0].videoWidth, arguments[0].videoHeight]", video)
        assert shown == [size, size]
        with urllib.request.urlopen(video.get_attribute("src")) as response:
            served = iio.imread(response.read(), index=None, extension=".mp4")  # (F, H, W, 3)
        assert served.shape == (frames, size, size, 3)
        links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
        assert sorted(link.rsplit(".", 1)[-1] for link in links if link) == ["gif", "mp4"]
        for name in cascade.stages:  # every stage's frames and the renderer's clip are on the page
            for kind in ("stage", "truth"):
                assert browser.find_element(By.CSS_SELECTOR, f"#{kind}-{name} img").get_attribute("src")
        assert "| keyframes |" not in browser.find_element(By.ID, "readings").text  # rendered as a table
        shot = save_screenshot(browser, screenshot_folder(tmp_path) / "serve.png")
    assert 0 < shot.stat().st_size < 1_000_000
    # Every file the request left is in the bounded request cache (gradio copied none).
    gradio_files = [p for p in (tmp_path / "gradio").rglob("*") if p.is_file()]
    assert gradio_files and all(app.generate_tab.cache.folder in p.parents for p in gradio_files)
