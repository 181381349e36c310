"""Loading the four services by name, and the one-process mode (``fzt run-all``).

Services are found by convention (``services.<name>.service.definition``), so the platform
core never imports a service module directly and services never import each other.
"""
from __future__ import annotations

import importlib

from flask import Flask, render_template

from .config import SERVICES
from .migrations import upgrade
from .service import Service
from .web.app import STATIC, TEMPLATES, create_app, prefixed


def definition_of(name: str):
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.service").definition


def load_service(name: str, settings, clock=None) -> Service:
    return Service(definition_of(name), settings, clock=clock)


def prepare(service: Service) -> None:
    """Migrate the database and deploy the diagrams (both idempotent)."""
    upgrade(service.name, service.engine)
    service.deploy()


def landing_app() -> Flask:
    app = Flask("fzt_landing", template_folder=str(TEMPLATES), static_folder=str(STATIC))

    @app.get("/")
    def landing():
        return render_template("landing.html")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def one_process_wsgi(services: dict[str, Service]):
    return prefixed({name: create_app(svc) for name, svc in services.items()}, landing_app())
