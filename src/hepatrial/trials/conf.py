"""Django settings for the hepatrial trial store, built in code.

Users never write a settings file: :func:`build_settings` turns a database location into a
complete settings dict, and :func:`hepatrial.trials.setup` hands it to Django.

Database selection (first match wins):

1. ``HEPATRIAL_DATABASE_URL`` environment variable, ``postgresql://user:pass@host:port/dbname``
   (also ``postgres://``; query options such as ``?sslmode=require`` go to ``OPTIONS``), or
   ``sqlite:///relative/path.sqlite3`` / ``sqlite:////absolute/path.sqlite3``;
2. the ``db`` argument (a path to a SQLite file);
3. ``./hepatrial.sqlite3``.

SQLite connections run in WAL mode with foreign keys on (Django enables foreign keys itself;
WAL is set with ``init_command``) and take the write lock at ``BEGIN`` (``IMMEDIATE``) so that
the audit hash chain is appended by one writer at a time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_DB = "hepatrial.sqlite3"
ENV_URL = "HEPATRIAL_DATABASE_URL"
ENV_DB = "HEPATRIAL_DB"
ENV_SECRET = "HEPATRIAL_SECRET_KEY"
ENV_HOSTS = "HEPATRIAL_ALLOWED_HOSTS"
ENV_ORIGINS = "HEPATRIAL_CSRF_TRUSTED_ORIGINS"
ENV_HTTPS = "HEPATRIAL_HTTPS"
ENV_PROXY = "HEPATRIAL_TRUSTED_PROXY"
ENV_IDLE = "HEPATRIAL_SESSION_IDLE_MINUTES"
ENV_DEBUG = "HEPATRIAL_DEBUG"
ENV_EMAIL_BACKEND = "HEPATRIAL_EMAIL_BACKEND"
ENV_EMAIL_HOST = "HEPATRIAL_EMAIL_HOST"
ENV_EMAIL_PORT = "HEPATRIAL_EMAIL_PORT"
ENV_EMAIL_USER = "HEPATRIAL_EMAIL_HOST_USER"
ENV_EMAIL_PASSWORD = "HEPATRIAL_EMAIL_HOST_PASSWORD"
ENV_EMAIL_TLS = "HEPATRIAL_EMAIL_USE_TLS"
ENV_EMAIL_SSL = "HEPATRIAL_EMAIL_USE_SSL"
ENV_EMAIL_FROM = "HEPATRIAL_EMAIL_FROM"
ENV_EMAIL_FILE_PATH = "HEPATRIAL_EMAIL_FILE_PATH"
ENV_EMAIL_RECIPIENTS = "HEPATRIAL_EMAIL_RECIPIENTS"

#: every environment variable the store reads, with what it sets (``hepatrial serve --help``
#: and the README list them from here)
ENVIRONMENT: dict[str, str] = {
    ENV_URL: "database URL: postgresql://user:pass@host:port/db or sqlite:///path "
    "(default: --db PATH or ./hepatrial.sqlite3)",
    ENV_DB: "SQLite file when no URL and no --db is given",
    ENV_SECRET: "secret key signing sessions and CSRF tokens (default: random per process)",
    ENV_HOSTS: "comma-separated host names the server answers to (default: localhost names)",
    ENV_ORIGINS: "comma-separated trusted origins for CSRF, e.g. https://trial.example.org",
    ENV_HTTPS: "1: served over HTTPS (secure cookies, HSTS, the proxy's X-Forwarded-Proto)",
    ENV_PROXY: "address of the reverse proxy in front of `hepatrial serve` (e.g. 127.0.0.1): "
    "its X-Forwarded-Proto/-For/-Host headers are believed; from anyone else they are dropped",
    ENV_IDLE: "minutes of inactivity before a session ends (default 30)",
    ENV_DEBUG: "1: Django debug pages (never in production)",
    ENV_EMAIL_BACKEND: "safety notifications: smtp, console, file, locmem or dummy (default "
    "dummy: nothing is sent, each notification is logged as not sent), or a dotted backend path",
    ENV_EMAIL_HOST: "SMTP server (default localhost)",
    ENV_EMAIL_PORT: "SMTP port (default 25)",
    ENV_EMAIL_USER: "SMTP user name",
    ENV_EMAIL_PASSWORD: "SMTP password",
    ENV_EMAIL_TLS: "1: STARTTLS to the SMTP server",
    ENV_EMAIL_SSL: "1: implicit TLS to the SMTP server",
    ENV_EMAIL_FROM: "sender address of the notifications (default hepatrial@localhost)",
    ENV_EMAIL_FILE_PATH: "folder the 'file' backend writes the messages to",
    ENV_EMAIL_RECIPIENTS: "addresses of the recipients the protocol names, e.g. "
    "'sponsor=pv@example.org,qppv@example.org;dsmb=chair@example.org' (users with a role and "
    "an e-mail address are added)",
}

#: short names of HEPATRIAL_EMAIL_BACKEND -> Django e-mail backends
EMAIL_BACKENDS: dict[str, str] = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "dummy": "django.core.mail.backends.dummy.EmailBackend",
}

_LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]


def _env_list(name: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}: {value!r} is not 1/0, true/false, yes/no or on/off")


def _env_minutes(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 24 * 60:
        raise ValueError(f"{name}: {value!r} is not a whole number of minutes from 1 to 1440")
    return int(value)


def parse_recipients(text: str) -> dict[str, list[str]]:
    """``"sponsor=a@x,b@x;dsmb=c@x"`` -> ``{"sponsor": ["a@x", "b@x"], "dsmb": ["c@x"]}``.

    Raises ``ValueError`` naming the variable for a part without ``=`` or an address
    without ``@``."""
    out: dict[str, list[str]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, addresses = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{ENV_EMAIL_RECIPIENTS}: {part!r} is not RECIPIENT=ADDRESS[,ADDRESS]")
        values = [a.strip() for a in addresses.split(",") if a.strip()]
        bad = [a for a in values if "@" not in a]
        if bad or not values:
            raise ValueError(f"{ENV_EMAIL_RECIPIENTS}: {part!r}: "
                             f"{bad[0] if bad else 'no address'!r} is not an e-mail address")
        out.setdefault(name.strip(), []).extend(values)
    return out


def email_settings() -> dict[str, Any]:
    """The e-mail settings of the safety notifications from ``HEPATRIAL_EMAIL_*``
    (:data:`ENVIRONMENT`); ``ValueError`` names a variable whose value cannot be used."""
    name = os.environ.get(ENV_EMAIL_BACKEND, "").strip() or "dummy"
    backend = EMAIL_BACKENDS.get(name, name)
    if "." not in backend:
        raise ValueError(f"{ENV_EMAIL_BACKEND}: {name!r} is not one of "
                         f"{', '.join(EMAIL_BACKENDS)} or a dotted backend path")
    port = os.environ.get(ENV_EMAIL_PORT, "").strip() or "25"
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{ENV_EMAIL_PORT}: {port!r} is not a port number")
    out: dict[str, Any] = {
        "EMAIL_BACKEND": backend,
        "EMAIL_HOST": os.environ.get(ENV_EMAIL_HOST, "").strip() or "localhost",
        "EMAIL_PORT": int(port),
        "EMAIL_HOST_USER": os.environ.get(ENV_EMAIL_USER, ""),
        "EMAIL_HOST_PASSWORD": os.environ.get(ENV_EMAIL_PASSWORD, ""),
        "EMAIL_USE_TLS": _env_flag(ENV_EMAIL_TLS),
        "EMAIL_USE_SSL": _env_flag(ENV_EMAIL_SSL),
        "DEFAULT_FROM_EMAIL": os.environ.get(ENV_EMAIL_FROM, "").strip() or "hepatrial@localhost",
        "HEPATRIAL_SAFETY_RECIPIENTS": parse_recipients(os.environ.get(ENV_EMAIL_RECIPIENTS, "")),
    }
    if out["EMAIL_USE_TLS"] and out["EMAIL_USE_SSL"]:
        raise ValueError(f"{ENV_EMAIL_TLS} and {ENV_EMAIL_SSL} cannot both be on")
    path = os.environ.get(ENV_EMAIL_FILE_PATH, "").strip()
    if path:
        out["EMAIL_FILE_PATH"] = path
    elif backend == EMAIL_BACKENDS["file"]:
        raise ValueError(f"{ENV_EMAIL_BACKEND}=file needs {ENV_EMAIL_FILE_PATH} (a folder)")
    return out


def parse_database_url(url: str) -> dict[str, Any]:
    """Turn a ``postgresql://`` or ``sqlite://`` URL into a Django ``DATABASES['default']`` dict.

    Raises:
        ValueError: unsupported scheme or a PostgreSQL URL without a database name.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "postgresql+psycopg", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ValueError(f"{ENV_URL}: no database name in {url!r}")
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "ATOMIC_REQUESTS": True,
            # a served request reuses its thread's connection (checked before reuse) instead
            # of opening one per request: a PostgreSQL connection costs a process fork
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if scheme == "sqlite":
        # sqlite:///rel/path -> "rel/path"; sqlite:////abs/path -> "/abs/path"
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ValueError(f"{ENV_URL}: no file in {url!r}")
        return sqlite_database(path)
    raise ValueError(
        f"{ENV_URL}: unsupported scheme {parts.scheme!r} in {url!r} "
        "(use postgresql://user@host:port/db or sqlite:///path)"
    )


