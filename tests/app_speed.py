"""The app end to end against its own pipeline, for the default settings (issue 10 item 3): the server and
the pipeline in one process with the same loaded model, runs interleaved, medians and their ratio. Not a test
(no timing assertions):

    python tests/app_speed.py [--reps 5] [--model FOLDER]    # default: random weights, default config
    (also the first user request after start, after `app.launch(warm=True)`'s warm-up request: "first_click_*")
    python tests/app_speed.py --long 1000                    # the app's own work per frame along one long video

App time: from the request to the last update received (the frames' views, strip and status as they come, then the
MP4 and GIF), i.e. what a client waits for. Three clients, each in a process of its own and each set up before the
first timed click, run interleaved with the pipeline (the browser needs Playwright and Chromium, as tests/test_browser.py):
* "app": the queue's own protocol read as it arrives (a POST to queue/join, then the event stream of queue/data),
  as a browser's EventSource reads it: an update counts when its message arrives;
* "browser": headless Chromium, timed in the page from the click on Generate to the final stats;
* "app_gradio_client": `gradio_client`, whose reader thread hands messages to the caller through a queue it polls
  every 50 ms, so each update it reports waits 0-50 ms more than it took to arrive (kept beside for comparison).
Pipeline time: `pipe.stream` to its last frame, in the server's process, interleaved with the app runs."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--long", type=int, default=0, help="frames of one 'until stopped' video (Session, no server)")
    ap.add_argument("--client", help=argparse.SUPPRESS)   # the client process (see main)
    ap.add_argument("--request", help=argparse.SUPPRESS)
    ap.add_argument("--via", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client_loop(args.client, json.loads(args.request), args.via)
    import torch

    torch.set_num_threads(1)

    from flashvideo import demo as lib
    from test_app import free_port, load_app

    folder = args.model
    if folder is None:
        from flashvideo.config import FlashVideoConfig
        from flashvideo.data import shapes
        from flashvideo.pipeline import FlashVideoPipeline
        from flashvideo.retnet import RetNet
        from flashvideo.tokenizer import VQTokenizer, VQVAE, WordTokenizer

        torch.manual_seed(0)
        pipe = FlashVideoPipeline(RetNet(FlashVideoConfig()), VQTokenizer(WordTokenizer(shapes.vocabulary()), VQVAE()))
        folder = pipe.save_pretrained(Path(tempfile.mkdtemp()) / "random-default")
    pipe = lib.load_pipeline(folder)
    if args.long:
        return long_run(pipe, args.long)
    app = load_app()
    demo = app.build_demo(folder)
    _, url, _ = app.launch(demo, warm=True, prevent_thread_lock=True, server_port=free_port(), quiet=True,
                           mcp_server=False)
    prompt, K, n, rho = "a red circle moves right", 4, 3, 0.2
    sampling = pipe.default_sampling   # the pipeline's defaults, given to the app explicitly
    request = [prompt, None, K, n, rho, 0, False, sampling.temperature, sampling.top_k or 0, sampling.top_p or 1.0,
               sampling.guidance_scale]
    # each client runs in a process of its own, as a browser would: it shares the cores but not this process's GIL
    clients = {via: subprocess.Popen([sys.executable, __file__, "--client", url, "--via", via,
                                      "--request", json.dumps(request)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for via in ("sse", "gradio_client", "browser")}

    def pipeline_run():
        t0 = time.perf_counter()
        first = None
        for _ in pipe.stream(prompt, key_frames=K, interp_frames=n, inherit_ratio=rho, seed=0):
            first = first or time.perf_counter() - t0
        return time.perf_counter() - t0, first

    for client in clients.values():
        assert client.stdout.readline().strip() == "ready"

    def app_run(via="sse"):
        clients[via].stdin.write("go\n")
        clients[via].stdin.flush()
        return json.loads(clients[via].stdout.readline())

    first_click = app_run()   # the first user request after start (after `launch(warm=True)`'s warm-up request)
    pipeline_run()            # warm-up
    for via in ("gradio_client", "browser"):   # their first requests too, untimed
        app_run(via)
    pipe_t, app_t, gc_t, br_t = [], [], [], []
    for _ in range(args.reps):
        pipe_t.append(pipeline_run())
        app_t.append(app_run())
        gc_t.append(app_run("gradio_client"))
        br_t.append(app_run("browser"))
    for client in clients.values():
        client.stdin.close()
        client.wait()
    demo.close()
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    out = {"settings": f"K={K}, n={n}, rho={rho}, {K + (K - 1) * n} frames, step {pipe.model.step_backend}",
           "pipeline_s": round(med(pipe_t, 0), 3), "app_s": round(med(app_t, 0), 3),
           "app_over_pipeline": round(med(app_t, 0) / med(pipe_t, 0), 3),
           "pipeline_first_frame_s": round(med(pipe_t, 1), 3), "app_first_frame_s": round(med(app_t, 1), 3),
           "app_frames_per_s": round((K + (K - 1) * n) / med(app_t, 0), 1),
           "app_updates": app_t[0][2], "app_gradio_client_updates": gc_t[0][2],
           "app_gradio_client_s": round(med(gc_t, 0), 3),
           "app_gradio_client_over_pipeline": round(med(gc_t, 0) / med(pipe_t, 0), 3),
           "browser_s": round(med(br_t, 0), 3), "browser_over_pipeline": round(med(br_t, 0) / med(pipe_t, 0), 3),
           "browser_first_frame_s": round(med(br_t, 1), 3), "browser_updates": br_t[0][2],
           "first_click_s": round(first_click[0], 3), "first_click_first_frame_s": round(first_click[1], 3),
           "first_click_over_warm_app": round(first_click[0] / med(app_t, 0), 3), "reps": args.reps}
    print(json.dumps(out, indent=1))


def client_loop(url: str, request: list, via: str) -> None:
    """A client process: one /generate per "go" line on stdin; prints [seconds, seconds to the first update, updates]."""
    run = {"sse": sse_client, "gradio_client": gradio_client_run, "browser": browser_run}[via](url, request)
    print("ready", flush=True)   # set up (a browser started, its page loaded): the server waits for every client
    for _ in sys.stdin:
        print(json.dumps(run()), flush=True)


def timed(updates) -> list:
    """[seconds, seconds to the first update, updates] of a request's updates, each counted as it arrives."""
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in updates:
        first, n = first or time.perf_counter() - t0, n + 1
    return [time.perf_counter() - t0, first, n]


