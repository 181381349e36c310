"""Alembic environment shared by the four services.

Each service's database gets the common tables (branch "common", versions in
services/common/migrations/versions) and its own (branch "<service>", versions in
services/<service>/migrations). ``fzt db upgrade`` passes the service name and URL.
"""
import importlib
import importlib.util

from alembic import context

from services.common.db import Base, tables_for
import services.common.models  # noqa: F401  (registers the common tables)

config = context.config
service = config.attributes["service"]
if importlib.util.find_spec(f"services.{service}.models"):
    importlib.import_module(f"services.{service}.models")  # registers the service's tables
wanted = {t.name for t in tables_for(service)}


def include_object(obj, name, type_, reflected, compare_to):
    if type_ == "table":
        return name in wanted
    return True


def run_migrations_online():
    connectable = config.attributes["engine"]
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          include_object=include_object, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
