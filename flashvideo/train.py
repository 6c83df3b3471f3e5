"""Teacher-forced training of the FlashVideo RetNet over both layouts (parallel form).

Each batch is one task, drawn at random:
* key frames: K in 2..max_key_frames frames at t = 0..K-1; with probability `p_given` the first frame
  is given (prediction) and carries no loss; with probability `p_first`, K = 1: a first frame alone, the
  hardest frame of a video (drawn from the prompt with nothing to continue from);
* interpolation: n in 1..max_interp_frames frames between key frames at t0 and t0+1, the loss on the
  n in-between frames only.

Runs alone or under `torchrun --nproc_per_node=N` (DDP: gloo on CPU, nccl on GPU). The data of step s
on rank r come from the generator seeded with (seed, rank, s): ranks see different clips, and a resumed
run sees exactly the data it would have seen. Checkpoints are whole folders written under a temporary
name and renamed into place, so a kill at any moment leaves the last complete one; Ctrl-C saves first.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .config import FlashVideoConfig
from .layout import INTERP, Layout
from .pipeline import FlashVideoPipeline, load_model
from .retnet import RetNet
from .timeline import Timeline
from .tokenizer import Tokenizer, read_tokenizer
from .world import World, make_world

# ---------------------------------------------------------------------------------------------- data


def make_batch(rng, source: World, tokenizer: Tokenizer, layout: Layout, batch_size: int, p_interp: float,
               p_given: float, p_uncond: float = 0.0, batch_tokens: int = 0, p_stream: float = 0.0,
               p_shake: float = 0.0, p_first: float = 0.0, p_swap: float = 0.0, p_hard: float = 0.0):
    """-> tokens (B, L), targets (B, L), and a short description of the task. Clips come from `source`,
    any `flashvideo.world.World`.

    With ``batch_tokens`` the batch holds that many tokens (at least one sequence) instead of
    ``batch_size`` sequences, so long and short sequences cost about the same per step. Each
    sequence's prompt is replaced by the null text with probability ``p_uncond`` (prompt dropout,
    which classifier-free guidance needs). With probability ``p_stream`` a key-frame batch is a piece
    of an endless stream: its serial numbers start at a random point of their cycle (`Layout.key_sn`)
    and, where the source can, the prompt changes at a random frame boundary. With ``p_shake`` the
    input frames are shaken (`shake`) while the targets stay the true codes. With ``p_first`` a key-frame batch
    is of first frames alone (K = 1, SN 1, never given). With ``p_swap`` a key frame of a key-frame sequence shows
    another sequence's frame (`swap_frames`). With ``p_hard`` an interpolation sequence's clip is the hardest of
    several (`hardest`)."""
    c = layout.config
    t_max = min(source.t_max, c.max_key_frames - 1)
    first, switch_at = 1, None
    if rng.random() < p_interp:
        n = int(rng.integers(1, c.max_interp_frames + 1))
        t0 = float(rng.integers(0, int(t_max)))
        t = Timeline(2, n).times
        times = [t0 + t[0], t0 + t[-1]] + [t0 + x for x in t[1:-1]]  # slot order: A, B, middle
        generated, task = range(2, n + 2), f"interp n={n}"
    else:
        single = p_first > 0 and rng.random() < p_first   # (no draw when off: earlier runs' data stay the same)
        k = 1 if single else int(rng.integers(2, int(t_max) + 2))
        given = not single and rng.random() < p_given
        times, generated, task = list(range(k)), range(1 if given else 0, k), f"key K={k}{' +first' if given else ''}"
        if not single and rng.random() < p_stream:
            first = int(rng.integers(1, c.n_sn + 1))
            if source.sample_switch is not None and k >= 3:
                switch_at = int(rng.integers(1, k))
            task += f" stream SN{first}" + (f" switch@{switch_at}" if switch_at else "")
    if batch_tokens:
        batch_size = max(1, batch_tokens // (len(times) * layout.frame_len))

    def clip():
        return source.sample_switch(rng, times, switch_at) if switch_at else source.sample(rng, times)

    hard = p_hard if task.startswith("interp") else 0.0   # (no draw when off: earlier runs' data stay the same)
    clips = [hardest([clip() for _ in range(HARD_DRAWS)], times) if hard and rng.random() < hard else clip()
             for _ in range(batch_size)]
    codes = tokenizer.encode_frames(np.concatenate([f for _, f in clips])).view(batch_size, len(times), c.grid, c.grid)
    seqs = []
    for (prompt, _), cl in zip(clips, codes):
        prompts = prompt if isinstance(prompt, list) else [prompt]
        texts = {p: layout.text_block(tokenizer.encode_text(p)) for p in prompts}
        if rng.random() < p_uncond:
            texts = {p: layout.null_text() for p in prompts}
        if task.startswith("interp"):
            seqs.append(layout.interp_sequence(texts[prompts[0]], cl[0], cl[1], cl[2:]))
        else:
            text = torch.stack([texts[p] for p in prompts]) if len(prompts) > 1 else texts[prompts[0]]
            seqs.append(layout.key_sequence(text, cl, first))
    tokens = torch.stack(seqs)
    targets = layout.targets(tokens, generated)
    if p_shake:
        tokens = shake(rng, tokens, layout, len(times), p_shake)
    if p_swap and not task.startswith("interp"):
        tokens, targets = swap_frames(rng, tokens, targets, layout, len(times), p_swap)
    return tokens, targets, task


HARD_DRAWS = 8  # clips drawn for a hard sequence (`hardest`)


def hardest(clips: list, times) -> tuple:
    """Of (prompt, frames) clips at `times`, the one with the largest jump between two frames next to each other in
    time (the mean absolute pixel change). In the shapes world that is most often a clip in which a growing or
    shrinking object wraps from one end of its size range to the other, the moment where the shipped model drew
    most of its remaining garbled frames (README, How good it is); a clip has one in about 1 of 36 interpolation
    pairs, and the hardest of `HARD_DRAWS` in about 1 of 5."""
    order = np.argsort(times)

    def jump(frames):
        f = frames[order].astype(np.int16)
        return float(np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)).max()) if len(f) > 1 else 0.0

    return max(clips, key=lambda c: jump(c[1]))


def shake(rng, tokens: torch.Tensor, layout: Layout, n_slots: int, p_max: float) -> torch.Tensor:
    """A copy of `tokens` (B, L) in which each image code is, with probability p (drawn per sequence
    from [0, p_max]), replaced by the code of one of its four neighbours (edges repeat). Over a plain
    background this changes nothing; at an object's outline it moves the edge by a patch, the kind of
    error a sampled frame makes. Trained on clean targets from shaken inputs, the model learns to
    continue from its own imperfect frames instead of copying their wobble forward."""
    g = layout.config.grid
    out = tokens.clone()
    B = len(tokens)
    p = torch.from_numpy(rng.uniform(0, p_max, (B, 1, 1, 1)))
    for s in range(n_slots):
        pos = layout.code_positions(s)
        f = tokens[:, pos].view(B, g, g)
        pad = torch.nn.functional.pad(f[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0].long()
        neighbours = torch.stack([pad[:, :-2, 1:-1], pad[:, 2:, 1:-1], pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]], 1)
        which = torch.from_numpy(rng.integers(0, 4, (B, 1, g, g)))
        moved = neighbours.gather(1, which)[:, 0]
        pick = torch.from_numpy(rng.random((B, g, g))) < p[:, 0]
        out[:, pos] = torch.where(pick, moved, f).view(B, -1)
    return out


def swap_frames(rng, tokens: torch.Tensor, targets: torch.Tensor, layout: Layout, n_slots: int,
                p_swap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of key-frame sequences `tokens` and `targets` (B, L) in which, with probability `p_swap` for each
    sequence, one key frame before the last two shows the codes of the same slot of another sequence of the batch
    (another clip: most often another object, elsewhere), and the targets that predict that frame's codes are
    dropped. The frames after it keep their true targets, so the model learns to draw them from the prompt and
    the frames that agree with it rather than copy a wrong frame forward. In long streams a key frame off the
    prompt is followed by another two key frames later far more often than one later (README, Long videos): the
    model copies the frame two back, which has the same alignment with the patch grid. Batches of one sequence,
    or of fewer than three key frames, are returned as they are."""
    B = len(tokens)
    if B < 2 or n_slots < 3:
        return tokens, targets
    swapped, targets = tokens.clone(), targets.clone()
    other = (np.arange(B) + rng.integers(1, B)) % B       # another sequence for each
    for b in np.flatnonzero(rng.random(B) < p_swap):
        pos = layout.code_positions(int(rng.integers(0, n_slots - 2)))
        swapped[b, pos] = tokens[other[b], pos]
        targets[b, pos.start - 1:pos.stop - 1] = -100      # the positions that predict the swapped codes
    return swapped, targets