def gradio_client_run(url: str, request: list):
    from gradio_client import Client

    client = Client(url, analytics_enabled=False, verbose=False, download_files=False)

    def updates():
        job = client.submit(*request, api_name="/generate")
        yield from job       # blocks until each update is handed over
        job.result()
    return lambda: timed(updates())


def browser_run(url: str, request: list):
    """The page in headless Chromium (driven as tests/test_browser.py drives it) on its default settings, which are
    the request's: a click on Generate, timed in the page from the click to the first live frame and to the final
    stats; its updates are the distinct status lines seen."""
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS, STATUS

    browser = sync_playwright().start().chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#generate")
    page.locator("#prompt input, #prompt textarea").first.fill(request[0])
    script = r"""() => {
        const t = window.timing = {t0: performance.now(), first: null, done: null, statuses: new Set()};
        const live = () => document.querySelector('#view .fv-live img');
        const before = live()?.src;
        new MutationObserver((_, observer) => {
            const now = performance.now(), status = STATUS;
            if (t.first === null && live() && live().src !== before) t.first = now - t.t0;
            if (/\d+\/\d+ · /.test(status)) t.statuses.add(status);
            if (status.includes('time to first frame') && t.statuses.size) { t.done = now - t.t0; observer.disconnect(); }
        }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
        document.querySelector('#generate').click();
    }""".replace("STATUS", STATUS)

    def run():
        page.evaluate(script)
        page.wait_for_function("() => window.timing.done !== null", polling=100)
        return page.evaluate("() => [window.timing.done / 1000, window.timing.first / 1000, window.timing.statuses.size + 1]")
    return run


def sse_client(url: str, request: list):
    """The queue's protocol as the page's own script speaks it: join, then read the event stream as it arrives.
    The inputs `request` leaves out take the components' defaults from the app's config."""
    import uuid

    import httpx

    url = url.rstrip("/")
    http = httpx.Client(timeout=None)
    config = http.get(f"{url}/config").json()
    api = url + config.get("api_prefix", "/gradio_api")
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "generate")
    defaults = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    data = list(request) + [defaults.get(i) for i in dep["inputs"][len(request):]]
    session = uuid.uuid4().hex[:11]

    def updates():
        joined = http.post(f"{api}/queue/join", json={"data": data, "fn_index": dep["id"], "session_hash": session,
                                                      "event_data": None, "trigger_id": None})
        joined.raise_for_status()
        event = joined.json()["event_id"]
        with http.stream("GET", f"{api}/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("event_id") != event:
                    continue
                if msg["msg"] == "process_generating":
                    yield msg
                elif msg["msg"] == "process_completed":
                    if not msg.get("success", False):
                        raise RuntimeError(f"the app failed: {str(msg.get('output'))[:300]}")
                    yield msg
                    return
    return lambda: timed(updates())


def long_run(pipe, n_frames):
    """Time the app's own work per frame (`Session._add`: PNGs, HTML, filmstrip, MP4) and the size of each
    update along one video of n_frames, with a prompt change every 250 frames; RSS at the end."""
    from flashvideo import app_session
    from flashvideo import demo as lib

    s = lib.Settings.check(pipe, "a red circle moves right", 4, 3, 0.2, seed=0, length="until stopped")
    session = app_session.Session(pipe, "random", tempfile.mkdtemp())
    add, work = session._add, []

    def timed(*a):
        t0 = time.perf_counter()
        up = add(*a)
        work.append((time.perf_counter() - t0, len(up.view) + len(up.strip or "")))
        return up

    session._add = timed
    prompts = ["a red circle moves down", "a blue square grows", "a red circle moves left"]
    t0, stamps = time.perf_counter(), []
    run = session.generate(s)
    for i, _ in zip(range(n_frames), run):
        stamps.append(time.perf_counter() - t0)
        if i and i % 250 == 0 and session.stream is not None:
            session.stream.prompt = prompts[(i // 250 - 1) % len(prompts)]
    run.close()
    session.finish()
    rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
    windows = [(a, min(a + 50, n_frames)) for a in (10, n_frames // 2, n_frames - 50)]
    out = {"frames": n_frames, "rss_mb_end": rss, "kept": len(session.kept), "mp4_segments": len(session.segments)}
    for a, b in windows:
        out[f"frames {a}-{b}"] = {
            "app_ms_per_frame": round(1000 * statistics.median(w for w, _ in work[a:b]), 2),
            "update_kb": round(statistics.median(n for _, n in work[a:b]) / 1024, 1),
            "s_per_frame_total": round((stamps[b - 1] - stamps[a - 1]) / (b - a), 4)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
