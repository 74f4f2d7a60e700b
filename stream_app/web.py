"""HTTP endpoints (docs/http.md): member state, metrics, liveness and readiness."""
from __future__ import annotations

import hmac
import time
import uuid
from datetime import UTC, datetime

import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.app import app, broker, failstop, program, settings
from stream_app.core.read_model import member_view
from tables.members import members
from topics.validation import Rejection, decode_event

ADMIN_ACTIONS = {"freeze": "member_frozen", "unfreeze": "member_unfrozen", "adjust": "points_adjusted"}


@app.page("/members/{member_id}")
class MemberPage(View):
    @app.table_route(table=members, match_info="member_id")
    async def get(self, request: Request, member_id: str) -> Response:
        state = members.read(member_id.encode())
        if state is None:
            return self.json({"error": "unknown_member", "member_id": member_id}, status=404)
        return self.json(member_view(state, program, int(time.time() * 1000)))


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def _failure() -> dict | None:
    failure = failstop.failure
    return None if failure is None else {"reason": failure.reason, "detail": failure.detail,
                                         "exit_code": failure.exit_code}


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        if failstop.failure is not None:  # stopped for good: it exits by itself shortly
            return self.json({"status": "failed", "failure": _failure()}, status=503)
        return self.json({"status": "ok"})


@app.page("/ready")
class Ready(View):
    async def get(self, request: Request) -> Response:
        assigned = bool(app.consumer.assignment())
        recovered = app.tables.recovery.completed.is_set()
        connected = broker.connected()
        ready = assigned and recovered and not app.rebalancing and connected and failstop.failure is None
        body = {"ready": ready, "partitions_assigned": assigned, "tables_recovered": recovered,
                "broker_connected": connected, "failure": _failure()}
        return self.json(body, status=200 if ready else 503)


@app.page("/admin/members/{member_id}/{action}")
class AdminMember(View):
    """Operator commands, published to the admin topic and applied in the member's partition."""

    async def post(self, request: Request, member_id: str, action: str) -> Response:
        if not settings.admin_token:
            return self.json({"error": "admin_disabled"}, status=404)
        if not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {settings.admin_token}"):
            return self.json({"error": "unauthorized"}, status=401)
        if action not in ADMIN_ACTIONS:
            return self.json({"error": "unknown_action", "actions": sorted(ADMIN_ACTIONS)}, status=404)
        try:
            body = await request.json()
        except ValueError:
            return self.json({"error": "invalid_json"}, status=400)
        if not isinstance(body, dict):
            return self.json({"error": "not_an_object"}, status=400)
        # A client retrying the same command sends the same request_id: the command is applied once.
        request_id = body.get("request_id")
        if request_id is not None and (not isinstance(request_id, str) or not 1 <= len(request_id) <= 100):
            return self.json({"error": "schema_violation", "detail": "request_id: a string of 1-100 chars"},
                             status=400)
        event = {"event_id": f"admin-{request_id or uuid.uuid4()}", "member_id": member_id,
                 "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                 "type": ADMIN_ACTIONS[action], "operator_id": body.get("operator_id"),
                 "reason": body.get("reason")}
        if action == "adjust":
            event["points"] = body.get("points")
        value = orjson.dumps(event)
        checked = decode_event("admin", member_id.encode(), value)
        if isinstance(checked, Rejection):
            return self.json({"error": checked.code, "detail": checked.detail}, status=400)
        from topics.channels import produced  # here: topics.channels imports the app, which imports this module

        await produced["admin"].send(key=member_id.encode(), value=value)
        return self.json({"accepted": True, "event_id": event["event_id"]}, status=202)
