"""Integration fixtures: services on real PostgreSQL databases and a real RabbitMQ prefix."""
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_service(build_service, make_pg_database, rabbitmq):
    """Factory: a Service on a fresh PostgreSQL database, on this test's RabbitMQ prefix."""
    amqp_url, new_prefix = rabbitmq
    prefix = new_prefix()
    databases = {}

    def build(name, clock=None, database_url=None, **overrides):
        url = database_url or databases.setdefault(name, make_pg_database(name))
        return build_service(name, database_url=url, broker_url=amqp_url, prefix=prefix, clock=clock,
                             **overrides)

    build.prefix = prefix
    build.amqp_url = amqp_url
    return build