def self_feed(rng, model: RetNet, tokens: torch.Tensor, targets: torch.Tensor, q_max: float) -> torch.Tensor:
    """A copy of `tokens` in which each code the model must generate is, with probability q (drawn per
    sequence from [0, q_max]), replaced by the model's own draw for that position, made from the
    teacher-forced logits of one parallel pass (parallel scheduled sampling). The model then learns
    to continue from the errors it makes itself, while the targets stay the true codes."""
    n_codes = model.config.n_codes
    with torch.no_grad():
        logits, _ = model(tokens)
    g = torch.Generator().manual_seed(int(rng.integers(2**63)))
    probs = logits[:, :-1, :n_codes].float().cpu().softmax(-1)  # drawn on the CPU: the generator lives there
    drawn = torch.multinomial(probs.reshape(-1, n_codes), 1, generator=g).view(probs.shape[:2])
    q = torch.from_numpy(rng.uniform(0, q_max, (len(tokens), 1)))
    pick = (targets[:, :-1].cpu() != -100) & (torch.rand(drawn.shape, generator=g, dtype=q.dtype) < q)
    out = tokens.cpu().clone()
    out[:, 1:] = torch.where(pick, drawn, out[:, 1:])
    return out.to(tokens.device)


# ------------------------------------------------------------------------------------------ training

