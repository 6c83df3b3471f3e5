"""The app in a real browser: Debian's Chromium, headless, driven by Playwright (Python).

Needs `pip install playwright` and `apt-get install -y chromium` (no `playwright install`: the
browser is the system one). Without them the tests skip locally, and FAIL when CI=true.
Screenshots of every state (loaded, mid-run, finished, stepping through frames, continued with a new
prompt, two errors in a row) go to $FLASHVIDEO_SCREENSHOTS (default tmp/runs/browser/): look at them.
"""
import importlib.util
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from flashvideo import demo as lib

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
INSTALL = "pip install playwright && apt-get update && apt-get install -y chromium"
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")
FRAME_DELAY_S = 0.25  # slows the tiny model so that a person (and the test) can watch frames arrive
STATUS = "document.querySelector('#stats [data-testid=markdown]').innerText"  # status line, then the stats
CAPTION = "document.querySelector('#fv-caption').innerText"          # the caption inside the frame view
SHOTS = Path(os.environ.get("FLASHVIDEO_SCREENSHOTS") or ROOT / "tmp" / "runs" / "browser")


def shoot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed"
    if not Path(CHROMIUM).exists():
        return f"Chromium is not at {CHROMIUM}"
    return None


def require_browser(browser):
    """Skip locally, fail in CI, with the reason and the fix."""
    if isinstance(browser, str):
        message = f"browser test cannot run: {browser} (install: {INSTALL})"
        if IN_CI:
            pytest.fail(message + " -- CI=true, so this is a failure, not a skip", pytrace=False)
        pytest.skip(message)
    return browser


