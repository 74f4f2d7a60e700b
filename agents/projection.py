"""The Redis projection's background task (docs/redis.md); registered only when LOYALTY_REDIS_URL is set.

The processing agent records each change with `projection.member_changed(key, state)`; this
task writes them to Redis. After every rebalance (worker start included) it projects every
member of the partitions this worker now owns again, so Redis converges after restarts, moves
and Redis data loss. It never writes while a rebalance or table recovery is under way.
"""
from __future__ import annotations

import faust

from stream_app.parts import Parts
from tables.redis_projection import PENDING


def register(app: faust.App, parts: Parts) -> None:
    projection, members = parts.projection, parts.members
    PENDING.set_function(lambda: projection.pending)
    if not projection.enabled:
        return

    def paused() -> bool:
        return app.rebalancing or not app.tables.recovery.completed.is_set()

    projection.attach(keys=members.keys, lookup=members.read, paused=paused)

    @app.on_rebalance_complete.connect
    async def _resync_after_rebalance(sender, **kwargs) -> None:
        projection.request_resync()

    @app.on_before_shutdown.connect
    async def _flush_at_shutdown(sender, **kwargs) -> None:
        await projection.close()

    async def project_to_redis() -> None:
        await projection.run()

    app.task(project_to_redis)
