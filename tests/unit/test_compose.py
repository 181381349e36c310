"""The container setup (Dockerfile, docker-compose.yml, deploy/) checked against the code.

No Docker engine is needed (and none is called): the files are parsed and compared with the
CLI (click), the configuration (services/common/config.py) and the apps themselves, so that a
renamed command, port, setting or route fails here instead of in a deployment.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml
from sqlalchemy.engine import make_url
from werkzeug.test import Client

from services.common import config
from services.common.cli import main
from services.common.config import DEFAULT_PORTS, SERVICES
from services.common.uploads import request_limit

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
NGINX_CONF = REPO / "deploy" / "nginx.conf"
PG_INIT = REPO / "deploy" / "postgres-init.sql"
LANDING = REPO / "services" / "common" / "web" / "templates" / "landing.html"
STATIC = REPO / "services" / "common" / "web" / "static"
NGINX_HTML = "/usr/share/nginx/html"


# ---------------------------------------------------------------- helpers: compose

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def app_containers(services):
    """Containers running the fzt image (everything built from the Dockerfile)."""
    found = {name: svc for name, svc in services.items() if "build" in svc}
    assert found, "no container is built from the Dockerfile"
    return found


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's variable substitution, with every variable unset: ``${X:-d}`` gives d,
    a required ``${X:?msg}`` (or plain ``${X}``) gives ``<X>``; ``$$`` is a literal ``$``."""
    assert isinstance(value, str)
    escaped = value.replace("$$", "\0")
    bare = re.search(r"\$(?!\{)", _INTERPOLATION.sub("", escaped))
    assert bare is None, f"unescaped $ in {value!r}: compose would substitute it (write $$)"

    def substitute(match):
        name, op, arg = match.groups()
        if op in (":-", "-"):
            return arg
        if op in (":+", "+"):
            return ""
        return f"<{name}>"

    return _INTERPOLATION.sub(substitute, escaped).replace("\0", "$")


def environment(svc) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def command_words(svc) -> list[str]:
    command = svc["command"]
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def fzt_invocations(svc) -> list[list[str]]:
    """The ``fzt ...`` argument lists a container runs (``sh -c "a && b"`` gives two)."""
    words = command_words(svc)
    if words[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in words[2].split("&&")]
    return [words]


def resolve_cli(args: list[str]):
    """Follow ``fzt a b ...`` through click's groups and parse the rest as the command would
    (choices such as the service name, option types); returns (command path, params)."""
    assert args and args[0] == "fzt", f"not an fzt command: {args}"
    command, rest, path = main, list(args[1:]), []
    while isinstance(command, click.Group):
        assert rest, f"{args}: missing subcommand of {' '.join(['fzt', *path])}"
        name = rest.pop(0)
        assert name in command.commands, \
            f"{args}: no subcommand {name!r}; fzt {' '.join(path)} has {sorted(command.commands)}"
        command = command.commands[name]
        path.append(name)
    ctx = command.make_context(" ".join(["fzt", *path]), rest)  # raises on a bad argument
    return tuple(path), ctx.params


def depends_on(svc) -> dict:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        deps = {name: {"condition": "service_started"} for name in deps}
    return deps


