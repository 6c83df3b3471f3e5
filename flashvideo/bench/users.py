"""Section `users`: simultaneous users through the batched server (`flashvideo.serving`): 1, 4, 16 and 32 of them
ask at the same moment for the default demo video (4 key frames, 3 inserted per pair, rho 0.2), each with a seed
of its own. Reported: the wall time until the last user has its whole video, throughput, each user's time to its
first and to its last frame, the rows a batched step decoded on average, and 16 users' wall time over one's
(issue 10's target: at most 3x)."""
from __future__ import annotations

import threading
import time

from ..serving import MAX_ROWS, Server
from ..timeline import Timeline
from .common import Settings, fmt_s, median
from .demo import DEMO_INTERP_FRAMES, DEMO_KEY_FRAMES, DEMO_RHO, demo_pipeline

TARGET_RATIO = 3.0  # 16 simultaneous users in at most this many times one user's wall time


def serve_users(pipe, users: int, prompt: str) -> dict:
    """`users` threads ask one fresh Server for the demo video at once (seeds 0..users-1); seconds from the start."""
    server = Server(pipe)
    first, last, failures = [None] * users, [None] * users, []
    go = threading.Barrier(users + 1)

    def user(i):
        go.wait()
        try:
            for _ in server.stream(prompt, key_frames=DEMO_KEY_FRAMES, interp_frames=DEMO_INTERP_FRAMES,
                                   inherit_ratio=DEMO_RHO, seed=i):
                if first[i] is None:
                    first[i] = time.perf_counter() - t0
            last[i] = time.perf_counter() - t0
        except Exception as e:  # reported below, after every user has finished
            failures.append(e)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.wait()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of {users} users failed") from failures[0]
    frames = users * Timeline(DEMO_KEY_FRAMES, DEMO_INTERP_FRAMES).n_frames
    return {"users": users, "wall": max(last), "frames_per_s": frames / max(last),
            "first_frame_median": median(first), "first_frame_max": max(first),
            "last_frame_median": median(last), "last_frame_max": max(last),
            "rows_per_step": server.rows_stepped / max(1, server.batches), "batched_steps": server.batches,
            "decode_seconds": server.decode_seconds}


def section_users(s: Settings) -> dict:
    pipe, weights = demo_pipeline(s)
    serve_users(pipe, 1, s.demo_prompt)  # warm-up
    rows = []
    for n in s.users:
        runs = sorted((serve_users(pipe, n, s.demo_prompt) for _ in range(s.repeats)), key=lambda r: r["wall"])
        rows.append(runs[len(runs) // 2])  # the run of median wall time
    walls = {r["users"]: r["wall"] for r in rows}
    many = 16 if 16 in walls else max(walls)
    return {"weights": weights, "step": pipe.model.step_backend, "prompt": s.demo_prompt, "max_rows": MAX_ROWS,
            "frames_per_user": Timeline(DEMO_KEY_FRAMES, DEMO_INTERP_FRAMES).n_frames, "rows": rows,
            "ratio_users": many, "wall_ratio": walls[many] / walls[1] if 1 in walls else None,
            "target_ratio": TARGET_RATIO}


def markdown(r: dict) -> list[str]:
    u = r["users"]
    L = ["## Simultaneous users (batched serving)", "",
         f"{u['weights']}; recurrent step: {u['step']}. Every user asks at the same moment for \"{u['prompt']}\" "
         f"({DEMO_KEY_FRAMES} key frames, {DEMO_INTERP_FRAMES} inserted per pair: {u['frames_per_user']} frames, "
         f"rho {DEMO_RHO:g}), with a seed of its own; one `flashvideo.serving.Server` decodes them together (at most "
         f"{u['max_rows']} rows per step). Each row is the run of median wall time; times are from the moment all "
         "users ask.", "",
         "| users | wall time | frames/s | first frame (median / max) | last frame (median / max) | rows per step "
         "| in batched decoding |",
         "|---|---|---|---|---|---|---|"]
    for x in u["rows"]:
        L.append(f"| {x['users']} | {fmt_s(x['wall'])} | {x['frames_per_s']:.1f} | {fmt_s(x['first_frame_median'])} / "
                 f"{fmt_s(x['first_frame_max'])} | {fmt_s(x['last_frame_median'])} / {fmt_s(x['last_frame_max'])} | "
                 f"{x['rows_per_step']:.1f} | {fmt_s(x['decode_seconds'])} |")
    if u["wall_ratio"] is not None:
        many = next(x for x in u["rows"] if x["users"] == u["ratio_users"])
        one = next(x for x in u["rows"] if x["users"] == 1)
        L += ["", f"{u['ratio_users']} users' wall time / 1 user's: {u['wall_ratio']:.2f}x "
                  f"(target for 16 users: at most {u['target_ratio']:g}x); their batched decoding (steps, prefills, "
                  f"sampling) alone took "
                  f"{many['decode_seconds'] / one['wall']:.2f}x one user's whole video."]
    return L + [""]
