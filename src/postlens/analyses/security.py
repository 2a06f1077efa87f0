"""security: who is attacking, and which account may be sending for someone else.

Counted per line: failed SASL and Dovecot logins (by IP, subnet, username, method),
successful logins, postscreen verdicts, RBL and other rejects per client, connections
lost after AUTH. Counted per message: what each SASL user or local sender sent, per
hour, and what each recipient received.

The findings are decided only in :meth:`Security.result`, from counts that merge
exactly (failures are kept per second), so a split log gives the same findings:

- *guessed password*: a login that succeeded from an IP after at least
  ``guess_failures`` failures from it (the highest severity);
- *password spray*: one IP trying ``spray_usernames`` usernames or more, or one
  username tried from ``spray_ips`` addresses or more;
- *brute force*: ``brute_force`` failures or more from one IP within ``window``;
- *compromised sender*: a sender whose messages in an hour reach ``burst_min`` and
  ``burst_factor`` times their usual hour (the median over the hours the log has mail),
  or who sends from ``many_ips`` addresses or more in an hour;
- *mail flood*: one recipient getting ``flood_min`` messages or more in an hour, and
  ``burst_factor`` times its usual hour (a loop, or a list bombed).
"""

from __future__ import annotations

import bisect
import ipaddress
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from postlens.addresses import is_loopback
from postlens.analyses.tally import Counts, Tally, add_row, bump, bump_max
from postlens.dates import iso_utc
from postlens.events import REJECTS, Arrival, AuthFailure, Login, Reject, Screen, SessionProblem
from postlens.lines import KIND_POSTFIX, Tag
from postlens.messages import Message

SEVERITY = {"guessed_password": "critical", "password_spray": "high", "distributed_attack": "high",
            "brute_force": "high", "compromised_sender": "high", "mail_flood": "medium",
            "repeated_rejects": "medium"}  # fmt: skip
_RANK = {"critical": 0, "high": 1, "medium": 2}
# postscreen verdicts that are not a client's offence
_BENIGN_SCREEN = frozenset(
    ("CONNECT", "PASS NEW", "PASS OLD", "WHITELISTED", "ALLOWLISTED", "WHITELIST VETO", "ALLOWLIST VETO")
)
TOP = 20
# an IP below the brute-force rate that fails this many times the threshold, and never logs
# in, is guessing slowly (to stay under rate limits such as fail2ban's)
SLOW_FACTOR = 10


@dataclass(slots=True)
class SecurityOptions:
    window: float = 600.0  # seconds, for brute force
    brute_force: int = 10
    spray_usernames: int = 10
    spray_ips: int = 5
    guess_failures: int = 3
    burst_factor: float = 5.0
    burst_min: int = 20
    many_ips: int = 5
    flood_min: int = 30
    reject_limit: int = 20  # rejects of one client within the window


