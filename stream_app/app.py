"""The worker's app, from the environment, for `faust -A stream_app.app worker`.

Nothing imports this module (`loyalty worker` builds its own): everything else receives its parts
from the composition root, stream_app/compose.py.
"""
from __future__ import annotations

from stream_app import runtime
from stream_app.compose import build_app
from stream_app.core.program import load_program
from stream_app.settings import load_settings

runtime.prepare_process()
settings = load_settings()
app = build_app(settings, load_program(settings.rules_path)).app
