"""The web demo, `talkingface app`: a thin Gradio layer over the recipes.

`jobs` checks uploads and runs the animate, speak, personalize and enhance recipes, each job
in its own folder (no Gradio there); `models` is the allow-list of checkpoints the page may
open; `server` builds the page, runs each job under a time limit and turns every error
into a one-line message on it. Nothing here is imported by `import talkingface`, so
Gradio stays an optional extra (`pip install -e ".[app]"`).
"""