@dataclass
class TrainConfig:
    out: str = "runs/shapes"
    tokenizer: str = "runs/tokenizer"     # folder with tokenizer.json + tokenizer.safetensors
    data: str = "shapes"                   # "shapes" or a dataset folder
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    p_interp: float = 0.5
    p_given: float = 0.25
    p_uncond: float = 0.1                  # prompt dropout for classifier-free guidance
    batch_tokens: int = 0                  # if set, tokens per batch (overrides batch_size)
    p_stream: float = 0.0                  # key-frame batches cut from an endless stream (SN phase, prompt switch)
    p_shake: float = 0.0                   # input codes moved to a neighbour's with p up to this (`shake`)
    p_self: float = 0.0                    # input codes replaced by the model's own draws, p up to this (`self_feed`)
    p_first: float = 0.0                   # key-frame batches of first frames alone (K = 1)
    p_swap: float = 0.0                    # a key frame shows another sequence's, its loss dropped (`swap_frames`)
    p_hard: float = 0.0                    # an interpolation clip is the hardest of HARD_DRAWS (`hardest`)
    ema: float = 0.0                       # decay of an exponential moving average of the weights (0 = none)
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    sample_every: int = 500
    sample_prompt: str = ""
    export: str = ""                       # write the final pipeline folder here
    resume: bool = False
    init: str = ""                         # start from this pipeline folder's weights (fine-tuning), fresh optimizer
    stop_at: int = 0                       # stop (with a checkpoint) at this step; --resume goes on
    model: dict = field(default_factory=dict)  # FlashVideoConfig overrides (d_model, n_layers, ...)
    folder_frames: int = 16                # folder data: frames read per clip (`FolderWorld` n_frames)
    folder_t_max: float = 0.0              # folder data: a clip spans t in [0, this]; 0 = folder_frames - 1


def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    return tc.min_lr + 0.5 * (tc.lr - tc.min_lr) * (1 + math.cos(math.pi * progress))


def load_tokenizer_folder(folder) -> Tokenizer:
    """A tokenizer folder made by `train-tokenizer`, with no model config yet: whatever backend its
    tokenizer.json names (`tokenizer.TOKENIZERS`), with that backend's own checks."""
    folder = Path(folder)
    meta_path = folder / "tokenizer.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: train one with `python -m flashvideo train-tokenizer`")
    return read_tokenizer(folder)


def _optimizer(model: RetNet, tc: TrainConfig):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=(0.9, 0.95))