def subnet(ip: str) -> str:
    """The /24 of an IPv4 address, the /64 of an IPv6 one; the text itself if neither."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def service(tag: Tag) -> str:
    """Who took the login: ``submission/smtpd`` for a master.cf service, else the daemon."""
    return f"{tag.service}/{tag.daemon}" if tag.kind == KIND_POSTFIX and tag.service else tag.daemon


class Security:
    def __init__(self, options: SecurityOptions, tz: tzinfo | None) -> None:
        self.options = options
        self.t = t = Tally()
        self._fail_sec = t.counter("fail_sec")  # (ip, second) -> failures
        self._fail_user = t.counter("fail_user")  # (ip, username) -> failures
        self._fail_method = t.counter("fail_method")  # (ip, method) -> failures
        self._fail_service = t.counter("fail_service")  # service -> failures
        self._hosts = t.maximum("host")  # ip -> client name seen
        self._ok = t.vector("ok")  # (ip, username, service) -> [logins]
        self._ok_last = t.maximum("ok_last")  # (ip, username, service) -> last login time
        self._screen = t.counter("screen")  # (ip, verdict) -> n
        self._reject_sec = t.counter("reject_sec")  # (ip, second) -> rejects
        self._rbl = t.counter("rbl")  # (ip, list) -> rejects
        self._lost_auth = t.counter("lost_after_auth")  # ip -> n
        self._sent = t.vector("sent")  # (who, hour) -> [messages, recipients, bounced, deferred]
        self._sent_ips = t.set("sent_ips")  # (who, hour, ip)
        self._to = t.counter("to")  # (recipient, hour) -> messages
        self._hours = t.set("hours")  # hours with received mail

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            AuthFailure: self._failure,
            Login: self._login,
            Arrival: self._arrival,
            Screen: self._screen_verdict,
            Reject: self._reject,
            SessionProblem: self._session_problem,
        }

    def _failure(self, ev: AuthFailure) -> None:
        ip = ev.client_ip or "unknown"
        bump(self._fail_sec, (ip, int(ev.line.ts)))
        bump(self._fail_user, (ip, ev.username.lower()))
        bump(self._fail_method, (ip, ev.method or "?"))
        bump(self._fail_service, service(ev.tag))
        if ev.client_host and ev.client_host != "unknown":
            bump_max(self._hosts, ip, ev.client_host)

    def _success(self, ip: str, username: str, service: str, ts: float) -> None:
        key = (ip, username.lower(), service)
        add_row(self._ok, key, 1)
        bump_max(self._ok_last, key, ts)

    def _login(self, ev: Login) -> None:
        self._success(ev.client_ip, ev.username, ev.service, ev.line.ts)

    def _arrival(self, ev: Arrival) -> None:
        if ev.sasl_username:
            self._success(ev.client_ip, ev.sasl_username, service(ev.tag), ev.line.ts)

    def _screen_verdict(self, ev: Screen) -> None:
        if ev.action not in _BENIGN_SCREEN:
            bump(self._screen, (ev.client_ip, ev.action))

    def _reject(self, ev: Reject) -> None:
        if ev.action not in REJECTS or not ev.client_ip or ev.filter_client:  # our own filter
            return
        bump(self._reject_sec, (ev.client_ip, int(ev.line.ts)))
        if ev.client_host and ev.client_host != "unknown":
            bump_max(self._hosts, ev.client_ip, ev.client_host)
        at = ev.reason.find("blocked using ")
        if at >= 0:
            listed = ev.reason[at + 14 :].split(";")[0].split(",")[0].strip().rstrip(".")
            bump(self._rbl, (ev.client_ip, listed))

    def _session_problem(self, ev: SessionProblem) -> None:
        if ev.after == "AUTH":
            bump(self._lost_auth, ev.client_ip)

    def add_message(self, msg: Message) -> None:
        a = msg.arrival
        if a is not None and a.sasl_username:
            who = "sasl:" + a.sasl_username.lower()
        elif msg.origin == "pickup" and msg.sender:
            who = "local:" + msg.sender.lower()
        else:
            who = ""
        if msg.queued is None or msg.reinjected:
            return
        hour = int(msg.first_ts // 3600)
        self._hours.add(hour)
        recipients = {d.to.lower() for d in msg.deliveries if d.to}
        for rcpt in recipients:
            bump(self._to, (rcpt, hour))
        if not who:
            return
        bounced = sum(1 for d in msg.deliveries if d.status == "bounced")
        deferred = len({d.to for d in msg.deliveries if d.status == "deferred"})
        add_row(self._sent, (who, hour), 1, len(recipients), bounced, deferred)
        if a is not None:
            self._sent_ips.add((who, hour, a.client_ip))

    def settle(self, msg: Any) -> None:
        pass  # arrivals are not counted here

    def add_session(self, sess: Any) -> None:
        pass

    def merge(self, later: Security) -> None:
        self.t.merge(later.t)

    # -- findings --------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        failures = self._failures_by_ip()
        findings = self._ip_findings(failures) + self._user_findings() + self._sender_findings()
        findings += self._flood_findings()
        rejects = _seconds_by_ip(self._reject_sec)
        findings += self._reject_findings(rejects, {f["ip"] for f in findings if "ip" in f})
        findings.sort(key=lambda f: (_RANK[f["severity"]], -f["count"], f["kind"], f["subject"]))
        return {
            "findings": findings,
            "failures": {
                "total": sum(self._fail_sec.values()),
                "by_ip": self._ip_rows(failures),
                "by_subnet": _rows(_sum_by(failures, lambda ip: subnet(ip)), "subnet", "failures"),
                "by_username": _rows(_sum_by(self._fail_user, lambda key: key[1]), "username", "failures"),
                "by_method": _rows(_sum_by(self._fail_method, lambda key: key[1]), "method", "failures"),
                "by_service": _rows(self._fail_service, "service", "failures"),
            },
            "logins": sum(row[0] for row in self._ok.values()),
            "postscreen": [
                {"ip": ip, "verdict": verdict, "count": n} for (ip, verdict), n in _ranked(self._screen)
            ],
            "rbl_rejects": [{"ip": ip, "list": name, "count": n} for (ip, name), n in _ranked(self._rbl)],
            "rejected_clients": [
                {"ip": ip, "host": self._hosts.get(ip, ""), "rejects": n}
                for ip, n in _ranked(Counter({ip: len(secs) for ip, secs in rejects.items()}))
            ],
            "lost_after_auth": _rows(self._lost_auth, "ip", "count"),
            "senders": self._sender_rows(),
        }

    def _sender_rows(self) -> list[dict[str, Any]]:
        """Each SASL user's (and local sender's) mail, most messages first: what a hijacked
        account or a runaway script looks like next to the others."""
        totals: dict[str, list[int]] = {}  # who -> [messages, recipients, bounced, deferred, busiest hour]
        for (who, _hour), row in self._sent.items():
            t = totals.setdefault(who, [0, 0, 0, 0, 0])
            for i, n in enumerate(row):
                t[i] += n
            t[4] = max(t[4], row[0])
        ips: dict[str, set[str]] = {}
        for who, _hour, ip in self._sent_ips:
            ips.setdefault(who, set()).add(ip)
        rows: list[dict[str, Any]] = []
        for who, (messages, recipients, bounced, deferred, busiest) in totals.items():
            via, _, sender = who.partition(":")
            rows.append({
                "sender": sender, "via": via, "messages": messages, "recipients": recipients,
                "bounced": bounced, "deferred": deferred, "client_ips": len(ips.get(who, ())),
                "busiest_hour": busiest,
            })  # fmt: skip
        rows.sort(key=lambda r: (-r["messages"], r["via"], r["sender"]))
        return rows[:TOP]

    def _failures_by_ip(self) -> dict[str, list[int]]:
        """Each IP's failure times in seconds, sorted, one entry per failure."""
        return _seconds_by_ip(self._fail_sec)

    def _reject_findings(self, rejects: dict[str, list[int]], found: set[str]) -> list[dict[str, Any]]:
        """Clients refused again and again in a short time (relay probes, address harvesting,
        blocklisted spam runs): what fail2ban's postfix jail bans. One already found for its
        logins is not found again."""
        o = self.options
        out = []
        for ip, secs in rejects.items():
            burst = _most_in_window(secs, o.window)
            if ip in found or burst < o.reject_limit or is_loopback(ip):  # webmail, a filter on this host
                continue
            text = f"{ip} was refused {burst} times within {_span(o.window)} ({len(secs)} in all)"
            base = {
                "ip": ip,
                "host": self._hosts.get(ip, ""),
                "first": iso_utc(secs[0]),
                "last": iso_utc(secs[-1]),
            }
            out.append(_finding("repeated_rejects", ip, len(secs), base, text))
        return out

    def _usernames(self, ip: str) -> list[str]:
        """The usernames ``ip`` tried (older Postfix versions do not log them)."""
        return sorted(u for (i, u) in self._fail_user if i == ip and u)

    def _ip_rows(self, failures: dict[str, list[int]]) -> list[dict[str, Any]]:
        users: Counter[str] = Counter(ip for ip, _ in self._fail_user)
        rows = [
            {"ip": ip, "host": self._hosts.get(ip, ""), "failures": len(secs), "usernames": users[ip],
             "first": iso_utc(secs[0]), "last": iso_utc(secs[-1])}
            for ip, secs in failures.items()
        ]  # fmt: skip
        rows.sort(key=lambda r: (-r["failures"], r["ip"]))
        return rows[:TOP]

    def _ip_findings(self, failures: dict[str, list[int]]) -> list[dict[str, Any]]:
        o = self.options
        found = []
        guessed: dict[str, tuple[str, float, str]] = {}
        for (ip, user, service), last in self._ok_last.items():
            before = bisect.bisect_right(failures.get(ip, []), int(last))
            if before >= o.guess_failures and (ip not in guessed or last > guessed[ip][1]):
                guessed[ip] = (user, last, service)
        for ip, secs in failures.items():
            users = self._usernames(ip)
            base = {"ip": ip, "first": iso_utc(secs[0]), "last": iso_utc(secs[-1]), "usernames": users[:TOP]}
            if ip in guessed:
                user, at, service = guessed[ip]
                before = bisect.bisect_right(secs, int(at))
                text = (
                    f"{before} failed logins from {ip}, then a successful login as {user} ({service}) at "
                    f"{iso_utc(at)}: the password was probably guessed; lock the account and change it"
                )
                found.append(_finding("guessed_password", ip, before, base, text))
            elif len(users) >= o.spray_usernames:
                text = f"{ip} tried {len(users)} usernames ({len(secs)} failed logins)"
                found.append(_finding("password_spray", ip, len(secs), base, text))
            else:
                burst = _most_in_window(secs, o.window)
                if burst >= o.brute_force:
                    text = f"{ip} failed {burst} logins within {_span(o.window)} ({len(secs)} in all)"
                    found.append(_finding("brute_force", ip, len(secs), base, text))
                elif len(secs) >= SLOW_FACTOR * o.brute_force and not self._succeeded(ip):
                    days = (secs[-1] - secs[0]) / 86400
                    text = f"{ip} failed {len(secs)} logins over {days:.1f} days and never logged in (slowly)"
                    found.append(_finding("brute_force", ip, len(secs), base, text))
        return found

    def _succeeded(self, ip: str) -> bool:
        return any(i == ip for i, _, _ in self._ok_last)

    def _user_findings(self) -> list[dict[str, Any]]:
        ips: dict[str, set[str]] = {}
        for ip, user in self._fail_user:
            if user:
                ips.setdefault(user, set()).add(ip)
        return [
            _finding("distributed_attack", user, len(addrs), {"username": user, "ips": sorted(addrs)[:TOP]},
                     f"the username {user} failed to log in from {len(addrs)} addresses")
            for user, addrs in ips.items()
            if len(addrs) >= self.options.spray_ips
        ]  # fmt: skip

    def _sender_findings(self) -> list[dict[str, Any]]:
        o = self.options
        hours = sorted(self._hours)
        per_who: dict[str, dict[int, list[int]]] = {}
        for (who, hour), row in self._sent.items():
            per_who.setdefault(who, {})[hour] = row
        ips: Counter[tuple[str, int]] = Counter((who, hour) for who, hour, _ in self._sent_ips)
        found = []
        for who, rows in per_who.items():
            usual = statistics.median([rows[h][0] if h in rows else 0 for h in hours] or [0])
            peak_hour = max(rows, key=lambda h: (rows[h][0], -h))
            peak = rows[peak_hour][0]
            most_ips = max(ips[who, h] for h in rows)
            kind, name = who.split(":", 1)
            base = {"sender": name, "sender_kind": kind, "hour": iso_utc(peak_hour * 3600), "usual": usual,
                    "recipients": rows[peak_hour][1], "bounced": rows[peak_hour][2],
                    "deferred": rows[peak_hour][3], "ips": most_ips}  # fmt: skip
            if peak >= o.burst_min and peak >= o.burst_factor * max(usual, 1):
                found.append(_finding("compromised_sender", name, peak, base,
                    f"{name} sent {peak} messages in the hour from {iso_utc(peak_hour * 3600)}, "
                    f"usually {usual:g}: check whether the account is compromised"))  # fmt: skip
            elif most_ips >= o.many_ips:
                found.append(_finding("compromised_sender", name, most_ips, base,
                    f"{name} sent from {most_ips} different addresses within an hour: "
                    "check whether the account is compromised"))  # fmt: skip
        return found

    def _flood_findings(self) -> list[dict[str, Any]]:
        o = self.options
        hours = sorted(self._hours)
        per_rcpt: dict[str, dict[int, int]] = {}
        for (rcpt, _hour), n in self._to.items():
            if n >= o.flood_min:
                per_rcpt.setdefault(rcpt, {})
        for (rcpt, hour), n in self._to.items():
            if rcpt in per_rcpt:
                per_rcpt[rcpt][hour] = n
        found = []
        for rcpt, rows in per_rcpt.items():
            usual = statistics.median([rows.get(h, 0) for h in hours])
            peak_hour = max(rows, key=lambda h: (rows[h], -h))
            peak = rows[peak_hour]
            if peak >= o.burst_factor * max(usual, 1):
                base = {"recipient": rcpt, "hour": iso_utc(peak_hour * 3600), "usual": usual}
                found.append(_finding("mail_flood", rcpt, peak, base,
                    f"{rcpt} received {peak} messages in the hour from {iso_utc(peak_hour * 3600)}, "
                    f"usually {usual:g}: a mail loop or a flood"))  # fmt: skip
        return found


