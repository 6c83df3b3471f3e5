"""Screenshots of the app with the shipped model, mid-generation and finished: runs/app_mid.png, runs/app_done.png
(copy app_done.png to assets/app_screenshot.png). Not a test; needs Playwright and Chromium.

    python tests/screenshot.py [SECONDS_BEFORE_THE_FIRST_SHOT]"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from test_app import free_port  # noqa: E402

FINISHED_AFTER_S = 8   # the default video and its MP4 and GIF are done well within this


def main(first_shot_s: float = 1.0) -> None:
    port = free_port()
    os.makedirs("runs", exist_ok=True)
    with open("runs/app_shot.log", "w") as log:
        app = subprocess.Popen([sys.executable, "app.py"], env=dict(os.environ, GRADIO_SERVER_PORT=str(port)),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):  # python app.py loads the model and sends its warm-up request first
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("#generate")
            page.click("#generate")
            time.sleep(first_shot_s)
            page.screenshot(path="runs/app_mid.png", full_page=True)
            time.sleep(FINISHED_AFTER_S)
            page.screenshot(path="runs/app_done.png", full_page=True)
            browser.close()
    finally:
        app.terminate()
    print("wrote runs/app_mid.png runs/app_done.png")


if __name__ == "__main__":
    main(*map(float, sys.argv[1:2]))
