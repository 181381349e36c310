"""``fzt db upgrade``: bring a service's database to the newest schema with Alembic."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


def alembic_config(service: str, engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("version_locations", " ".join([
        str(HERE / "migrations" / "versions"), str(HERE.parent / service / "migrations")]))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["service"] = service
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(service: str, engine) -> None:
    command.upgrade(alembic_config(service, engine), "heads")
