"""FlashVideoPipeline: text -> key frames -> redundant-free interpolation, yielding frames one at a time.

    pipe = FlashVideoPipeline.from_pretrained()          # the shipped default, or a folder / Hub id
    for ev in pipe.stream("a red circle moves right", key_frames=4, interp_frames=3, inherit_ratio=0.2):
        ev.index, ev.kind, ev.image, ev.regions, ev.stats

Order of events: the key frames (time index 0, n+1, 2(n+1), ...), then the in-between frames,
F_2 of every pair, then F_3 of every pair, and so on (all pairs are decoded as one batch).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import rerank, validation
from .config import FlashVideoConfig
from .layout import KEY, UNKNOWN, Layout
from .regions import INHERITABLE, inherit_plan, region_counts, region_labels, token_regions
from .retnet import RetNet
from .sampler import SamplingSettings
from .sampling import Decoder, frame_draft, torch_threads
from .timeline import Timeline
from .frames import as_rgb_frame
from .tokenizer import Tokenizer, load_tokenizer
from .video_writer import SUFFIXES, VideoWriter

# The shipped default model: checkpoints/shapes of a repo checkout (or an editable install), else the copy
# a wheel carries inside the package (pyproject.toml maps checkpoints/ to flashvideo/checkpoints/).
DEFAULT_CHECKPOINTS = (Path(__file__).resolve().parent.parent / "checkpoints" / "shapes",
                       Path(__file__).resolve().parent / "checkpoints" / "shapes")


def _shipped() -> Path | None:
    return next((f for f in DEFAULT_CHECKPOINTS if (f / "config.json").is_file()), None)


def default_checkpoint() -> Path:
    """The first of DEFAULT_CHECKPOINTS that holds a config.json; FileNotFoundError naming both otherwise."""
    folder = _shipped()
    if folder is not None:
        return folder
    raise FileNotFoundError(
        "the shipped default model is not here: looked for config.json in " + " and in ".join(map(str, DEFAULT_CHECKPOINTS))
        + ". Pass a checkpoint folder or a Hub repo id to from_pretrained (--model on the command line), or "
        "reinstall flashvideo from a wheel or a repo checkout that holds checkpoints/shapes")


DEFAULT_CHECKPOINT = _shipped() or DEFAULT_CHECKPOINTS[0]   # where the default was found at import time
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class FrameEvent:
    index: int                      # position in the finished video (time order)
    kind: str                       # "key" or "interpolated"
    image: np.ndarray               # (H, W, 3) uint8
    regions: np.ndarray | None      # (h, w) region names for interpolated frames, else None
    stats: dict = field(default_factory=dict)


@dataclass
class Video:
    frames: np.ndarray              # (T, H, W, 3) uint8, time order
    kinds: list                     # "key" / "interpolated" per frame
    regions: list                   # (h, w) region names per frame, None for key frames
    stats: dict = field(default_factory=dict)

    @classmethod
    def collect(cls, events, n_frames: int) -> "Video":
        """Put streamed FrameEvents back in time order."""
        frames, kinds, regions, stats = [None] * n_frames, [None] * n_frames, [None] * n_frames, {}
        for ev in events:
            frames[ev.index], kinds[ev.index], regions[ev.index], stats = ev.image, ev.kind, ev.regions, ev.stats
        return cls(np.stack(frames), kinds, regions, stats)

    def save(self, path, fps: int = 8, scale: int = 1) -> Path:
        """Write a .gif or .mp4 (`VideoWriter`; any other format imageio knows); scale > 1 enlarges by pixel
        repetition."""
        path = Path(path)
        if path.suffix.lower() not in SUFFIXES:
            import imageio.v2 as imageio

            imageio.mimsave(path, list(self.frames.repeat(scale, axis=1).repeat(scale, axis=2)))
            return path
        with VideoWriter(path, fps, scale) as out:
            for i, frame in enumerate(self.frames):
                out.add(i, frame)
        return path


def child_seed(seed: int, *path: int) -> int:
    """An independent, reproducible seed for a sub-task (e.g. one key-frame pair)."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class FlashVideoPipeline:
    chunked_prefill = True  # known spans through the chunkwise form (False: token by token, for benchmarks)
    draft_len = 8  # speculative decoding: each frame drafted from the one before, 8 codes checked per pass (0: off)
    # Threads of the drafted passes (None: torch's setting, one per core; token by token, recurrent steps take 1).
    # A pass of a few rows x 9 tokens is small matrix products that two cores share well (the default video 1.3x as
    # fast on an idle 2-core machine, tests/thread_speed.py); on a machine whose other cores are busy, 1 is safer:
    # a thread that waits for a busy core holds up the other.
    threads: int | None = None

    def __init__(self, model: RetNet, tokenizer: Tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config: FlashVideoConfig = model.config
        self.layout = Layout(self.config)

    # ---- loading and saving ------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike | None = None) -> "FlashVideoPipeline":
        """Load a checkpoint folder (config.json, model.safetensors, tokenizer files), or a Hub repo id
        ("org/name") through huggingface_hub.snapshot_download. No argument: the shipped default
        (`default_checkpoint`: the repo's checkpoints/shapes, else the copy inside an installed package).

        Hostile folders are refused with a ValueError naming the file (FileNotFoundError when one is
        missing): only regular files of bounded size are read (never a pipe or a device), every config
        field is bounded, and each safetensors header is checked against the config before a tensor is
        allocated; weights holding NaN or inf are refused."""
        folder = Path(path_or_id) if path_or_id is not None else default_checkpoint()
        if not folder.is_dir():
            name = str(path_or_id)
            if path_or_id is None or name.count("/") != 1 or name.startswith((".", "/")):
                raise FileNotFoundError(f"no checkpoint folder at {folder} (and {name!r} is not a Hub repo id 'org/name')")
            from huggingface_hub import snapshot_download

            from .hub import HUB_FILES

            folder = Path(snapshot_download(name, allow_patterns=list(HUB_FILES)))   # exactly these names, nothing else
        model = load_model(folder)
        return cls(model, load_tokenizer(folder, model.config))

    def save_pretrained(self, folder, push_to_hub: bool = False, repo_id: str | None = None, *,
                        dtype: torch.dtype | None = None, **hub_kwargs) -> Path:
        """Write the folder `from_pretrained` reads. Refuses weights holding NaN or inf (they could never
        be loaded back); config.json and model.safetensors are written under temporary names and then
        renamed into place, so a crash never leaves a half-written file under the real name.

        dtype=torch.float16 stores the weights at half the size (loading turns them back into float32): the
        shipped model's file stays under 10 MB, so a Space holds it without LFS. Rounding changes a weight by at
        most 1/2048 of itself.

        push_to_hub=True: then write a model card (README.md: config, words, eval table) and upload the
        folder to the Hub repo `repo_id` ("org/name"); `hub_kwargs` go to `flashvideo.hub.push_to_hub`
        (eval_path, private, token, commit_message)."""
        if push_to_hub and not repo_id:
            raise ValueError("push_to_hub=True needs repo_id='org/name'")
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        state = {k: v.detach().cpu().to(dtype if dtype and v.is_floating_point() else v.dtype).contiguous()
                 for k, v in self.model.state_dict().items()}
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(f"refusing to save weights holding NaN or inf: {bad[:5]}")
        for name, write in (("config.json", self.config.save),
                            ("model.safetensors", lambda p: save_file(state, str(p)))):
            tmp = folder / f".{name}.tmp"
            write(tmp)
            os.replace(tmp, folder / name)
        self.tokenizer.save(folder)
        if push_to_hub:
            from .hub import push_to_hub as push

            push(folder, repo_id, **hub_kwargs)
        return folder

    def compile(self, backend: str = "torch.compile") -> bool:
        """Opt in to a faster recurrent step; returns whether `self.model.step_backend` changed to it. Nothing
        calls this on the request path; the eager step serves otherwise (and whenever the faster one cannot).

        * "torch.compile": `RetNet.compile_step`, tens of seconds of CPU now; a failure is logged with its
          reason and leaves the eager step in place.
        * "aoti": load the AOTInductor step built for this CPU type and these weights by
          `python -m flashvideo.aot build` (milliseconds; never builds here). False if there is none.
          An app can call `compile("aoti")` at start-up and show `pipe.model.step_backend`."""
        if backend == "aoti":
            from . import aot

            return aot.load_step(self.model)
        if backend == "torch.compile":
            return self.model.compile_step()
        raise ValueError(f"backend must be 'aoti' or 'torch.compile', got {backend!r}")

    @property
    def default_sampling(self) -> SamplingSettings:
        """What a caller gets without sampling settings: the model's `config.sampling` (measured for the
        shipped model), the rest neutral."""
        return SamplingSettings.resolve(None, self.config.sampling)

    # ---- input checks ------------------------------------------------------------------------
    def check_settings(self, key_frames, interp_frames, inherit_ratio, temperature=None, top_k=None, seed=0, *,
                       top_p=None, guidance_scale=None, negative_prompt=None, sampling=None) -> SamplingSettings:
        """ValueError naming the first bad value; returns the sampling settings (`SamplingSettings.resolve`)."""
        c = self.config

        def need(ok, msg):
            if not ok:
                raise ValueError(msg)

        def is_int(x):
            return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

        need(is_int(key_frames) and 2 <= key_frames <= c.max_key_frames,
             f"key_frames must be an integer in 2..{c.max_key_frames}, got {key_frames!r}")
        need(is_int(interp_frames) and 0 <= interp_frames <= c.max_interp_frames,
             f"interp_frames must be an integer in 0..{c.max_interp_frames}, got {interp_frames!r}")
        need(isinstance(inherit_ratio, (int, float)) and 0.0 <= inherit_ratio <= 1.0,
             f"inherit_ratio must be a number in [0, 1], got {inherit_ratio!r}")
        settings = SamplingSettings.resolve(sampling, c.sampling, temperature=temperature, top_k=top_k, top_p=top_p,
                                            guidance_scale=guidance_scale).check_codes(c.n_codes)
        need(is_int(seed) and 0 <= seed < 2**63, f"seed must be a non-negative integer, got {seed!r}")
        need(negative_prompt is None or isinstance(negative_prompt, str),
             f"negative_prompt must be a string or None, got {negative_prompt!r}")
        need(not (negative_prompt or "").strip() or settings.guided,
             "a negative_prompt only acts through guidance: set guidance_scale != 1 (e.g. 3)")
        return settings

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        validation.check_prompt(prompt)
        return self.layout.text_block(self.tokenizer.encode_text(prompt))

    def encode_negative(self, negative_prompt: str | None, sampling: SamplingSettings) -> torch.Tensor | None:
        """The unconditional text block of guided decoding: the negative prompt, or all padding (the
        dropped prompt the model was trained with); None without guidance."""
        if not sampling.guided:
            return None
        if negative_prompt is None or not negative_prompt.strip():
            return self.layout.null_text()
        return self.encode_prompt(negative_prompt)

    def encode_image(self, image) -> torch.Tensor:
        """Any image (PIL, array; any size or mode) -> (grid, grid) codes."""
        frame = as_rgb_frame(image, self.tokenizer.image_size)
        return self.tokenizer.encode_frames(frame[None])[0]

    def decode_frame(self, codes: torch.Tensor) -> np.ndarray:
        """One frame's codes (grid, grid) -> its image, uint8 (H, W, 3), on one thread: a frame is too small to
        share out, and a second thread that waits for a busy core makes the decoding many times slower."""
        with torch_threads(1):
            return self.tokenizer.decode_frames(codes[None])[0]

    # ---- generation --------------------------------------------------------------------------
    def _decoder(self, generators, sampling, counts) -> Decoder:
        """Drafted passes run on `threads`; token by token, recurrent steps take 1 (matrix-vector products)."""
        return Decoder(self.model, generators, sampling, counts=counts, chunked=self.chunked_prefill,
                       draft_len=self.draft_len, threads=self.threads if self.draft_len else 1)

    def _guidance_text(self, sampling, negative):
        """The twins' text block: `negative` (text_len,), or the null text; None when unguided."""
        if not sampling.guided:
            return None
        return self.layout.null_text() if negative is None else negative

    def key_frame_codes(self, text, key_frames, seed, given=None, *, sampling=None, negative=None, counts=None,
                        **sampling_keywords):
        """Yield the code grid (grid, grid) of key frames 1..K in turn: T SN_1 F_1  T SN_2 F_2 ...
        A given first frame (codes) is fed in the same chunkwise pass as its header, not sampled.
        Sampling: `sampling=` or its keywords (temperature, top_k, top_p, guidance_scale, lead_in: key frames
        drawn first and not yielded, unless a first frame is given). Guided
        (guidance_scale != 1): the twin row reads `negative` (default: the null text)."""
        sampling = SamplingSettings.resolve(sampling, self.config.sampling, **sampling_keywords)
        L, G = self.layout, self.config.grid
        dec = self._decoder([_generator(child_seed(seed, 0))], sampling, counts)
        neg = self._guidance_text(sampling, negative)
        lead = 0 if given is not None else sampling.lead_in  # key frames drawn first, not shown
        before = []  # the last three key frames decoded: the next one's draft (`frame_draft`)
        for i, k in enumerate(L.key_sns(key_frames, lead)):
            frame = (given if (i == 0 and given is not None) else torch.full((G, G), UNKNOWN)).flatten()
            plan = torch.cat([L.header(KEY, text, k), frame])[None]
            twin = None if neg is None else torch.cat([L.header(KEY, neg, k), frame])[None]
            if not before:  # the first (drawn from the prompt alone: the likeliest of its candidates; or given)
                done = rerank.first_key_frame(self, dec, plan, twin, seed, sampling)
            else:
                done = dec.run(plan, twin, L.draft(frame_draft(before))[None])
            codes = done[0, L.header_len:].view(G, G)
            before = before[-2:] + [codes]
            if i >= lead:
                yield codes

    def interpolation_codes(self, text, keys, interp_frames, inherit_ratio, seed, *, sampling=None, negative=None,
                            radius=1, batch_pairs=True, counts=None, first_pair=0, **sampling_keywords):
        """Redundant-free interpolation between consecutive key frames (list of (grid, grid) codes).

        Yields (pair, j, codes, regions): in-between frame j (1..n, time order) of pair p. Every pair
        has its own generator (its region draw and its samples), so batching does not change frames.
        Sampling and guidance as in `key_frame_codes`, unguided if the settings' `guide_interp` is off."""
        sampling = SamplingSettings.resolve(sampling, self.config.sampling, **sampling_keywords).for_interp()
        L, G = self.layout, self.config.grid
        pairs = list(range(len(keys) - 1))
        gens = [_generator(child_seed(seed, 1, first_pair + p)) for p in pairs]  # pair numbers of a longer video
        regions = [token_regions(keys[p], keys[p + 1], inherit_ratio, gens[p], radius) for p in pairs]
        sns, task = L.interp_sns(interp_frames), L.interp_task(interp_frames)
        neg = self._guidance_text(sampling, negative)
        for group in ([pairs] if batch_pairs else [[p] for p in pairs]):
            def slots(txt, *frames):  # (len(group), ...): per pair, header(sn) + codes for each (sn, codes of pair p)
                return torch.stack([torch.cat([torch.cat([L.header(task, txt, sn), f(p).flatten()]) for sn, f in frames])
                                    for p in group])

            def twin(*frames):
                return None if neg is None else slots(neg, *frames)

            dec = self._decoder([gens[p] for p in group], sampling, counts)
            # T SN_1 A  T SN_(n+2) B: known, one chunkwise pass
            known = ((sns[0], lambda p: keys[p]), (sns[1], lambda p: keys[p + 1]))
            dec.feed(slots(text, *known), twin(*known))
            codes = torch.stack([keys[p] for p in group])  # the frame before each: the draft of its codes
            for j, sn in enumerate(sns[2:], start=1):  # T SN_(j+1) F_(j+1), inheritable codes copied from A
                frame = (sn, lambda p: inherit_plan(keys[p], regions[p]))
                codes = dec.run(slots(text, frame), twin(frame), L.draft(codes))[:, L.header_len:]
                codes = codes.view(len(group), G, G)
                for row, p in enumerate(group):
                    yield p, j, codes[row], regions[p]

    @torch.no_grad()
    def stream(self, prompt: str, key_frames: int = 4, interp_frames: int = 3, inherit_ratio: float = 0.2,
               seed: int = 0, first_frame=None, temperature: float | None = None, top_k: int | None = None,
               radius: int = 1, batch_pairs: bool = True, *, top_p: float | None = None,
               guidance_scale: float | None = None, negative_prompt: str | None = None,
               sampling: SamplingSettings | None = None):
        """Yield a FrameEvent per frame as soon as it is decoded (see the module docstring for the order).

        Sampling: `sampling=SamplingSettings(...)`, or the keywords temperature (0 = greedy), top_k,
        top_p (None = off) and guidance_scale (1 = off); what is not given comes from the model
        (`default_sampling`: the shipped model's were chosen by measurement). With guidance_scale s != 1 each
        row is decoded beside an unconditional twin that reads `negative_prompt` (default: no prompt),
        and codes are drawn from uncond + s (cond - uncond)."""
        sampling = self.check_settings(key_frames, interp_frames, inherit_ratio, temperature, top_k, seed, top_p=top_p,
                                       guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                                       sampling=sampling)
        text = self.encode_prompt(prompt)
        negative = self.encode_negative(negative_prompt, sampling)
        given = self.encode_image(first_frame) if first_frame is not None else None
        tokens = self.config.frame_tokens
        t0 = time.perf_counter()
        counts = {"steps": 0, "chunks": 0, "sampled": 0, "fed": 0, "passes": 0}
        inherited_total = 0
        timeline = Timeline(key_frames, interp_frames)

        def event(index, codes, regions=None):
            inherited = int((regions == INHERITABLE).sum()) if regions is not None else 0
            stats = {"seconds": time.perf_counter() - t0, "step": self.model.step_backend,
                     "tokens_sampled": 0 if (index == 0 and given is not None) else tokens - inherited,
                     "tokens_inherited": inherited, "total_inherited": inherited_total + inherited,
                     **{f"total_{k}": v for k, v in counts.items()}}
            if regions is not None:
                stats["regions"] = region_counts(regions)
            labels = region_labels(regions) if regions is not None else None
            return FrameEvent(index, timeline.kind(index), self.decode_frame(codes), labels, stats)

        keys = []
        for k, codes in enumerate(self.key_frame_codes(text, key_frames, seed, given, sampling=sampling,
                                                       negative=negative, counts=counts)):
            keys.append(codes)
            yield event(timeline.key_index(k), codes)
        if interp_frames == 0:
            return
        for p, j, codes, regions in self.interpolation_codes(text, keys, interp_frames, inherit_ratio, seed,
                                                            sampling=sampling, negative=negative, radius=radius,
                                                            batch_pairs=batch_pairs, counts=counts):
            ev = event(timeline.interp_index(p, j), codes, regions)
            inherited_total = ev.stats["total_inherited"]
            yield ev

    def __call__(self, prompt: str, key_frames: int = 4, interp_frames: int = 3, **kwargs) -> Video:
        """The whole video (`stream`'s keywords: inherit_ratio, seed, first_frame, sampling, guidance, ...)."""
        return Video.collect(self.stream(prompt, key_frames=key_frames, interp_frames=interp_frames, **kwargs),
                             Timeline(key_frames, interp_frames).n_frames)


def load_model(folder: Path) -> RetNet:
    """config.json + model.safetensors -> RetNet, with clear errors for every way it can be wrong.

    Nothing is sized from the files before it is checked: the config's fields are bounded, the weights
    file must be a regular file of at most `safe_io.MAX_WEIGHTS_BYTES`, and its header's tensor names
    and shapes must equal those of the model the config describes (built on the meta device, which
    allocates nothing) before any tensor is read. Weights holding NaN or inf are refused."""
    from .safe_io import MAX_WEIGHTS_BYTES, check_shapes, load_tensors, read_regular_file, safetensors_header

    folder = Path(folder)
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError as e:
        raise FileNotFoundError(f"checkpoint folder {folder} cannot be listed ({e.strerror or e})") from None
    pickles = [n for n in names if Path(n).suffix.lower() in PICKLE_SUFFIXES]
    weights, config_path = folder / "model.safetensors", folder / "config.json"
    if "model.safetensors" not in names:
        hint = (f"; found pickle files {pickles}, which are never loaded (they can run code): convert them "
                "with safetensors.torch.save_file") if pickles else ""
        raise FileNotFoundError(f"{folder} has no model.safetensors{hint}")
    if "config.json" not in names:
        raise FileNotFoundError(f"{folder} has no config.json")
    config = FlashVideoConfig.load(config_path)
    data = read_regular_file(weights, MAX_WEIGHTS_BYTES)
    header = safetensors_header(data, weights)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in RetNet(config).state_dict().items()}
    check_shapes(header, expected, weights, config_path)
    tensors = load_tensors(data, weights)
    del data
    model = RetNet(config)
    model.load_state_dict(tensors, strict=True)
    return model.eval()