def save_checkpoint(out: Path, step: int, model: RetNet, tokenizer: Tokenizer, opt, tc: TrainConfig,
                    ema: RetNet | None = None) -> Path:
    """out/step-NNNNNN (pipeline folder + optimizer.safetensors + trainer_state.json, and with `ema` the
    averaged weights as a pipeline folder of their own in ema/), written atomically."""
    from safetensors.torch import save_file

    final = out / f"step-{step:07d}"
    tmp = out / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    FlashVideoPipeline(model, tokenizer).save_pretrained(tmp)
    if ema is not None:
        FlashVideoPipeline(ema, tokenizer).save_pretrained(tmp / "ema")
    opt_state = opt.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, s in opt_state["state"].items() for k, v in s.items()}
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "train": tc.__dict__}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = out / ".latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, out / "latest")
    for old in sorted(out.glob("step-*"))[:-2]:  # keep the last two
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out: Path, model: RetNet, opt, ema: RetNet | None = None) -> int:
    from safetensors.torch import load_file

    pointer = out / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {out} (no 'latest' file)")
    folder = out / pointer.read_text().strip()
    saved = load_model(folder)  # validates the config and shapes, safetensors only
    if saved.config != model.config:
        raise ValueError(f"--resume: {folder} was trained with a different model config:\n"
                         f"  checkpoint {saved.config}\n  requested  {model.config}")
    model.load_state_dict(saved.state_dict())
    if ema is not None:   # a run that had no average starts one from its weights
        ema.load_state_dict((load_model(folder / "ema") if (folder / "ema").is_dir() else saved).state_dict())
    tensors = load_file(folder / "optimizer.safetensors")
    state = opt.state_dict()
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state["state"].setdefault(int(i), {})[name] = value
    opt.load_state_dict(state)
    return json.loads((folder / "trainer_state.json").read_text())["step"]


def load_init(folder, model: RetNet) -> None:
    """Copy the weights of the pipeline folder `folder` into `model` (fine-tuning). The model fields of
    the two configs must agree, except that `model` may be deeper (`grow`) and may name an interpolation's
    n in its task token (`interp_count_token`: each new task token starts as INTERP); the folder's sampling
    defaults are not the model's and are ignored."""
    import dataclasses

    saved = load_model(Path(folder))  # validates the config and shapes, safetensors only
    same = {"sampling": {}, "n_layers": 1, "interp_count_token": False}
    if (dataclasses.replace(saved.config, **same) != dataclasses.replace(model.config, **same)
            or saved.config.n_layers > model.config.n_layers
            or saved.config.interp_count_token > model.config.interp_count_token):
        raise ValueError(f"--init: {folder} holds a model of another config (only more layers, or task tokens that "
                         f"name n, may be asked for):\n"
                         f"  folder    {saved.config}\n  requested {model.config}")
    grow(saved, model)


