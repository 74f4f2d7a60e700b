"""The worker's app, from the environment, for `faust -A stream_app.app worker`.

Nothing imports this module (`loyalty worker` builds its own): everything else receives its parts
from the composition root, stream_app/compose.py.
"""
from __future__ import annotations

import time

from stream_app import runtime
from stream_app.compose import build_app
from stream_app.core.program_versions import load_versions
from stream_app.settings import load_settings

runtime.prepare_process()
settings = load_settings()
versions = load_versions(settings.rules_path)
app = build_app(settings, versions.at(int(time.time() * 1000)), versions).app
