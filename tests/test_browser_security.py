"""The hardened app in a real browser (Debian's Chromium via Playwright; see tests/test_browser.py for the
set-up, the skip locally and the failure in CI): a first frame uploaded the way a person does it passes
the upload screening and is used, and a refused value shows our message."""
import numpy as np
import pytest
from PIL import Image

from test_browser import STATUS, app_url, browser, open_app, require_browser, set_slider  # noqa: F401 (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")


def test_first_frame_uploaded_in_the_browser_is_used(browser, app_url, tmp_path):  # noqa: F811
    require_browser(browser)
    url, _, _ = app_url
    image = tmp_path / "first.png"
    Image.fromarray(np.full((48, 64, 3), (30, 200, 90), np.uint8)).save(image)
    page = open_app(browser, url)
    set_slider(page, "key-frames", 2)
    set_slider(page, "interp-frames", 1)
    page.get_by_text("First frame (optional)").click()
    page.locator("#first-frame input[type=file]").first.set_input_files(str(image))
    page.wait_for_function("() => [...document.querySelectorAll('img')].some(i => i.src.includes('first.png'))")
    page.locator("#generate").click()
    page.wait_for_function(f"() => {STATUS}.includes('time to first frame')")
    set_slider(page, "frame", 0)
    page.wait_for_function("() => document.querySelector('#fv-caption').innerText.includes('Frame 0')")
    assert "the given first frame" in page.locator("#fv-caption").inner_text()
    page.close()


def test_a_refusal_shows_our_message(browser, app_url):  # noqa: F811
    require_browser(browser)
    url, _, _ = app_url
    page = open_app(browser, url)
    page.locator("#prompt input, #prompt textarea").first.fill("a dog moves right")
    page.locator("#generate").click()
    page.wait_for_function("() => document.body.innerText.includes(\"unknown words ['dog']\")")
    assert "known words: red, blue" in page.locator("body").inner_text()
    page.close()
