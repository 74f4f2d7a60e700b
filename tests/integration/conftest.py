"""Fixtures for tests on the real local Kafka broker (started by `make up`)."""
from __future__ import annotations

import pytest

from tests.integration.harness import BOOTSTRAP, Deployment, broker_answers


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _broker() -> None:
    if not broker_answers():
        pytest.fail(f"no Kafka broker at {BOOTSTRAP}: run `make up` (make test does it for you)")


@pytest.fixture
def deployment(tmp_path, request):
    dep = Deployment(tmp_path, getattr(request, "param", None))
    yield dep
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for w in dep.workers:
            print(f"--- {w.log_path.name}\n{w.log_tail()}")
    dep.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
