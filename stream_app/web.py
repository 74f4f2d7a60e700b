"""HTTP endpoints (docs/http.md): member state, metrics, liveness, readiness and operator commands.

Only these are served: Faust's built-in pages (tables, router map, stats) are dropped when the
app is built (stream_app/faust_compat.py). Tokens are compared in constant time.
"""
from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.core.read_model import member_view
from stream_app.core.reward_view import catalogue_view, member_rewards_view
from stream_app.parts import Parts
from topics.validation import Rejection, decode_event

ADMIN_ACTIONS = {"freeze": "member_frozen", "unfreeze": "member_unfrozen", "adjust": "points_adjusted"}


def bearer_ok(request: Request, token: str) -> bool:
    """The request carries `Authorization: Bearer <token>` (constant-time comparison)."""
    return hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode())


def register(app: faust.App, parts: Parts) -> None:
    settings, program, members = parts.settings, parts.program, parts.members
    failstop, broker = parts.failstop, parts.broker

    def failure() -> dict | None:
        failed = failstop.failure
        return None if failed is None else {"reason": failed.reason, "detail": failed.detail,
                                            "exit_code": failed.exit_code}
    admin_topic = parts.topics.produced["admin"]

    def unauthorized(view: View, request: Request) -> Response | None:
        """401 when reads need a token the request lacks; checked before routing, so an unauthorized
        request is never forwarded to another worker."""
        if settings.read_token and not bearer_ok(request, settings.read_token):
            return view.json({"error": "unauthorized"}, status=401)
        return None

    def of_member(view: View, member_id: str, render: Callable[[dict, int], dict]) -> Response:
        """The member's state as `render` shows it now; 404 for a member this worker does not hold."""
        state = members.read(member_id.encode())
        if state is None:
            return view.json({"error": "unknown_member", "member_id": member_id}, status=404)
        return view.json(render(state, int(time.time() * 1000)))

    @app.page("/members/{member_id}")
    class MemberPage(View):
        async def get(self, request: Request, member_id: str) -> Response:
            denied = unauthorized(self, request)
            return denied if denied is not None else await self._routed(request, member_id=member_id)

        @app.table_route(table=members, match_info="member_id")
        async def _routed(self, request: Request, member_id: str) -> Response:
            return of_member(self, member_id, lambda state, now: member_view(state, program, now))

    def stocks() -> dict[str, dict | None]:
        """The reward-agent state of each catalogue reward that this worker's store holds."""
        return {r.code: parts.rewards.read(r.code.encode()) for r in program.rewards.catalogue}

    @app.page("/rewards")
    class Rewards(View):
        async def get(self, request: Request) -> Response:
            denied = unauthorized(self, request)
            return denied if denied is not None else self.json(catalogue_view(program, stocks()))

    @app.page("/members/{member_id}/rewards")
    class MemberRewards(View):
        async def get(self, request: Request, member_id: str) -> Response:
            denied = unauthorized(self, request)
            return denied if denied is not None else await self._routed(request, member_id=member_id)

        @app.table_route(table=members, match_info="member_id")
        async def _routed(self, request: Request, member_id: str) -> Response:
            return of_member(self, member_id,
                             lambda state, now: member_rewards_view(state, program, now, stocks()))

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            if failstop.failure is not None:  # stopped for good: it exits by itself shortly
                return self.json({"status": "failed", "failure": failure()}, status=503)
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            assigned = bool(app.consumer.assignment())
            recovered = app.tables.recovery.completed.is_set()
            connected = broker.connected()
            ready = assigned and recovered and not app.rebalancing and connected and failstop.failure is None
            body = {"ready": ready, "partitions_assigned": assigned, "tables_recovered": recovered,
                    "broker_connected": connected, "failure": failure()}
            return self.json(body, status=200 if ready else 503)

    @app.page("/admin/members/{member_id}/{action}")
    class AdminMember(View):
        """Operator commands, published to the admin topic and applied in the member's partition."""

        async def post(self, request: Request, member_id: str, action: str) -> Response:
            if not settings.admin_token:
                return self.json({"error": "admin_disabled"}, status=404)
            if not bearer_ok(request, settings.admin_token):
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
            checked = decode_event("admin", member_id.encode(), value, now_ms=int(time.time() * 1000))
            if isinstance(checked, Rejection):
                return self.json({"error": checked.code, "detail": checked.detail}, status=400)
            await admin_topic.send(key=member_id.encode(), value=value)
            return self.json({"accepted": True, "event_id": event["event_id"]}, status=202)
