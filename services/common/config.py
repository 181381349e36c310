"""Configuration from environment variables, every key prefixed FZT_.

Defaults are the embedded mode: SQLite files under var/ and kombu's in-memory bus.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("intake", "dispatch", "mediation", "supervision")
DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "mediation": 8003, "supervision": 8004}
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OidcSettings:
    """Single sign-on through an OpenID Connect provider (docs/security.md, "Single sign-on");
    off unless ``issuer`` is set. Claims name the account, its role and its scope."""

    issuer: str = ""  # FZT_OIDC_ISSUER; its /.well-known/openid-configuration is read
    client_id: str = ""
    client_secret: str = ""
    scopes: str = "openid profile"
    username_claim: str = "preferred_username"
    name_claim: str = "name"
    role_claim: str = "fzt_role"
    # The provider's role values -> ours ("gov-dispatch=dispatcher,..."); empty: the claim
    # carries our identifiers (services/common/web/roles.py) as they are.
    role_map: tuple[tuple[str, str], ...] = ()
    district_claim: str = "fzt_district"
    department_claim: str = "fzt_department"
    label: str = "统一身份认证登录"  # the button on the login page

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


@dataclass(frozen=True)
class RateLimitSettings:
    """Limits on public endpoints (docs/security.md, "Rate limits"), in the notation of the
    ``limits`` library: "30/hour", "10 per hour;50/day". Counted in the service's database,
    so they hold across all its web processes; ``enabled=False`` turns every one off."""

    enabled: bool = True  # FZT_RATE_LIMIT_ENABLED
    submit_ip: str = "30/hour"  # FZT_RATE_LIMIT_SUBMIT_IP: submissions per client address, all channels
    submit_phone: str = "10/hour"  # FZT_RATE_LIMIT_SUBMIT_PHONE: stored submissions per phone number
    lookup_ip: str = "100/hour"  # FZT_RATE_LIMIT_LOOKUP_IP: tracking lookups per client address
    login_ip: str = "30/hour"  # FZT_RATE_LIMIT_LOGIN_IP: failed logins per client address, any user


@dataclass(frozen=True)
class DuplicateSettings:
    """When dispatch flags a new case as a possible duplicate of an open one of the same
    district (docs/duplicates.md); FZT_DUPLICATE_<FIELD>."""

    window_days: int = 30  # open cases submitted this recently are compared
    text_threshold: float = 0.5  # character-bigram similarity that alone flags
    location_text_threshold: float = 0.2  # similarity that flags at the same or a near place
    scan_limit: int = 200  # most recent open cases of the district compared by text
    cell_degrees: float = 0.002  # grid cell of a map point (~200 m); neighbours count as near
    max_candidates: int = 5  # flags kept per case, most similar first


@dataclass(frozen=True)
class SmtpSettings:
    """The e-mail notifier (services/intake/notify.py; docs/satisfaction.md); off unless
    ``host`` is set (FZT_SMTP_HOST, _PORT, _USER, _PASSWORD, _FROM, _STARTTLS, _TIMEOUT)."""

    host: str = ""
    port: int = 25
    user: str = ""
    password: str = ""
    sender: str = "阜政通 <noreply@fzt.example>"  # FZT_SMTP_FROM
    starttls: bool = False
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class Settings:
    env: str = "development"  # development | test | production
    var_dir: Path = REPO_ROOT / "var"
    bpmn_dir: Path = REPO_ROOT / "bpmn"
    holiday_dir: Path = REPO_ROOT / "data" / "holidays"
    broker_url: str = "memory://localhost//"
    bus_prefix: str = "fzt"
    secret_key: str = "dev-only-secret-change-me"
    # "{service}" is replaced by the service name: one database per service.
    database_url: str = ""
    database_urls: dict[str, str] = field(default_factory=dict)
    delivery_limit: int = 5
    # Unacknowledged messages a worker's consumer may hold. Each one a killed worker held
    # counts as a delivery toward delivery_limit, so a crash loop can dead-letter up to this
    # many healthy messages; more than one lets the next message arrive while one is applied
    # (a quorum queue's ack goes through its log first). docs/dead-letters.md.
    prefetch: int = 4
    # Reverse proxies in front of the web apps whose X-Forwarded-* headers are trusted.
    proxy_hops: int = 0
    # "json" (one object per line) or "text"; "" means json in production, text otherwise.
    log_format: str = ""
    # The 12345 hotline's RabbitMQ ("" = broker_url) and its exchange (docs/hotline-12345.md).
    hotline_url: str = ""
    hotline_exchange: str = "hotline12345"
    # Keys that may POST Open311 requests (FZT_OPEN311_API_KEYS, comma-separated); none =
    # the documented development key outside production, and no POST at all in production.
    open311_api_keys: tuple[str, ...] = ()
    # Days after which an archived case's personal data is anonymised (docs/privacy.md);
    # 0 turns the worker's daily run off (``fzt privacy anonymise --days`` still works).
    retention_days: int = 3 * 365
    # API bearer tokens (``fzt token``) expire this many days after they were made.
    token_max_age_days: int = 30
    oidc: OidcSettings = OidcSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    smtp: SmtpSettings = SmtpSettings()
    duplicates: DuplicateSettings = DuplicateSettings()
    # Uploaded files (docs/uploads.md): a content-addressed store shared by every service
    # (None = <var_dir>/blobs), and the limits per file and per form.
    blob_dir: Path | None = None
    upload_photo_max_bytes: int = 5 * 1024 * 1024
    upload_max_photos: int = 4
    upload_attachment_max_bytes: int = 10 * 1024 * 1024
    upload_max_attachments: int = 3

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def log_json(self) -> bool:
        return self.log_format == "json" or (not self.log_format and self.production)

    @property
    def blob_root(self) -> Path:
        return self.blob_dir or self.var_dir / "blobs"

    def database_url_for(self, service: str) -> str:
        if service in self.database_urls:
            return self.database_urls[service]
        if self.database_url:
            return self.database_url.replace("{service}", service)
        return f"sqlite:///{self.var_dir / (service + '.db')}"


def from_env(environ=os.environ, **overrides) -> Settings:
    urls = {s: environ[f"FZT_DATABASE_URL_{s.upper()}"] for s in SERVICES
            if environ.get(f"FZT_DATABASE_URL_{s.upper()}")}
    values = dict(
        env=environ.get("FZT_ENV", "development"),
        var_dir=Path(environ.get("FZT_VAR_DIR", REPO_ROOT / "var")),
        bpmn_dir=Path(environ.get("FZT_BPMN_DIR", REPO_ROOT / "bpmn")),
        holiday_dir=Path(environ.get("FZT_HOLIDAY_DIR", REPO_ROOT / "data" / "holidays")),
        broker_url=environ.get("FZT_BROKER_URL", "memory://localhost//"),
        bus_prefix=environ.get("FZT_BUS_PREFIX", "fzt"),
        secret_key=environ.get("FZT_SECRET_KEY", "dev-only-secret-change-me"),
        database_url=environ.get("FZT_DATABASE_URL", ""),
        database_urls=urls,
        delivery_limit=int(environ.get("FZT_DELIVERY_LIMIT", "5")),
        prefetch=int(environ.get("FZT_PREFETCH", "4")),
        proxy_hops=int(environ.get("FZT_PROXY_HOPS", "0")),
        log_format=environ.get("FZT_LOG_FORMAT", "").strip().lower(),
        hotline_url=environ.get("FZT_HOTLINE_URL", ""),
        hotline_exchange=environ.get("FZT_HOTLINE_EXCHANGE", "hotline12345"),
        open311_api_keys=tuple(k.strip() for k in environ.get("FZT_OPEN311_API_KEYS", "").split(",")
                               if k.strip()),
        retention_days=int(environ.get("FZT_RETENTION_DAYS", str(3 * 365))),
        blob_dir=Path(environ["FZT_BLOB_DIR"]) if environ.get("FZT_BLOB_DIR") else None,
        upload_photo_max_bytes=int(environ.get("FZT_UPLOAD_PHOTO_MAX_BYTES", 5 * 1024 * 1024)),
        upload_max_photos=int(environ.get("FZT_UPLOAD_MAX_PHOTOS", 4)),
        upload_attachment_max_bytes=int(environ.get("FZT_UPLOAD_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)),
        upload_max_attachments=int(environ.get("FZT_UPLOAD_MAX_ATTACHMENTS", 3)),
        token_max_age_days=int(environ.get("FZT_TOKEN_MAX_AGE_DAYS", "30")),
        oidc=_oidc_from_env(environ),
        rate_limits=_rate_limits_from_env(environ),
        smtp=_smtp_from_env(environ),
        duplicates=_duplicates_from_env(environ),
    )
    values.update(overrides)
    settings = Settings(**values)
    if settings.production and settings.secret_key.startswith("dev-only"):
        raise RuntimeError("FZT_SECRET_KEY must be set when FZT_ENV=production")
    if settings.prefetch < 1:
        raise RuntimeError(f"FZT_PREFETCH must be 1 or more, not {settings.prefetch}")
    if settings.retention_days < 0:
        raise RuntimeError(f"FZT_RETENTION_DAYS must be 0 (off) or more, not {settings.retention_days}")
    if settings.log_format not in ("", "json", "text"):
        raise RuntimeError(f"FZT_LOG_FORMAT must be json or text, not {settings.log_format!r}")
    if settings.token_max_age_days < 1:
        raise RuntimeError("FZT_TOKEN_MAX_AGE_DAYS must be at least 1")
    if settings.oidc.enabled and not (settings.oidc.client_id and settings.oidc.client_secret):
        raise RuntimeError("FZT_OIDC_CLIENT_ID and FZT_OIDC_CLIENT_SECRET must be set with FZT_OIDC_ISSUER")
    return settings


def _oidc_from_env(environ) -> OidcSettings:
    defaults = OidcSettings()
    pairs = [item.split("=", 1) for item in environ.get("FZT_OIDC_ROLE_MAP", "").split(",") if "=" in item]

    def get(key, default):
        return environ.get(f"FZT_OIDC_{key.upper()}", default).strip()

    return OidcSettings(
        issuer=get("issuer", "").rstrip("/"), client_id=get("client_id", ""),
        client_secret=get("client_secret", ""), scopes=get("scopes", defaults.scopes),
        username_claim=get("username_claim", defaults.username_claim),
        name_claim=get("name_claim", defaults.name_claim), role_claim=get("role_claim", defaults.role_claim),
        role_map=tuple((theirs.strip(), ours.strip()) for theirs, ours in pairs),
        district_claim=get("district_claim", defaults.district_claim),
        department_claim=get("department_claim", defaults.department_claim),
        label=get("label", defaults.label))


def _smtp_from_env(environ) -> SmtpSettings:
    defaults = SmtpSettings()

    def get(key, default):
        return str(environ.get(f"FZT_SMTP_{key}", default)).strip()

    return SmtpSettings(
        host=get("HOST", ""), port=int(get("PORT", defaults.port)), user=get("USER", ""),
        password=environ.get("FZT_SMTP_PASSWORD", ""), sender=get("FROM", defaults.sender),
        starttls=get("STARTTLS", "false").lower() in ("1", "true", "yes", "on"),
        timeout=float(get("TIMEOUT", defaults.timeout)))


def _rate_limits_from_env(environ) -> RateLimitSettings:
    defaults = RateLimitSettings()
    enabled = environ.get("FZT_RATE_LIMIT_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
    return RateLimitSettings(enabled=enabled, **{
        name: environ.get(f"FZT_RATE_LIMIT_{name.upper()}", getattr(defaults, name)).strip()
        for name in ("submit_ip", "submit_phone", "lookup_ip", "login_ip")})


def _duplicates_from_env(environ) -> DuplicateSettings:
    defaults = DuplicateSettings()
    try:
        return DuplicateSettings(**{
            name: type(getattr(defaults, name))(environ.get(f"FZT_DUPLICATE_{name.upper()}", getattr(defaults, name)))
            for name in DuplicateSettings.__dataclass_fields__})
    except ValueError as err:
        raise RuntimeError(f"FZT_DUPLICATE_*: {err}") from None
