"""config: the settings file (TOML) that commands read their defaults from.

Looked for in this order: ``--config PATH`` (or the file the running command was given,
:data:`chosen`), ``$POSTLENS_CONFIG``,
``~/.config/postlens/config.toml``, ``/etc/postlens/config.toml``; none is fine (every
setting has a default). Options on the command line win over the file. docs/config.md
lists every setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from postlens.errors import UsageError

# sections written as arrays of tables: [[alert]]
ARRAYS = frozenset({"alert"})
DEFAULT_KEEP_DAYS = 28  # [history]: days of lines the history database keeps
SEARCH_PATH = ("~/.config/postlens/config.toml", "/etc/postlens/config.toml")

# section -> setting -> the type its value must have
KNOWN: dict[str, dict[str, type | tuple[type, ...]]] = {
    # key_file: store pseudonyms made with this key instead of the lines as read (docs/anonymize.md)
    # content_filters: those off loopback, for the dashboard's summaries (--content-filter)
    "history": {"db": str, "key_file": str, "content_filters": list},
    "anonymize": {"key_file": str, "own_domains": list, "keep_nets": list},
    "problems": {"rules": str},
    "security": {
        "allow": list,
        "own_ips": list,
        "window": str,
        "brute_force": int,
        "spray_usernames": int,
        "spray_ips": int,
        "guess_failures": int,
        "burst_factor": (int, float),
        "burst_min": int,
        "many_ips": int,
        "flood_min": int,
        "reject_limit": int,
    },
    # the dashboard (docs/serve.md): who may read it, and where it listens
    "serve": {"listen": str, "token": str, "user": str, "password": str},
    # who may scrape watch's metrics page, and its TLS (docs/metrics.md)
    "metrics": {"token": str, "user": str, "password": str, "tls_cert": str, "tls_key": str},
    # the certificate and key of watch's --listen tls:// syslog listener (docs/watch-inputs.md)
    "watch": {"tls_cert": str, "tls_key": str},
    "rbl": {"zones": list, "nameserver": str, "timeout": (int, float)},
    "anomalies": {"baseline_days": int, "min_count": int, "score": (int, float), "silence": str},
    # [[alert]]: an array, one table per rule (postlens.alerts checks each further)
    "alert": {
        "name": str,
        "kind": str,
        "window": str,
        "threshold": (int, float),
        "severity": str,
        "cooldown": str,
        "key": str,
        "min_count": int,
        "finding": str,
        "reason": str,
    },
    "alerts": {
        "terminal": str,
        "syslog": str,
        "syslog_facility": str,
        "email": (str, list),
        "webhook": (str, list),
        "webhook_headers": dict,
        "webhook_timeout": (int, float),
        "apprise": (str, list),
        "command": list,
        "command_timeout": (int, float),
    },
    "mail": {"smtp": str, "from": str, "timeout": (int, float)},
}


# the file a command was given (--config): also what the parts that read settings by
# themselves (the history database's [history]) read, for as long as the command runs
chosen: str | None = None


def find(path: str | None = None) -> Path | None:
    """The settings file in use, or None when there is none."""
    if path:
        return Path(path)
    if chosen:
        return Path(chosen)
    env = os.environ.get("POSTLENS_CONFIG")
    if env:
        return Path(env)
    for candidate in SEARCH_PATH:
        p = Path(candidate).expanduser()
        if p.is_file():
            return p
    return None


def load(path: str | None = None) -> dict[str, dict[str, Any]]:
    """The settings by section; an unreadable or invalid file is a UsageError naming the problem."""
    found = find(path)
    if found is None:
        return {}
    try:
        with open(found, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"config {found}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config {found}: not valid TOML: {e}") from e
    for section, values in data.items():
        known = KNOWN.get(section)
        tables = values if section in ARRAYS and isinstance(values, list) else [values]
        for table in tables:
            if known is None or not isinstance(table, dict):
                raise UsageError(f"config {found}: unknown section [{section}]")
            for key, value in table.items():
                if key not in known:
                    raise UsageError(f"config {found}: unknown setting {key!r} in [{section}]")
                if not isinstance(value, known[key]) or isinstance(value, bool):
                    raise UsageError(f"config {found}: [{section}] {key} has the wrong type")
    return data


def section(settings: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return settings.get(name, {})