def sqlite_database(path: str | Path) -> dict[str, Any]:
    """``DATABASES['default']`` for a SQLite file (WAL, foreign keys, IMMEDIATE transactions)."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(path).expanduser().resolve()) if str(path) != ":memory:" else ":memory:",
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
            "PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
        "ATOMIC_REQUESTS": True,
        "TEST": {"NAME": None},
    }


def database_settings(db: str | Path | None = None) -> dict[str, Any]:
    """The ``default`` database: ``HEPATRIAL_DATABASE_URL`` wins, else SQLite at ``db``."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return parse_database_url(url)
    if db is None:
        db = os.environ.get(ENV_DB, "").strip() or DEFAULT_DB
    if isinstance(db, str) and "://" in db:
        return parse_database_url(db)
    return sqlite_database(db)


def describe_database(cfg: dict[str, Any]) -> str:
    """Human-readable description of a database dict, without the password."""
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:{cfg['NAME']}"
    user = cfg.get("USER") or ""
    host = cfg.get("HOST") or "localhost"
    port = f":{cfg['PORT']}" if cfg.get("PORT") else ""
    return f"postgresql://{user + '@' if user else ''}{host}{port}/{cfg['NAME']}"


def build_settings(db: str | Path | None = None) -> dict[str, Any]:
    """Complete Django settings for the trial store (admin, auth, sessions, simple_history).

    Everything a deployment changes comes from ``HEPATRIAL_*`` environment variables
    (:data:`ENVIRONMENT`): database, secret key (without one a random key is made per process,
    so sessions end when the server restarts), allowed host names, trusted CSRF origins, HTTPS
    (secure cookies), the idle session timeout. Raises ``ValueError`` naming a variable whose
    value cannot be used.
    """
    https = _env_flag(ENV_HTTPS)
    idle_minutes = _env_minutes(ENV_IDLE, 30)
    return {
        "DEBUG": _env_flag(ENV_DEBUG),
        "SECRET_KEY": os.environ.get(ENV_SECRET) or secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": _LOCAL_HOSTS + _env_list(ENV_HOSTS),
        "CSRF_TRUSTED_ORIGINS": _env_list(ENV_ORIGINS),
        "SESSION_COOKIE_SECURE": https,
        "CSRF_COOKIE_SECURE": https,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https") if https else None,
        "SECURE_HSTS_SECONDS": 31536000 if https else 0,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        # idle timeout: the session expires after this much inactivity (every request renews it)
        "SESSION_COOKIE_AGE": idle_minutes * 60,
        "SESSION_SAVE_EVERY_REQUEST": True,
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": True,
        "INSTALLED_APPS": [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "simple_history",
            "django_htmx",
            "axes",
            "hepatrial.trials.apps.TrialsConfig",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
            "django_htmx.middleware.HtmxMiddleware",
            "simple_history.middleware.HistoryRequestMiddleware",
            # last: django-axes locks an account out after repeated failed logins
            "axes.middleware.AxesMiddleware",
        ],
        "AUTHENTICATION_BACKENDS": [
            "axes.backends.AxesStandaloneBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        # django-axes: 5 failed logins lock the account (by user name) until an administrator
        # resets it (`hepatrial user unlock NAME`); 21 CFR 11.300(d), ICH E6(R3) 4.2.2
        "AXES_FAILURE_LIMIT": 5,
        "AXES_LOCKOUT_PARAMETERS": ["username"],
        "AXES_RESET_ON_SUCCESS": True,
        "AXES_COOLOFF_TIME": None,
        "AXES_VERBOSE": False,
        "AXES_LOCKOUT_TEMPLATE": "hepatrial/web/locked_out.html",
        "AXES_HTTP_RESPONSE_CODE": 403,
        # static files served by WhiteNoise from the apps' static folders (no collectstatic step)
        "WHITENOISE_USE_FINDERS": True,
        "WHITENOISE_AUTOREFRESH": False,
        "ROOT_URLCONF": "hepatrial.trials.urls",
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "DATABASES": {"default": database_settings(db)},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "LANGUAGE_CODE": "en-gb",
        "USE_I18N": True,
        "STATIC_URL": "/static/",
        "LOGIN_URL": "/login/",
        "LOGIN_REDIRECT_URL": "/",
        "LOGOUT_REDIRECT_URL": "/login/",
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "X_FRAME_OPTIONS": "DENY",
        "PASSWORD_HASHERS": [
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        ],
        "AUTH_PASSWORD_VALIDATORS": [
            {
                "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
                "OPTIONS": {"min_length": 10},
            },
            {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
            {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
            {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
        ],
        "SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD": True,
        "SIMPLE_HISTORY_REVERT_DISABLED": True,
        # axes.W006 asks for the IP address among the lockout parameters: hepatrial locks the
        # account (user name) whatever the address, which rotating addresses cannot bypass
        "SILENCED_SYSTEM_CHECKS": ["axes.W006"],
        # safety notifications (hepatrial.trials.services.safety): HEPATRIAL_EMAIL_*
        **email_settings(),
    }
