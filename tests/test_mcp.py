"""The app's MCP server (issue 11 item 4): `launch(mcp_server=True)` serves /generate as an MCP tool whose
description names the vocabulary and every setting's range. An MCP client (the `mcp` package, which
gradio[mcp] installs) lists the tools and calls one, over streamable HTTP, against the app in process."""
import asyncio
import os

import pytest

from flashvideo import demo as lib
from test_app import free_port, load_app

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword|gr.State input):Warning")
mcp = pytest.importorskip("mcp", reason="the MCP server needs gradio[mcp] (requirements.txt)")


@pytest.fixture(scope="module")
def mcp_url(tiny_pipe, tmp_path_factory):
    checkpoint = tiny_pipe.save_pretrained(tmp_path_factory.mktemp("mcp") / "tiny")
    app = load_app()
    demo = app.build_demo(checkpoint)
    _, url, _ = app.launch(demo, prevent_thread_lock=True, server_port=free_port(), quiet=True, mcp_server=True)
    yield url.rstrip("/") + "/gradio_api/mcp/"
    demo.close()


async def _session(url, work):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def test_mcp_lists_generate_and_calls_it(mcp_url, tiny_pipe):
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))

    async def work(session):
        tools = (await session.list_tools()).tools
        result = await session.call_tool("generate", {
            "prompt": "a red circle moves right", "key_frames": 2, "interp_frames": 1,
            "inherit_ratio": 0.5, "seed": 3, "randomize": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "guidance_scale": 1.0, "negative_prompt": "", "length": "K key frames"})
        refused = await session.call_tool("generate", {
            "prompt": "a dog moves right", "key_frames": 2, "interp_frames": 1,
            "inherit_ratio": 0.5, "seed": 3, "randomize": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "guidance_scale": 1.0, "negative_prompt": "", "length": "K key frames"})
        return tools, result, refused

    tools, result, refused = asyncio.run(_session(mcp_url, work))
    assert [t.name for t in tools] == ["generate"]          # the UI's other endpoints are not tools
    description = tools[0].description
    for word in tiny_pipe.tokenizer.vocabulary:             # the vocabulary and the ranges are named
        assert word in description
    for text in (f"key_frames: integer 2..{tiny_pipe.config.max_key_frames}",
                 f"interp_frames: integer 0..{tiny_pipe.config.max_interp_frames}", "inherit_ratio: 0..1",
                 f"top_k: 0 (off)..{tiny_pipe.config.n_codes}", f"guidance_scale: 0..{lib.APP_MAX_GUIDANCE:g}"):
        assert text in description
    assert set(tools[0].inputSchema["properties"]) >= {"prompt", "key_frames", "guidance_scale", "negative_prompt"}
    assert not result.isError, result.content
    texts = " ".join(getattr(c, "text", "") or str(c) for c in result.content)
    assert ".mp4" in texts and "time to first frame" in texts and "3 frames" in texts
    assert "base64" not in texts and len(texts) < 5000     # text for a model to read: caption and stats
    assert refused.isError and "unknown words ['dog']" in " ".join(getattr(c, "text", "") for c in refused.content)