def healthcheck_url(svc) -> str:
    test = svc["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(test)
    urls = re.findall(r"https?://[^'\"\s)]+", text)
    assert len(urls) == 1, f"expected one URL in healthcheck {text!r}"
    assert "urllib.request" in text and "urlopen(" in text, text
    return urls[0]


def config_keys() -> set[str]:
    """Every FZT_* key ``config.from_env`` reads, found by letting it read a recording mapping."""
    class Recording(dict):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def get(self, key, default=None):
            self.seen.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            self.seen.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            self.seen.add(key)
            return super().__contains__(key)

    recording = Recording()
    config.from_env(recording)
    assert recording.seen, "from_env read nothing"
    return recording.seen


# ---------------------------------------------------------------- helpers: Dockerfile

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for word in shlex.split(rest):
                assert "=" in word, f"use ENV KEY=VALUE, not {rest!r}"
                key, value = word.split("=", 1)
                env[key] = value
    return env


def dockerfile_copies() -> dict[str, str]:
    """COPY source -> destination (absolute; WORKDIR applied)."""
    copies, workdir = {}, "/"
    for keyword, rest in dockerfile_instructions():
        if keyword == "WORKDIR":
            workdir = rest
        elif keyword == "COPY":
            *sources, dest = [w for w in shlex.split(rest) if not w.startswith("--")]
            for source in sources:
                target = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
                copies[source.rstrip("/")] = target.rstrip("/") or "/"
    return copies


def container_env(svc) -> dict[str, str]:
    """What the process in an app container sees: the image's ENV, then compose's."""
    return {**dockerfile_env(), **environment(svc)}


# ---------------------------------------------------------------- helpers: nginx

def parse_nginx(text: str) -> list:
    """nginx.conf as nested [name, args, children] (children None for simple directives)."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{};]|[^\s{};"\']+',
                        re.sub(r"(?m)(^|\s)#.*$", r"\1", text))
    stack, current, words = [], [], []
    for token in tokens:
        if token == "{":
            block = [words[0], words[1:], []]
            current.append(block)
            stack.append(current)
            current, words = block[2], []
        elif token == "}":
            assert not words, f"directive without ; before }}: {words}"
            current = stack.pop()
        elif token == ";":
            current.append([words[0], words[1:], None])
            words = []
        else:
            words.append(token[1:-1] if token[0] in "\"'" else token)
    assert not stack and not words, "unbalanced nginx.conf"
    return current


def find(block: list, name: str) -> list:
    return [d for d in block if d[0] == name]


@pytest.fixture(scope="module")
def nginx():
    tree = parse_nginx(NGINX_CONF.read_text(encoding="utf-8"))
    (http,) = find(tree, "http")
    servers = find(http[2], "server")
    assert len(servers) == 1
    return {"http": http[2], "server": servers[0][2]}


def location(server: list, *args: str):
    matches = [d[2] for d in find(server, "location") if tuple(d[1]) == args]
    assert len(matches) == 1, f"expected one 'location {' '.join(args)}'"
    return matches[0]


def effective(nginx, block: list, name: str) -> list:
    """A directive as nginx applies it in a location: the innermost level that sets it wins."""
    for level in (block, nginx["server"], nginx["http"]):
        found = find(level, name)
        if found:
            return found
    return []


# ---------------------------------------------------------------- commands

def test_every_app_container_runs_a_real_fzt_command(app_containers):
    for name, svc in app_containers.items():
        for args in fzt_invocations(svc):
            path, params = resolve_cli(args)
            if "service" in params:
                assert params["service"] in SERVICES, name
            for service in params.get("services") or ():
                assert service in SERVICES, name


def test_resolve_cli_rejects_what_fzt_would_reject():
    with pytest.raises(AssertionError):
        resolve_cli(["fzt", "server", "intake"])
    with pytest.raises(click.BadParameter):
        resolve_cli(["fzt", "serve", "intakes"])
    with pytest.raises(click.NoSuchOption):
        resolve_cli(["fzt", "worker", "intake", "--port", "1"])


def test_every_service_has_one_web_and_one_worker_container(app_containers):
    roles = {}
    for name, svc in app_containers.items():
        for args in fzt_invocations(svc):
            path, params = resolve_cli(args)
            if path in (("serve",), ("worker",)):
                roles.setdefault((path[0], params["service"]), []).append(name)
    for service in SERVICES:
        assert roles.get(("serve", service)) == [f"{service}-web"], service
        assert roles.get(("worker", service)) == [f"{service}-worker"], service
    assert len(roles) == 2 * len(SERVICES)


def test_web_containers_listen_on_the_default_port_on_all_interfaces(app_containers):
    for service in SERVICES:
        (args,) = fzt_invocations(app_containers[f"{service}-web"])
        path, params = resolve_cli(args)
        assert params["host"] == "0.0.0.0", service
        assert params["port"] == DEFAULT_PORTS[service], service


def test_web_healthchecks_hit_the_service_healthz(app_containers, tmp_path):
    from services.common.platform import load_service
    from services.common.web.app import create_app, prefixed

    settings = config.from_env({}, var_dir=tmp_path, bpmn_dir=REPO / "bpmn")
    for service in SERVICES:
        url = urlsplit(healthcheck_url(app_containers[f"{service}-web"]))
        assert url.hostname == "127.0.0.1", service
        assert url.port == DEFAULT_PORTS[service], service
        assert url.path == f"/{service}/healthz", service
        # the path really answers 200 when the app is mounted the way `fzt serve` mounts it
        app = prefixed({service: create_app(load_service(service, settings))})
        response = Client(app).get(url.path)
        assert response.status_code == 200, (service, response.status_code)
        assert response.get_json()["service"] == service


def test_worker_healthchecks_hit_the_workers_own_endpoint(app_containers):
    from services.common.observability import worker_wsgi_app

    class RunningWorker:  # what the endpoint asks of a Worker for /healthz
        def __init__(self, name):
            self.service = type("Service", (), {"name": name})()

        def alive(self):
            return True

    for service in SERVICES:
        container = app_containers[f"{service}-worker"]
        (args,) = fzt_invocations(container)
        path, params = resolve_cli(args)
        url = urlsplit(healthcheck_url(container))
        assert url.hostname == "127.0.0.1", service
        assert url.port == params["metrics_port"], service
        assert params["metrics_host"] in ("0.0.0.0", "127.0.0.1"), service
        assert url.path == "/healthz", service
        response = Client(worker_wsgi_app(RunningWorker(service))).get(url.path)
        assert response.status_code == 200, (service, response.status_code)
        assert response.get_json()["service"] == service


def test_migrate_upgrades_then_deploys_and_runs_once(services):
    migrate = services["migrate"]
    paths = [resolve_cli(args)[0] for args in fzt_invocations(migrate)]
    assert paths == [("db", "upgrade"), ("bpmn", "deploy")]
    assert "&&" in command_words(migrate)[2]  # deploy only after a successful upgrade
    assert str(migrate.get("restart", "no")) == "no"


# ---------------------------------------------------------------- dependencies and data

def test_app_containers_wait_for_healthy_backends_and_the_migration(app_containers, services):
    for name in ("postgres", "rabbitmq"):
        assert "healthcheck" in services[name], name
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["rabbitmq"]["healthcheck"]["test"][1:3] == ["rabbitmq-diagnostics", "-q"]
    assert "ping" in services["rabbitmq"]["healthcheck"]["test"]
    for name, svc in app_containers.items():
        deps = depends_on(svc)
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["rabbitmq"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert deps["migrate"]["condition"] == "service_completed_successfully", name
            assert svc["restart"] == "unless-stopped", name
        for dep in deps:
            assert dep in services, f"{name} depends on unknown {dep}"


def test_data_lives_in_named_volumes(compose, services):
    mounts = {
        "postgres": "/var/lib/postgresql/data",
        "rabbitmq": "/var/lib/rabbitmq",
    }
    for name, target in mounts.items():
        volumes = [v for v in services[name]["volumes"] if v.split(":")[1] == target]
        assert len(volumes) == 1, name
        assert volumes[0].split(":")[0] in compose["volumes"], name
    # RabbitMQ keeps its data under the node name, which comes from the host name
    assert services["rabbitmq"].get("hostname")


def test_long_running_containers_come_back_after_a_crash_or_a_reboot(services):
    """Every container but the one-shot migration restarts by itself (docs/reliability.md);
    "unless-stopped" also after a host reboot, but not after `docker compose stop`."""
    for name, svc in services.items():
        expected = "no" if name == "migrate" else "unless-stopped"
        assert str(svc.get("restart", "no")) == expected, name
    for name in ("postgres", "rabbitmq"):
        assert services[name]["healthcheck"], name  # dependants wait for a healthy restart


def test_every_app_container_shares_one_blob_store(compose, app_containers):
    """Uploads are written by intake and dispatch and referenced in messages: every service
    must see the same store, on a named volume (docs/uploads.md)."""
    sources = set()
    for name, svc in app_containers.items():
        root = str(config.from_env(container_env(svc)).blob_root)
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes") or []}
        assert root in mounts, f"{name}: nothing mounted at its blob store {root}"
        assert mounts[root] in compose["volumes"], f"{name}: the blob store is not a named volume"
        sources.add(mounts[root])
    assert len(sources) == 1, f"services use different blob stores: {sorted(sources)}"
    # the image creates the directory for its non-root user, so the new volume is writable
    runs = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "RUN")
    assert f"mkdir -p {root}" in runs and "chown -R fzt:fzt" in runs


def test_env_vars_are_ones_the_config_reads(app_containers):
    known = config_keys()
    assert {"FZT_ENV", "FZT_DATABASE_URL", "FZT_BROKER_URL", "FZT_SECRET_KEY",
            "FZT_BPMN_DIR"} <= known  # the recorder itself works
    for name, svc in app_containers.items():
        used = {key for key in environment(svc) if key.startswith("FZT_")}
        assert used, name
        assert used <= known, f"{name}: {sorted(used - known)} are not read by config.from_env"
    image_keys = {key for key in dockerfile_env() if key.startswith("FZT_")}
    assert image_keys <= known, f"Dockerfile: {sorted(image_keys - known)}"


def test_app_containers_run_in_production_with_a_required_secret(app_containers):
    for name, svc in app_containers.items():
        raw = svc["environment"]
        assert raw["FZT_ENV"] == "production", name
        assert re.fullmatch(r"\$\{FZT_SECRET_KEY:\?[^}]+\}", raw["FZT_SECRET_KEY"]), name
        settings = config.from_env(container_env(svc))  # what the container will build
        assert settings.production, name


def test_database_urls_point_at_the_databases_the_init_script_creates(app_containers, services):
    sql = re.sub(r"--[^\n]*", "", PG_INIT.read_text(encoding="utf-8"))
    created = set(re.findall(r'(?i)\bCREATE\s+DATABASE\s+"?(\w+)"?', sql))
    postgres = services["postgres"]
    pg_env = environment(postgres)
    assert any(v.split(":")[0] == "./deploy/postgres-init.sql"
               and v.split(":")[1].startswith("/docker-entrypoint-initdb.d/")
               for v in postgres["volumes"])
    for name, svc in app_containers.items():
        assert "{service}" in svc["environment"]["FZT_DATABASE_URL"], name
        settings = config.from_env(container_env(svc))
        databases = set()
        for service in SERVICES:
            url = make_url(settings.database_url_for(service))
            assert url.drivername == "postgresql+psycopg", name
            assert url.host == "postgres" and (url.port or 5432) == 5432, name
            assert url.username == pg_env["POSTGRES_USER"], name
            assert url.password == pg_env["POSTGRES_PASSWORD"], name
            assert url.database in created, f"{name}: {url.database} is not created"
            databases.add(url.database)
        assert len(databases) == len(SERVICES), f"{name}: services share a database"


def test_broker_url_points_at_the_rabbitmq_container(app_containers, services):
    rabbit_env = environment(services["rabbitmq"])
    for name, svc in app_containers.items():
        url = urlsplit(config.from_env(container_env(svc)).broker_url)
        assert url.scheme == "amqp" and url.hostname == "rabbitmq", name
        assert (url.port or 5672) == 5672, name
        assert url.username == rabbit_env["RABBITMQ_DEFAULT_USER"], name
        assert url.password == rabbit_env["RABBITMQ_DEFAULT_PASS"], name


def test_interpolate_follows_compose_rules():
    assert interpolate("a${X:-b}c") == "abc"
    assert interpolate("${X:?set X}") == "<X>"
    assert interpolate("p$$w") == "p$w"
    assert interpolate("/fzt_{service}") == "/fzt_{service}"
    with pytest.raises(AssertionError):
        interpolate("pa$word")


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile_installs_the_package_and_finds_the_diagrams():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(r"\bpip install \.(\s|$)", runs)
    env, copies = dockerfile_env(), dockerfile_copies()
    assert {"pyproject.toml", "services", "bpmn"} <= set(copies)
    assert env["FZT_BPMN_DIR"] == copies["bpmn"]
    assert list((REPO / "bpmn").glob("*.bpmn")), "nothing to deploy"
    # the non-root user must be able to create FZT_VAR_DIR (`fzt db upgrade` mkdirs it)
    assert env["FZT_VAR_DIR"] in runs and "chown" in runs
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    (cmd,) = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert yaml.safe_load(cmd) == ["fzt", "--help"]


# ---------------------------------------------------------------- gateway

def test_gateway_publishes_8000_and_mounts_its_files(services):
    gateway = services["gateway"]
    assert gateway["image"].startswith("nginx:")
    assert "8000:80" in gateway["ports"]
    mounts = {}
    for volume in gateway["volumes"]:
        source, target = volume.split(":")[:2]
        assert (REPO / source).exists(), source
        mounts[target] = (REPO / source).resolve()
    assert mounts["/etc/nginx/nginx.conf"] == NGINX_CONF.resolve()
    assert mounts[f"{NGINX_HTML}/index.html"] == LANDING.resolve()
    assert mounts[f"{NGINX_HTML}/static"] == STATIC.resolve()
    for service in SERVICES:
        assert depends_on(gateway)[f"{service}-web"]["condition"] == "service_healthy"


def test_landing_page_works_as_a_static_file():
    html = LANDING.read_text(encoding="utf-8")
    assert "{{" not in html and "{%" not in html, \
        "landing.html now uses Jinja: the gateway serves it as a plain file"
    for link in re.findall(r'(?:href|src)="(/[^"]*)"', html):
        if link.startswith("/static/"):
            assert (STATIC / link.removeprefix("/static/")).is_file(), link
        else:
            assert link.strip("/") in SERVICES, link


def test_nginx_routes_each_service_prefix_to_its_web_container(nginx, services):
    server = nginx["server"]
    for service in SERVICES:
        block = location(server, f"/{service}/")
        variables = {d[1][0]: d[1][1] for d in find(block, "set")}
        (proxy_pass,) = [d[1][0] for d in find(block, "proxy_pass")]
        target = proxy_pass.removeprefix("http://")
        assert target != proxy_pass, proxy_pass
        if target.startswith("$"):
            target = variables[target]
            assert find(nginx["http"], "resolver") or find(server, "resolver"), \
                "proxy_pass with a variable needs a resolver"
        # no URI part: nginx passes /<service>/... unchanged, as the app expects
        assert "/" not in target, f"{proxy_pass} would rewrite the /{service} prefix"
        host, port = target.split(":")
        assert host == f"{service}-web" and host in services, service
        assert int(port) == DEFAULT_PORTS[service], service
        headers = {d[1][0].lower(): d[1][1] for d in effective(nginx, block, "proxy_set_header")}
        assert headers.get("host") in ("$host", "$http_host"), service
        assert headers.get("x-forwarded-for") == "$proxy_add_x_forwarded_for", service
        assert headers.get("x-forwarded-proto") == "$scheme", service


def test_nginx_serves_the_landing_page_and_its_css(nginx):
    server = nginx["server"]
    (root,) = find(server, "root")
    assert root[1] == [NGINX_HTML]
    (try_files,) = find(location(server, "=", "/"), "try_files")
    assert try_files[1][0] == "/index.html"
    location(server, "/static/")


def test_nginx_body_limit_matches_the_apps():
    (found,) = [d for d in find(parse_nginx(NGINX_CONF.read_text(encoding="utf-8")), "http")[0][2]
                if d[0] == "client_max_body_size"]
    size = found[1][0].lower()
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    number = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    assert number == request_limit(config.from_env({}))
