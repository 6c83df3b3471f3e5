"""Screenshots of the app with the shipped model, mid-generation and finished: runs/app_mid.png, runs/app_done.png
(copied to assets/app_screenshot.png). Not a test; needs Playwright and Chromium.

    python tests/screenshot.py [SECONDS_BEFORE_THE_FIRST_SHOT]"""
import subprocess, sys, time, os, socket
from playwright.sync_api import sync_playwright
port = 7861
env = dict(os.environ, GRADIO_SERVER_PORT=str(port))
os.makedirs("runs", exist_ok=True)
proc = subprocess.Popen([sys.executable, "app.py"], env=env, stdout=open("runs/app_shot.log", "w"), stderr=subprocess.STDOUT)
try:
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close(); break
        except OSError:
            time.sleep(1)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}")
        page.wait_for_selector("#generate")
        page.click("#generate")
        time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
        page.screenshot(path="runs/app_mid.png", full_page=True)
        time.sleep(8)
        page.screenshot(path="runs/app_done.png", full_page=True)
        b.close()
finally:
    proc.terminate()
print("wrote runs/app_mid.png runs/app_done.png")
