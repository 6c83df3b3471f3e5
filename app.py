"""FlashVideo demo (Gradio). Placeholder until the app lands: it starts, and says so."""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

with gr.Blocks(title="FlashVideo") as demo:
    gr.Markdown("# FlashVideo\nThe interactive demo is not built yet. Meanwhile: "
                "`python -m flashvideo generate \"a red circle moves right\" --out out.gif`.")

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
