"""HTTP endpoints (docs/http.md): member state, metrics, liveness and readiness."""
from __future__ import annotations

import time

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.app import app, program
from stream_app.views import member_view
from tables.members import members


@app.page("/members/{member_id}")
class MemberPage(View):
    @app.table_route(table=members, match_info="member_id")
    async def get(self, request: Request, member_id: str) -> Response:
        state = members.get(member_id.encode())
        if state is None:
            return self.json({"error": "unknown_member", "member_id": member_id}, status=404)
        return self.json(member_view(state, program, int(time.time() * 1000)))


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/ready")
class Ready(View):
    async def get(self, request: Request) -> Response:
        assigned = bool(app.consumer.assignment())
        recovered = app.tables.recovery.completed.is_set()
        ready = assigned and recovered and not app.rebalancing
        body = {"ready": ready, "partitions_assigned": assigned, "tables_recovered": recovered}
        return self.json(body, status=200 if ready else 503)
