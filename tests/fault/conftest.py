"""Fault tests: the eight processes of the four-process cluster, killed -9 under load.

The ``fault`` marker (pyproject.toml): ``-m fault`` runs only these, ``-m "not fault"``
skips them. ``fault_cluster`` is a fresh FourProcessCluster per test on its own PostgreSQL
databases and RabbitMQ prefix (tests/conftest.py removes both afterwards); parametrized
indirectly, its parameter is extra environment for the eight processes (e.g. FZT_PREFETCH).
"""
from __future__ import annotations

import pytest

from services.common.config import SERVICES
from tests.support.cluster import FourProcessCluster


@pytest.fixture
def fault_cluster(request, tmp_path, make_pg_database, rabbitmq):
    broker_url, new_prefix = rabbitmq
    cluster = FourProcessCluster(tmp_path, {s: make_pg_database(f"fault_{s}") for s in SERVICES},
                                 broker_url, new_prefix(), env=getattr(request, "param", None))
    with cluster:
        yield cluster
    cluster.dispose()
