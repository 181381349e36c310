"""``fzt``: the platform's command line.

    fzt run-all                 all four services + workers in one process (embedded defaults)
    fzt serve intake            one service's web app (mounted at /intake)
    fzt worker intake           one service's bus consumer, outbox relay and timer sweep
    fzt db upgrade [SERVICE]    migrate databases
    fzt bpmn check|deploy [SERVICE]
    fzt demo-data               demo staff accounts
    fzt token SERVICE USER      bearer token for the JSON API
    fzt clock show|advance 1d|reset   move the platform clock (refused in production)
    fzt user add USER --role …  staff accounts, in all four services
    fzt user unlock USER        clear a login lockout (5 wrong passwords), in all four services
    fzt dead-letters list|show|replay|discard SERVICE   messages that could not be applied
    fzt hotline-gateway         12345 hotline work orders in, case status back (docs/hotline-12345.md)
    fzt privacy anonymise [SERVICE] [--dry-run]   anonymise archived cases' personal data

Configuration comes from FZT_* environment variables (see services/common/config.py).
"""
from __future__ import annotations

import re
import signal
import sys
import threading
from datetime import timedelta

import click

from . import config as config_module
from .bus.deadletters import dead_letters_cli
from .config import DEFAULT_PORTS, SERVICES
from .demo import DEMO_PASSWORD, demo_accounts, load_demo_accounts, save_staff
from .reference import DEPARTMENTS, district_code
from .platform import load_service, one_process_wsgi, prepare
from .web.app import create_app, prefixed
from .passwords import password_problem
from .web.auth import ROLE_NAMES
from .web.roles import scope_problem
from .web.tokens import expires_at, make_token
from .workflow.specs import DiagramError

SERVICE_ARG = click.argument("service", type=click.Choice(SERVICES))
OPTIONAL_SERVICES = click.argument("services", nargs=-1, type=click.Choice(SERVICES))


def _settings():
    return config_module.from_env()


def _logging(service: str | None = None):
    """Text lines in development, one JSON object per line in production (FZT_LOG_FORMAT);
    each line names the service and, while one is being worked on, the case number."""
    from .observability import configure_logging
    configure_logging(json_format=_settings().log_json, service=service)


@click.group()
def main():
    """阜政通 platform command line."""


@main.group()
def db():
    """Database migrations."""


@db.command("upgrade")
@OPTIONAL_SERVICES
def db_upgrade(services):
    settings = _settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    from .migrations import upgrade
    for name in services or SERVICES:
        upgrade(name, load_service(name, settings).engine)
        click.echo(f"{name}: database at newest schema")


@main.group()
def bpmn():
    """Diagrams: check and deploy."""


@bpmn.command("check")
@OPTIONAL_SERVICES
def bpmn_check(services):
    """Validate diagrams without deploying (exit 1 on any problem)."""
    settings = _settings()
    failed = False
    for name in services or SERVICES:
        service = load_service(name, settings)
        if not service.has_diagram:
            click.echo(f"{name}: no diagram")
            continue
        try:
            process = service.specs.check(service.definition.service_tasks.names(),
                                          set(service.definition.forms))
            click.echo(f"{name}: ok ({process.hash[:12]})")
        except DiagramError as err:
            failed = True
            click.echo(f"{name}: {err}", err=True)
    sys.exit(1 if failed else 0)


@bpmn.command("deploy")
@OPTIONAL_SERVICES
def bpmn_deploy(services):
    """Validate and deploy; running cases stay on their version, new cases take this one."""
    settings = _settings()
    failed = False
    for name in services or SERVICES:
        service = load_service(name, settings)
        try:
            spec_hash, new = service.deploy()
        except DiagramError as err:
            failed = True
            click.echo(f"{name}: refused, nothing deployed.\n{err}", err=True)
            continue
        if spec_hash:
            click.echo(f"{name}: {'deployed' if new else 'already deployed'} {spec_hash[:12]}")
    sys.exit(1 if failed else 0)


@main.command("demo-data")
def demo_data():
    """Create demo staff accounts in every service (refused in production)."""
    settings = _settings()
    if settings.production:
        raise click.ClickException("生产环境不加载演示账号；请用 `fzt user add` 创建工作人员账号")
    for name in SERVICES:
        load_demo_accounts(load_service(name, settings))
    _print_accounts()


@main.group()
def user():
    """Staff accounts (kept in every service's database)."""


