"""The web port serves only the contract: no Faust built-in page, tokens where the contract asks for them."""
from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime

from faust.web import base as faust_web
from mode.utils.imports import symbol_by_name

from tests.integration.harness import event_message, produce, wait_for

READ, ADMIN = "read-secret", "admin-secret"  # noqa: S105 (test tokens)


def builtin_routes() -> list[str]:
    """Every route of every blueprint faust-streaming ships, with its parameters filled in."""
    routes = []
    for prefix, name in (*faust_web.DEFAULT_BLUEPRINTS, *faust_web.PRODUCTION_BLUEPRINTS,
                         *faust_web.DEBUG_BLUEPRINTS, *faust_web.OPTIONAL_BLUEPRINTS):
        blueprint = symbol_by_name(name)
        for route in blueprint.routes:
            path = (prefix + route.uri).replace("{name}", "members").replace("{key}", "m1")
            routes.append(path)
            routes.append(path.rstrip("/") or "/")
    return sorted(set(routes))


def status(port: int, path: str, token: str | None = None, method: str = "GET") -> int:
    body = b'{"operator_id": "op-1", "reason": "web surface test"}' if method == "POST" else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_only_the_contract_is_served_and_tokens_are_required(deployment):
    worker = deployment.worker(LOYALTY_READ_TOKEN=READ, LOYALTY_ADMIN_TOKEN=ADMIN).start()
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    produce([event_message(deployment.prefix, "shares", {
        "event_id": "s1", "member_id": "m1", "occurred_at": at, "type": "share", "share_id": "S1",
        "channel": "wechat", "target": "x"})])
    wait_for(lambda: status(worker.port, "/members/m1", READ) == 200, timeout=30)

    routes = builtin_routes()
    assert {"/", "/router", "/table/members/m1", "/assignment", "/graph", "/performance"} <= set(routes)
    served = {path: status(worker.port, path) for path in routes}
    assert {path: code for path, code in served.items() if code not in (401, 404)} == {}
    # ... with a token too: the built-in pages are gone, not merely guarded
    assert {p: c for p in routes if (c := status(worker.port, p, READ)) not in (401, 404)} == {}

    assert status(worker.port, "/members/m1") == 401
    assert status(worker.port, "/members/m1", "wrong") == 401
    assert status(worker.port, "/members/m1", READ) == 200
    assert status(worker.port, "/members/nobody", READ) == 404
    assert status(worker.port, "/admin/members/m1/freeze", READ, "POST") == 401
    assert status(worker.port, "/admin/members/m1/freeze", ADMIN, "POST") == 202
    assert (status(worker.port, "/health"), status(worker.port, "/ready"), status(worker.port, "/metrics")) == (
        200, 200, 200)


def test_the_web_server_listens_on_loopback_by_default(deployment):
    worker = deployment.worker().start()
    connections = open("/proc/net/tcp").read().splitlines()[1:]
    port_hex = f"{worker.port:04X}"
    listening = [line.split()[1] for line in connections if line.split()[1].endswith(":" + port_hex)
                 and line.split()[3] == "0A"]
    assert listening == ["0100007F:" + port_hex]  # 127.0.0.1, not 0.0.0.0