def grow(small: RetNet, big: RetNet) -> None:
    """Load `small` into the deeper or wider-vocabulary `big` so that `big` computes the same function.
    Depth (block expansion): the small model's blocks keep their order, and each new block is placed after an
    even share of them with its two residual projections (retention.out, glu.down) zeroed, so it adds nothing
    until it trains. 4 -> 6 layers: old, old, new, old, old, new. Task tokens that name n start as INTERP."""
    old, extra = small.config.n_layers, big.config.n_layers - small.config.n_layers
    places = [i + (i * extra) // old for i in range(old)]  # where the old blocks go
    state = {k: v for k, v in small.state_dict().items() if not k.startswith("blocks.")}
    embed, c = state["embed.weight"], big.config
    state["embed.weight"] = torch.cat([embed, embed[c.task_offset + INTERP].expand(c.vocab_size - len(embed), -1)])
    for i, j in enumerate(places):
        state.update({f"blocks.{j}.{k}": v for k, v in small.blocks[i].state_dict().items()})
    for j in sorted(set(range(big.config.n_layers)) - set(places)):
        block = big.blocks[j]
        state.update({f"blocks.{j}.{k}": v for k, v in block.state_dict().items()})
        state[f"blocks.{j}.retention.out.weight"] = torch.zeros_like(block.retention.out.weight)
        state[f"blocks.{j}.glu.down.weight"] = torch.zeros_like(block.glu.down.weight)
    big.load_state_dict(state)


def train(tc: TrainConfig, world: World | None = None) -> Path:
    """Train (or resume) per `tc`; returns the last checkpoint folder. Clips come from `world` if given
    (any `flashvideo.world.World`), else from `tc.data` through `make_world`."""
    from tqdm import tqdm

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, n_ranks = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    main = rank == 0

    tokenizer = load_tokenizer_folder(tc.tokenizer)
    source = world or make_world(tc.data, tokenizer.image_size, n_frames=tc.folder_frames,
                                 t_max=tc.folder_t_max or None)
    words = tokenizer.vocabulary
    missing = sorted(set(source.vocabulary()) - set(words))
    if missing:
        raise ValueError(f"the tokenizer in {tc.tokenizer} does not know the dataset's words {missing[:20]}")
    text_len = max(len(tokenizer.encode_text(p)) for p in source.prompts())
    config = FlashVideoConfig(**{"image_size": tokenizer.image_size, "grid": tokenizer.grid, "n_codes": tokenizer.n_codes,
                                 "n_text": tokenizer.n_text, "text_len": text_len, **tc.model})
    layout = Layout(config)
    torch.manual_seed(tc.seed)
    model = RetNet(config).to(device)
    opt = _optimizer(model, tc)
    out = Path(tc.out)
    if tc.init and not tc.resume:   # a resumed run has its own weights already
        load_init(tc.init, model)
    ema = None
    if tc.ema:
        if not 0 < tc.ema < 1:
            raise ValueError(f"--ema is the decay of the weight average, in (0, 1), e.g. 0.998; got {tc.ema}")
        ema = RetNet(config).to(device).requires_grad_(False)
        ema.load_state_dict(model.state_dict())
    start = load_checkpoint(out, model, opt, ema) if tc.resume else 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    log = open(out / "log.jsonl", "a") if main else None

    stop = {"now": False}

    def request_stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    step, t0, tokens_seen, data_digest = start, time.perf_counter(), 0, hashlib.sha256()
    bar = tqdm(total=tc.steps, initial=start, desc="train", disable=not main, dynamic_ncols=True)
    try:
        end = min(tc.steps, tc.stop_at) if tc.stop_at else tc.steps
        while step < end and not stop["now"]:
            rng = np.random.default_rng([tc.seed, rank, step])
            tokens, targets, task = make_batch(rng, source, tokenizer, layout, tc.batch_size, tc.p_interp, tc.p_given,
                                              tc.p_uncond, tc.batch_tokens, tc.p_stream, tc.p_shake, tc.p_first,
                                              tc.p_swap, tc.p_hard)
            data_digest.update(tokens.numpy().tobytes())
            tokens, targets = tokens.to(device), targets.to(device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tc)
            model.train()
            if tc.p_self:
                tokens = self_feed(rng, model, tokens, targets, tc.p_self)
            _, loss = ddp(tokens, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - tc.ema)
            step += 1
            tokens_seen += tokens.numel() * n_ranks
            if main:
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", task=task)
                if step % tc.log_every == 0 or step == tc.steps:
                    elapsed = time.perf_counter() - t0
                    log.write(json.dumps({"step": step, "loss": round(loss.item(), 4), "task": task,
                                          "lr": round(lr_at(step - 1, tc), 6), "grad_norm": round(float(grad_norm), 3),
                                          "tokens_per_s": round(tokens_seen / elapsed), "elapsed_s": round(elapsed, 1)}) + "\n")
                    log.flush()
                if step % tc.save_every == 0:
                    save_checkpoint(out, step, model, tokenizer, opt, tc, ema)
                if tc.sample_every and step % tc.sample_every == 0:
                    write_sample(model if ema is None else ema, tokenizer, source, out / "samples" / f"step-{step:07d}.gif", tc.sample_prompt)
    except KeyboardInterrupt:
        stop["now"] = True
    finally:
        bar.close()
    if main:
        final = save_checkpoint(out, step, model, tokenizer, opt, tc, ema)
        if step < tc.steps:
            print(f"stopped at step {step}; resume with --resume (checkpoint {final})")
        elif tc.export:
            FlashVideoPipeline((model if ema is None else ema).cpu().eval(), tokenizer).save_pretrained(tc.export)
            print(f"exported the trained pipeline to {tc.export}")
        log.close()
    if distributed:  # each rank records what it trained on and what it ended with
        from .aot import model_key

        dist.barrier()
        (out / f"rank-{rank}.json").write_text(json.dumps(
            {"step": step, "weights": model_key(model), "data_sha256": data_digest.hexdigest()}))
        dist.destroy_process_group()
    return out / f"step-{step:07d}"


def write_sample(model, tokenizer, source: World, path: Path, prompt: str = "") -> None:
    prompt = prompt or source.example_prompts(1)[0]
    model.eval()
    try:
        c = model.config
        FlashVideoPipeline(model, tokenizer)(prompt, key_frames=min(4, c.max_key_frames),
                                             interp_frames=min(1, c.max_interp_frames), seed=0).save(path, scale=2)
    except ValueError as e:  # e.g. a folder dataset whose words do not include the default prompt's
        print(f"sample skipped: {e}")