@user.command("add")
@click.argument("username")
@click.option("--name", "display_name", required=True, help="显示名，如 海州区分拨员")
@click.option("--role", required=True, type=click.Choice(sorted(ROLE_NAMES)))
@click.option("--district", default=None, help="县区代码，如 210902（分拨员、网格员、调解员、中心接待员、领导）")
@click.option("--department", default=None, help="办理人所属部门代码，如 zhujian")
@click.password_option(help="prompted if not given")
def user_add(username, display_name, role, district, department, password):
    """Create or update a staff account in all four services."""
    if district and district_code(district) is None:
        raise click.BadParameter(f"未知的县区 {district}", param_hint="--district")
    if department and department not in DEPARTMENTS:
        raise click.BadParameter(f"未知的部门 {department}", param_hint="--department")
    problem = scope_problem(role, district_code(district) if district else None, department)
    if problem:
        raise click.BadParameter(problem, param_hint="--role")
    problem = password_problem(password, username)
    if problem:
        raise click.BadParameter(problem, param_hint="--password")
    settings = _settings()
    for name in SERVICES:
        save_staff(load_service(name, settings), username, display_name, role,
                   district_code(district) if district else None, department, password)
    click.echo(f"{username}: saved in {', '.join(SERVICES)}")


@user.command("unlock")
@click.argument("username")
def user_unlock(username):
    """Clear USERNAME's failed logins and login lock in all four services."""
    from .web.auth import unlock
    settings = _settings()
    found = [name for name in SERVICES if unlock(load_service(name, settings), username)]
    if not found:
        raise click.ClickException(f"no user {username!r} in any service")
    click.echo(f"{username}: unlocked in {', '.join(found)}")


def _print_accounts():
    click.echo(f"演示账号（密码均为 {DEMO_PASSWORD}）:")
    for username, display, _role, _district, _department in demo_accounts():
        click.echo(f"  {username:<22} {display}")


@main.command()
@SERVICE_ARG
@click.argument("username")
def token(service, username):
    """Print a bearer token for USERNAME (the user must exist in SERVICE); its expiry goes to
    stderr. It stops working after FZT_TOKEN_MAX_AGE_DAYS, or when the account's sessions end
    (logout everywhere, a password change or reset, a lock)."""
    settings = _settings()
    from .web.auth import find_staff
    app = create_app(load_service(service, settings))
    with app.app_context():
        staff = find_staff(username)
        if staff is None:
            raise click.ClickException(f"no active user {username!r} in {service}")
    max_age = settings.token_max_age_days * 86400
    click.echo(make_token(settings.secret_key, username, staff.session_version))
    click.echo(f"expires {expires_at(max_age).isoformat()} (FZT_TOKEN_MAX_AGE_DAYS={settings.token_max_age_days}); "
               f"revoked earlier by logout-all, a password change or reset, or a lock", err=True)


@main.group()
def clock():
    """The platform clock (demos and tests; refused in production)."""


_DURATION = re.compile(r"^(\d+)([dhm])$")


@clock.command("advance")
@click.argument("duration")
def clock_advance(duration):
    """Move the clock forward by DURATION, e.g. 1d, 3h, 30m."""
    match = _DURATION.match(duration)
    if not match:
        raise click.BadParameter("use e.g. 1d, 3h or 30m")
    seconds = int(match.group(1)) * {"d": 86400, "h": 3600, "m": 60}[match.group(2)]
    _shift_clock(lambda current: current + seconds)


@clock.command("reset")
def clock_reset():
    _shift_clock(lambda current: 0)


@clock.command("show")
def clock_show():
    service = load_service("intake", _settings())
    click.echo(f"platform time {service.clock.now().isoformat()}")


def _shift_clock(change):
    settings = _settings()
    if settings.production:
        raise click.ClickException("生产环境不允许调整平台时钟 (clock control is refused in production)")
    for name in SERVICES:
        service = load_service(name, settings)
        current = int(service._read_clock_offset().total_seconds())
        service.set_clock_offset(change(current))
    click.echo(f"platform clock offset now {timedelta(seconds=change(current))}")


