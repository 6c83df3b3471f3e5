"""The Hugging Face Hub: a model card for a checkpoint folder, and pushing the folder with it.

    pipe.save_pretrained("runs/export", push_to_hub=True, repo_id="org/flashvideo-shapes")
    push_to_hub("runs/export", "org/flashvideo-shapes", eval_path="runs/eval/eval.md")   # a folder already written

The card (README.md) holds the config, the words the model knows, how to load it, and the eval table:
`eval_path=` (an eval.md, or the eval.json `python -m flashvideo eval` writes beside it), else an eval.md
or eval.json found in the folder. Only the checkpoint files and the card are uploaded (never an
optimizer state or a pickle). Loading goes the other way: `FlashVideoPipeline.from_pretrained("org/name")`
calls `huggingface_hub.snapshot_download` for `HUB_FILES`, so it also works offline from the cache
(HF_HUB_OFFLINE=1).
"""
from __future__ import annotations

import json
from pathlib import Path

CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer.safetensors")
HUB_FILES = CHECKPOINT_FILES + ("README.md",)


def eval_table(folder, eval_path=None) -> str | None:
    """The eval table as markdown: from `eval_path` (a path to eval.md or eval.json), else from the folder's
    eval.md or eval.json; None when there is none."""
    folder = Path(folder)
    candidates = [Path(eval_path)] if eval_path is not None else [folder / "eval.md", folder / "eval.json"]
    for path in candidates:
        if path.suffix == ".json" and path.with_suffix(".md").is_file():
            path = path.with_suffix(".md")                  # `eval` writes both; the table is the .md
        if not path.is_file():
            if eval_path is not None:
                raise FileNotFoundError(f"eval table {path} does not exist")
            continue
        if path.suffix == ".md":
            return path.read_text(encoding="utf-8").strip()
        from .evaluate import to_markdown

        try:
            return to_markdown(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is not an eval.json written by `python -m flashvideo eval` ({e!r})") from None
    return None


def model_card(folder, repo_id: str | None = None, eval_path=None) -> str:
    """README.md text for the checkpoint in `folder` (see the module docstring)."""
    from .validation import EXAMPLE_PROMPT

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    words = tokenizer.get("vocab") or []
    example = EXAMPLE_PROMPT if set(EXAMPLE_PROMPT.split()[1:]) <= set(words) or not words else " ".join(words[:3])
    name = repo_id or folder.name
    table = eval_table(folder, eval_path)
    sizes = {f: (folder / f).stat().st_size for f in CHECKPOINT_FILES if (folder / f).is_file()}
    lines = [
        "---", "library_name: flashvideo", "pipeline_tag: text-to-video", "license: mit",
        "tags:", "- text-to-video", "- retnet", "- flashvideo", "---", "",
        f"# {name}", "",
        "A FlashVideo text-to-video model: a RetNet decodes VQ image tokens key frame by key frame "
        "(serial-number tokens), then fills in the frames between them, skipping the tokens it can inherit.",
        "", "## Use", "", "```python", "from flashvideo import FlashVideoPipeline", "",
        f'pipe = FlashVideoPipeline.from_pretrained("{name}")',
        f'video = pipe("{example}", key_frames=4, interp_frames=3, inherit_ratio=0.2, seed=0)',
        'video.save("out.gif")', "```", "",
        f"Command line: `flashvideo generate \"{example}\" --model {name} --out out.gif`", "",
        f"Backend `{tokenizer.get('backend', 'vq')}` tokenizer; the model knows these words: "
        + (", ".join(words) if words else "(the tokenizer's own vocabulary)") + ".", "",
        "## Config", "", "| field | value |", "|---|---|",
        *[f"| {k} | {json.dumps(v)} |" for k, v in config.items()], "",
        "## Evaluation", "",
        table or "No evaluation table was given (`python -m flashvideo eval` writes one).", "",
        "## Files", "", *[f"- `{f}`: {n:,} bytes" for f, n in sizes.items()], "",
    ]
    return "\n".join(lines)


def write_model_card(folder, repo_id: str | None = None, eval_path=None) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(model_card(folder, repo_id, eval_path), encoding="utf-8")
    return path


def push_to_hub(folder, repo_id: str, *, eval_path=None, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload FlashVideo checkpoint", api=None) -> str:
    """Write the model card into `folder`, create the repo if needed and upload `HUB_FILES`; returns the
    commit URL. `api`: an `huggingface_hub.HfApi` (default: HfApi(token=token))."""
    folder = Path(folder)
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a checkpoint folder: {missing} missing (write it with save_pretrained)")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
    write_model_card(folder, repo_id, eval_path)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=list(HUB_FILES),
                               commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))