@pytest.fixture(scope="module")
def browser():
    problem = missing_browser()
    if problem:
        yield problem
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app_url(browser, tiny_pipe, tmp_path_factory):
    """The app against a tiny checkpoint, in process, with its frames slowed down a little."""
    if isinstance(browser, str):  # no browser: the test skips or fails; don't start a server for it
        yield None
        return
    spec = importlib.util.spec_from_file_location("flashvideo_app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    checkpoint = tiny_pipe.save_pretrained(tmp_path_factory.mktemp("browser") / "tiny")
    pipe = lib.load_pipeline(checkpoint)
    stream, produced = pipe.stream, []

    def slow_stream(*args, **kwargs):
        for ev in stream(*args, **kwargs):
            time.sleep(FRAME_DELAY_S)
            produced.append(ev.index)
            yield ev

    pipe.stream = slow_stream
    demo = app.build_demo(checkpoint)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = app.launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    yield url, pipe, produced
    demo.close()
    del pipe.stream


def open_app(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("#generate")
    for part in ("#view", "#stats"):           # the observers below need both in the page (slow under load)
        page.wait_for_selector(part, state="attached")
    # record every frame the live view shows and every status line, as they happen
    page.evaluate("""() => {
        window.seen = {live: [], status: []};
        const note = (list, value) => { if (value && list[list.length - 1] !== value) list.push(value); };
        new MutationObserver(() => note(window.seen.live, document.querySelector('#view .fv-live img')?.src))
            .observe(document.querySelector('#view'), {subtree: true, childList: true, attributes: true});
        new MutationObserver(() => note(window.seen.status, STATUS.trim()))
            .observe(document.querySelector('#stats'), {subtree: true, childList: true, characterData: true});
    }""".replace("STATUS", STATUS))
    return page


def set_slider(page, elem_id, value):
    """Move a slider with the keyboard, as a person would."""
    slider = page.locator(f"#{elem_id} input[type=range]")
    current = float(slider.input_value())
    slider.focus()
    for _ in range(int(abs(value - current))):
        page.keyboard.press("ArrowRight" if value > current else "ArrowLeft")
    assert float(slider.input_value()) == value


def test_generate_in_the_browser(browser, app_url):
    require_browser(browser)
    url, _, _ = app_url
    page = open_app(browser, url)
    shoot(page, "1_loaded")
    page.locator("#prompt input, #prompt textarea").first.fill("a blue square grows")
    set_slider(page, "key-frames", 3)
    set_slider(page, "interp-frames", 2)                     # 3 + 2*2 = 7 frames
    page.locator("#generate").click()

    # frames appear while it runs: an interpolated frame with its token regions, mid-generation
    page.wait_for_function(f"() => /interpolated frame .* [4-6]\\/7/.test({STATUS})")
    # the caption and the image are one update: the caption names the frame the status line names
    status, caption = page.evaluate(f"() => [{STATUS}, {CAPTION}]")
    assert re.search(r"frame (\d+)", status).group(1) == re.search(r"Frame (\d+)", caption).group(1)
    legend = page.locator("#view .fv-legend")
    for label in ("different", "unstable", "inheritable", "stable (generated)"):
        assert legend.get_by_text(label, exact=True).is_visible()
    assert page.locator("#view img").count() == 3             # frame; frame under its one region map
    assert "Live: frame" in page.locator("#view").inner_text()
    shoot(page, "2_mid_run")

    page.wait_for_function(f"() => {STATUS}.includes('time to first frame')")
    seen = page.evaluate("window.seen")
    statuses = [s for s in seen["status"] if re.search(r"\d/7", s)]
    assert len(statuses) >= 3, seen["status"]                  # one status per update (frames decoded together
                                                               # share one), key frames first
    assert statuses[0].startswith("key frame") and "7/7" in statuses[-1]
    assert page.locator("#video video").get_attribute("src").endswith(".mp4")
    assert page.locator("#gif").is_enabled() and page.locator("#continue").is_enabled()
    assert "sequential model calls" in page.evaluate(STATUS)
    assert "Frame 1" in page.evaluate(CAPTION)
    # no status or error badge covers the stats
    badges = page.locator("#stats .progress-text, #stats .error")
    assert all(not badges.nth(i).is_visible() for i in range(badges.count()))
    shoot(page, "3_finished")

    # step through the finished video: frame 1 (interpolated) -> frame 3 (a key frame)
    set_slider(page, "frame", 3)
    page.wait_for_function(f"() => {CAPTION}.includes('Frame 3')")
    assert "key frame" in page.evaluate(CAPTION)
    assert "stepping through" in page.locator("#view").inner_text() and "Live" not in page.locator("#view").inner_text()
    shoot(page, "4_stepping")

    # a new run clears the last video and the slider at once
    page.locator("#generate").click()
    page.wait_for_function(f"() => /\\d\\/7/.test({STATUS})")
    assert page.locator("#video video").count() == 0 and not page.locator("#continue").is_enabled()
    page.wait_for_function(f"() => {STATUS}.includes('time to first frame')")

    # continue with a new prompt: the video goes on from frame 7, the strip names where the prompt changed
    page.locator("#next-prompt input, #next-prompt textarea").first.fill("a blue square moves right")
    set_slider(page, "key-frames", 2)
    page.locator("#continue").click()
    page.wait_for_function(f"() => {STATUS}.includes('prompt changed 1')")
    assert "from frame 7: 'a blue square moves right'" in page.locator("#strip").inner_text()
    assert "generate a video first" not in page.locator("body").inner_text()   # no stray error on the way
    shoot(page, "5_continued")
    page.close()


def test_two_errors_in_a_row_both_stay_visible(browser, app_url):
    require_browser(browser)
    url, _, _ = app_url
    page = open_app(browser, url)
    box = page.locator("#prompt input, #prompt textarea").first
    box.fill("a dog moves right")
    page.locator("#generate").click()
    page.wait_for_function("() => document.body.innerText.includes(\"unknown words ['dog']\")")
    time.sleep(3)
    box.fill("a cat moves right")
    page.locator("#generate").click()
    page.wait_for_function("() => document.body.innerText.includes(\"unknown words ['cat']\")")
    time.sleep(11)                                            # past the 10 s a toast used to last
    shoot(page, "6_two_errors")
    body = page.locator("body").inner_text()
    assert "unknown words ['dog']" in body and "unknown words ['cat']" in body
    badges = page.locator("#stats .error, #view .error")       # Gradio's Error badge over an output
    assert all(not badges.nth(i).is_visible() for i in range(badges.count()))
    page.close()


def test_stop_button_cancels(browser, app_url):
    require_browser(browser)
    url, pipe, produced = app_url
    page = open_app(browser, url)
    set_slider(page, "key-frames", pipe.config.max_key_frames)
    set_slider(page, "interp-frames", pipe.config.max_interp_frames)
    total = pipe.config.max_key_frames + (pipe.config.max_key_frames - 1) * pipe.config.max_interp_frames
    produced.clear()
    page.locator("#generate").click()
    page.wait_for_function(f"() => /[2-9]\\/{total}/.test({STATUS})")
    page.locator("#stop").click()
    time.sleep(4 * FRAME_DELAY_S)
    text, stopped_at = page.evaluate(STATUS), len(produced)
    time.sleep(4 * FRAME_DELAY_S)
    assert len(produced) == stopped_at < total                # the server stopped decoding
    # the frames made so far become the video: stats, MP4, frame slider and Continue
    page.wait_for_function(f"() => {STATUS}.includes('time to first frame')")
    assert f"/{total}" not in page.evaluate(STATUS) and text
    assert page.locator("#video video").get_attribute("src").endswith(".mp4")
    # and the app still works afterwards
    set_slider(page, "key-frames", 2)
    set_slider(page, "interp-frames", 0)
    page.locator("#generate").click()
    page.wait_for_function(f"() => {STATUS}.includes('time to first frame')")

    # until stopped: the video goes on past K key frames until Stop, then the frames so far are the video
    # (a third run after a Stop: with trigger_mode="once" Gradio's page never sent it)
    page.get_by_text("until stopped", exact=True).click()
    page.locator("#generate").click()
    page.wait_for_function(f"() => /frame (\\d+) · \\d+ \\(until stopped\\)/.test({STATUS}) && "
                           f"+{STATUS}.match(/frame (\\d+)/)[1] > 40")
    page.locator("#stop").click()
    page.wait_for_function(f"() => {STATUS}.includes('time to first frame')")
    assert page.locator("#video video").get_attribute("src").endswith(".mp4") and page.locator("#continue").is_enabled()
    shoot(page, "7_until_stopped")
    page.close()
