"""LOYALTY_WORKER_NAME: the consumer's group.instance.id (Kafka static membership)."""
from __future__ import annotations

import re
import socket

import pytest

from stream_app.settings import load_settings


def test_the_default_is_this_host_and_a_hash_of_the_data_dir(tmp_path):
    one = load_settings({"LOYALTY_DATA_DIR": str(tmp_path / "a")}).worker_name
    assert one == load_settings({"LOYALTY_DATA_DIR": str(tmp_path / "a")}).worker_name  # stable across restarts
    assert one != load_settings({"LOYALTY_DATA_DIR": str(tmp_path / "b")}).worker_name  # two workers on one host
    assert re.fullmatch(r"[A-Za-z0-9._-]+-[0-9a-f]{8}", one)
    assert one.startswith(re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:20])


def test_a_relative_data_dir_names_the_same_directory_as_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (load_settings({"LOYALTY_DATA_DIR": "data"}).worker_name
            == load_settings({"LOYALTY_DATA_DIR": str(tmp_path / "data")}).worker_name)


def test_a_set_name_is_used_as_is_and_a_dash_means_dynamic_membership():
    assert load_settings({"LOYALTY_WORKER_NAME": "loyalty-0"}).worker_name == "loyalty-0"
    assert load_settings({"LOYALTY_WORKER_NAME": "-"}).worker_name is None


@pytest.mark.parametrize("name", ["two words", "a/b", "x" * 250, "é"])
def test_a_name_kafka_would_refuse_is_refused_at_start(name):
    with pytest.raises(ValueError, match="LOYALTY_WORKER_NAME"):
        load_settings({"LOYALTY_WORKER_NAME": name})