def _finding(kind: str, subject: str, count: int, details: dict[str, Any], text: str) -> dict[str, Any]:
    return {"kind": kind, "severity": SEVERITY[kind], "subject": subject, "count": count, "explanation": text,
            **details}  # fmt: skip


def _seconds_by_ip(counts: Counts) -> dict[str, list[int]]:
    """Each IP's event times in seconds, sorted, one entry per event."""
    by_ip: dict[str, list[int]] = {}
    for (ip, sec), n in counts.items():
        by_ip.setdefault(ip, []).extend([sec] * n)
    for secs in by_ip.values():
        secs.sort()
    return by_ip


def _most_in_window(secs: list[int], window: float) -> int:
    """The most events within any ``window`` seconds (``secs`` sorted)."""
    best = start = 0
    for end, sec in enumerate(secs):
        while sec - secs[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds % 60 == 0 else f"{seconds:g} seconds"


def _sum_by(counter: Any, key: Callable[[Any], str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for k, v in counter.items():
        out[key(k)] += v if isinstance(v, int) else len(v)
    return out


def _ranked(counter: Counts) -> list[tuple[Any, int]]:
    rows = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return rows[:TOP]


def _rows(counter: Counts, name: str, what: str) -> list[dict[str, Any]]:
    return [{name: key, what: n} for key, n in _ranked(counter)]