@main.command()
@SERVICE_ARG
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=None)
def serve(service, host, port):
    """Serve one service's web app under /<service> until SIGTERM or Ctrl-C."""
    _logging(service)
    from waitress.server import create_server
    svc = load_service(service, _settings())
    server = create_server(prefixed({service: create_app(svc)}), host=host,
                           port=port or DEFAULT_PORTS[service], threads=8, ident="fzt")
    threading.Thread(target=server.run, daemon=True).start()
    click.echo(f"{service} web serving on http://{host}:{server.effective_port}/{service}/")
    _wait_for_signal()
    click.echo(f"{service} web stopping (requests in progress finish first, up to 10 s)")
    # Running requests finish and answer while the loop still runs; queued ones are dropped
    # unanswered, before they touched anything (each request commits in one transaction).
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=10)
    server.close()
    click.echo(f"{service} web stopped")


@main.command()
@SERVICE_ARG
@click.option("--metrics-port", type=int, default=None,
              help="serve /healthz, /readyz and /metrics on this port (default: off)")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="address for --metrics-port (0.0.0.0 to be scraped from elsewhere)")
def worker(service, metrics_port, metrics_host):
    """Run one service's bus consumer, outbox relay and timer sweep until stopped."""
    _logging(service)
    from .worker import Worker
    running = Worker(load_service(service, _settings())).start()
    if metrics_port is not None:
        running.serve_http(metrics_host, metrics_port)
        click.echo(f"{service} worker metrics at http://{metrics_host}:{metrics_port}/metrics")
    click.echo(f"{service} worker running")
    _wait_for_signal()
    click.echo(f"{service} worker stopping (in-flight messages finish first)")
    running.stop()
    click.echo(f"{service} worker stopped")


@main.command("run-all")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=8000)
@click.option("--demo/--no-demo", default=True, help="load demo accounts")
def run_all(host, port, demo):
    """Everything in one process: migrate, deploy, demo accounts, four apps and workers."""
    _logging()
    from waitress.server import create_server
    from .worker import Worker
    settings = _settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    services = {name: load_service(name, settings) for name in SERVICES}
    for service in services.values():
        prepare(service)
        if demo:
            load_demo_accounts(service)
    server = create_server(one_process_wsgi(services), host=host, port=port, threads=8, ident="fzt")
    workers = [Worker(s).start() for s in services.values()]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if demo:
        _print_accounts()
    click.echo(f"阜政通 running at http://{host}:{port}/ (Ctrl-C stops)")
    _wait_for_signal()
    click.echo("stopping …")
    server.close()
    for running in workers:
        running.stop()


@main.command("hotline-gateway")
def hotline_gateway():
    """Take 12345 hotline work orders into intake and report case status back, until stopped
    (FZT_HOTLINE_URL, FZT_HOTLINE_EXCHANGE; docs/hotline-12345.md)."""
    _logging("intake")
    from services.intake.hotline import HotlineError, HotlineGateway
    try:
        gateway = HotlineGateway(load_service("intake", _settings()))
    except HotlineError as err:
        raise click.ClickException(str(err)) from None
    gateway.start()
    click.echo(f"hotline gateway: {gateway.queue} ← {gateway.exchange} order.created, "
               f"status → {gateway.exchange} order.status")
    _wait_for_signal()
    click.echo("hotline gateway stopping (the order in hand finishes first)")
    gateway.stop()
    click.echo("hotline gateway stopped")


def _wait_for_signal():
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(0.5)


@main.group()
def privacy():
    """Personal data: anonymise archived cases (docs/privacy.md)."""


@privacy.command("anonymise")
@OPTIONAL_SERVICES
@click.option("--dry-run", is_flag=True, help="list what would be anonymised; change nothing")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="retention period in days (default FZT_RETENTION_DAYS)")
def privacy_anonymise(services, dry_run, days):
    """Anonymise the personal data of cases archived longer than the retention period."""
    from .retention import anonymise
    settings = _settings()
    days = settings.retention_days if days is None else days
    if days == 0:
        raise click.ClickException("FZT_RETENTION_DAYS=0 关闭了匿名化；如需立即执行请用 --days 指定天数")
    for name in services or SERVICES:
        done = anonymise(load_service(name, settings), dry_run=dry_run, days=days)
        verb = "would anonymise" if dry_run else "anonymised"
        click.echo(f"{name}: {verb} {len(done)} case(s) archived more than {days} days")
        for result in done:
            click.echo(f"  {result.case_no}  {', '.join(result.fields)}  ({', '.join(result.records)})")


main.add_command(dead_letters_cli)


if __name__ == "__main__":
    main()
