"""reasons: which named reason a deferral, bounce, expiry or reject reply falls under.

The rules are data: ``postlens/data/reasons.toml`` (docs/reasons.md describes the format),
optionally preceded by a user's file. A rule matches on the kind of reply, the SMTP code,
the enhanced status code and a regular expression on the text; the first match wins.
Providers (blocklists and large receivers) are found in the same text separately.

:func:`Rules.classify` runs once per failure line, so it is built for repeats: the reply is
first normalised (addresses, IP addresses and long numbers blanked), verdicts are cached by
the normalised reply, and each text pattern carries literal strings that a text must contain
before the regular expression is run at all.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from postlens.errors import UsageError

KINDS = frozenset(("deferred", "bounced", "expired", "reject"))
UNCLASSIFIED = "unclassified"
CACHE_SIZE = 20_000  # verdicts kept per cache; a full cache starts over

_ID_RE = re.compile(r"[a-z][a-z0-9_]*$")
_CODE_RE = re.compile(r"\d{1,3}$")
_DSN_PATTERN_RE = re.compile(r"[245x](?:\.(?:\d{1,3}|x)){0,2}$")
_DSN_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})$")
# A reply code (and enhanced status code) at the start of the text or after ": ", as in
# "host mx[192.0.2.1] said: 550 5.1.1 ..." and "refused to talk to me: 421-4.7.0 ...".
_SPLIT_RE = re.compile(r"(?:^|(?<=: ))(?:(\d{3})(?:[ -]|$))?(?:([245]\.\d{1,3}\.\d{1,3})(?=\s|$))?")


@dataclass(frozen=True, slots=True)
class Reason:
    id: str
    title: str
    explanation: str
    action: str


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: Reason
    provider: Provider | None  # the blocklist or receiver the reply names, if any


def split_reply(reply: str) -> tuple[str, str, str]:
    """A Postfix delivery reply -> (SMTP code, enhanced status code, the whole reply).

    Either code is "" when the reply has none ("connect to ...: Connection refused").
    """
    for m in _SPLIT_RE.finditer(reply):
        if m.group(1) or m.group(2):
            return m.group(1) or "", m.group(2) or "", reply
    return "", "", reply


# Applied in order, each only to texts that contain its third item. The verdict depends only
# on the result, which is what the cache is keyed by: what differs per recipient or per
# message must go, and what the rules look at must stay. Patterns start with a digit or a
# bracket rather than a lookbehind, which lets the regex engine skip ahead: this runs for
# every reply that is not an exact repeat.
_NORMALISE: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # continuation lines that Postfix joined: "... unusual rate of 421-4.7.28 unsolicited mail"
    (re.compile(r"\d(?<!\S\d)\d\d(?:-(?:[245]\.\d{1,3}\.\d{1,3}\s)?| [245]\.\d{1,3}\.\d{1,3}\s)"), "", ""),
    (re.compile(r"<[^<>]*>"), "<>", "<"),  # envelope addresses, HELO names
    (re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w.]*\d)"), "IP", "."),
    # IPv6 as Postfix and receivers write it: "[2001:db8::1]", "[IPv6:2001:db8::1]", "ip=2001:db8::1"
    (
        re.compile(r"([\[=](?:IPv6:)?)[\dA-Fa-f]{0,4}:[\dA-Fa-f]{0,4}:[\dA-Fa-f:]*[\dA-Fa-f](?![\w:])"),
        r"\1IP",
        ":",
    ),
    (re.compile(r"[^\s<>@\[\]:;,=()\"']+@(?=[\w-])"), "user@", "@"),
    (re.compile(r"\S+ - gsmtp\b"), "gsmtp", "gsmtp"),  # Gmail's per-message trace ID
    (re.compile(r"\d{5,}"), "N", ""),
)


def normalise(text: str) -> str:
    """The reply text that rules see (see docs/reasons.md, "What the text rules see")."""
    for pattern, replacement, needle in _NORMALISE:
        if needle in text:
            text = pattern.sub(replacement, text)
    return " ".join(text.split())


class _Text:
    """A case-insensitive regex, with the literals one of which every match must contain."""

    __slots__ = ("literals", "regex")

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern, re.IGNORECASE)
        self.literals = required_literals(pattern)

    def search(self, text: str, folded: str) -> bool:
        """``folded`` is ``text.casefold()``, computed once for all patterns."""
        if self.literals is not None and not any(lit in folded for lit in self.literals):
            return False
        return self.regex.search(text) is not None


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Lower-case strings such that every match of ``pattern`` contains one of them, or None.

    For each top-level alternative, the best of what it cannot match without: a run of plain
    characters outside groups and quantifiers, or a group that is not optional, whose own
    alternatives each need one of some strings. None when some alternative needs nothing of
    two or more characters, or the pattern uses what this reading does not follow (verbose
    mode, numeric escapes, conditionals, backreferences); the regex then runs on every text.
    """
    if "(?(" in pattern or re.search(r"\(\?[a-zA-Z-]*x|\\[xuUN0-9]", pattern):
        return None
    try:
        needs, end = _alternatives(pattern, 0)
    except _Unreadable:
        return None
    if end != len(pattern) or None in needs:
        return None
    return tuple(dict.fromkeys(lit for n in needs if n is not None for lit in n))


_Need = tuple[str, ...] | None


def _alternatives(p: str, i: int) -> tuple[list[_Need], int]:
    """What each alternative from ``p[i]`` on needs, up to the ``)`` that ends the group."""
    needs: list[_Need] = []
    options: list[tuple[str, ...]] = []  # each: one of these strings is in every match
    run: list[str] = []

    def end_run() -> None:
        if run:
            options.append(("".join(run),))
            run.clear()

    def end_alternative() -> None:
        end_run()
        usable = [o for o in options if min(map(len, o)) >= 2]
        needs.append(max(usable, key=lambda o: (min(map(len, o)), -len(o))) if usable else None)
        options.clear()

    n = len(p)
    while i < n:
        c = p[i]
        i += 1
        if c == ")":
            break
        if c == "|":
            end_alternative()
        elif c == "\\" and i < n:
            e = p[i]
            i += 1
            if e.isascii() and not e.isalnum():
                run.append(e.casefold())
            else:
                end_run()
        elif c == "[":
            end_run()
            i = _class_end(p, i)
        elif c == "(":
            end_run()
            need, i = _group(p, i)
            optional, i = _quantifier(p, i)
            if need is not None and not optional:
                options.append(need)
        elif c in "?*+{":
            _, j = _quantifier(p, i - 1)
            if j == i - 1:  # a "{" that is not a quantifier is a plain character
                run.append(c)
                continue
            i = j
            if run:
                run.pop()  # the quantified character is optional or repeated
            end_run()
        elif c.isascii() and c not in ".^$":
            run.append(c.casefold())
        else:
            end_run()
    end_alternative()
    return needs, i


class _Unreadable(Exception):
    """A construct that :func:`required_literals` does not follow."""


def _group(p: str, i: int) -> tuple[_Need, int]:
    """What the group opened before ``p[i]`` needs, and the index after its ``)``."""
    rest = p[i:]
    if rest.startswith("?#"):
        return None, p.index(")", i) + 1
    flags = re.match(r"\?[aiLmsux-]+\)", rest)
    if flags:
        return None, i + flags.end()
    lookaround = re.match(r"\?<?[=!]", rest)
    opening = lookaround or re.match(r"\?(?:P<\w+>|[aiLmsux-]*:|>)|(?!\?)", rest)
    if opening is None:
        raise _Unreadable(rest[:3])
    needs, end = _alternatives(p, i + opening.end())
    if lookaround or None in needs:
        return None, end
    return tuple(lit for n in needs if n is not None for lit in n), end


def _quantifier(p: str, i: int) -> tuple[bool, int]:
    """Whether a quantifier at ``p[i]`` allows zero repeats, and the index after it."""
    m = re.match(r"(?:[?*+]|\{(\d*)(?:,\d*)?\})[?+]?", p[i:])
    if m is None:
        return False, i
    optional = m.group(0)[0] in "?*" or (m.group(0)[0] == "{" and not int(m.group(1) or 0))
    return optional, i + m.end()


def _class_end(pattern: str, i: int) -> int:
    """The index after the ``]`` that closes the character class opened before ``i``."""
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


@dataclass(frozen=True, slots=True)
class _Rule:
    reason: Reason
    kinds: frozenset[str] | None
    codes: tuple[str, ...]  # prefixes of the SMTP code; empty: any
    dsn: re.Pattern[str] | None
    text: _Text | None
    stages: frozenset[str] | None  # a reject's stage (RCPT, header, body ...); None: any


@dataclass(frozen=True, slots=True)
class _ProviderRule:
    provider: Provider
    match: _Text
    kinds: frozenset[str] | None


_Key = tuple[str, str, str, str, str]  # kind, code, dsn, text, stage


class Rules:
    """The shipped rules, after those of a user's file."""

    def __init__(
        self, reasons: dict[str, Reason], rules: list[_Rule], providers: list[_ProviderRule]
    ) -> None:
        self._reasons = reasons
        self._rules = rules
        self._providers = providers
        self._unclassified = reasons[UNCLASSIFIED]
        self._by_reply: dict[_Key, Verdict] = {}
        self._by_normalised: dict[_Key, Verdict] = {}

    @classmethod
    def load(cls, user_file: str | None = None) -> Rules:
        """The shipped rules, with ``user_file``'s first; a bad user file is a UsageError."""
        shipped = resources.files("postlens") / "data" / "reasons.toml"
        files = [(str(shipped), _read(str(shipped), shipped.read_bytes()))]
        if user_file:
            try:
                with open(user_file, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise UsageError(f"rules {user_file}: {e.strerror or e}") from e
            files.insert(0, (user_file, _read(user_file, data)))
        return _build(files)

    def reasons(self) -> list[Reason]:
        """Every reason, in file order (a user file's new reasons last), with "unclassified"."""
        return list(self._reasons.values())

    def classify(self, kind: str, code: str, dsn: str, text: str, stage: str = "") -> Verdict:
        """The reason for one reply; a ``code`` or ``dsn`` that is "" is looked for in ``text``.
        ``stage`` is a reject's: where in the transaction, or which content check."""
        key = (kind, code, dsn, text, stage)
        verdict = self._by_reply.get(key)
        if verdict is not None:
            return verdict
        if not code or not dsn:
            found_code, found_dsn, _ = split_reply(text)
            code = code or found_code
            dsn = dsn or found_dsn
        norm = normalise(text)
        nkey = (kind, code, dsn, norm, stage)
        verdict = self._by_normalised.get(nkey)
        if verdict is None:
            verdict = self._decide(kind, code, dsn, norm, stage)
            _remember(self._by_normalised, nkey, verdict)
        _remember(self._by_reply, key, verdict)
        return verdict

    def _decide(self, kind: str, code: str, dsn: str, text: str, stage: str) -> Verdict:
        folded = text.casefold()
        reason = self._unclassified
        for rule in self._rules:
            if rule.kinds is not None and kind not in rule.kinds:
                continue
            if rule.codes and not code.startswith(rule.codes):
                continue
            if rule.dsn is not None and rule.dsn.match(dsn) is None:
                continue
            if rule.stages is not None and stage not in rule.stages:
                continue
            if rule.text is not None and not rule.text.search(text, folded):
                continue
            reason = rule.reason
            break
        for p in self._providers:
            if (p.kinds is None or kind in p.kinds) and p.match.search(text, folded):
                return Verdict(reason, p.provider)
        return Verdict(reason, None)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rules travel to worker processes and back with the analyses: the caches stay behind.
        return (Rules, (self._reasons, self._rules, self._providers))


def _remember(cache: dict[_Key, Verdict], key: _Key, verdict: Verdict) -> None:
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = verdict


def _read(path: str, data: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(f"rules {path}: not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"rules {path}: not valid TOML: {e}") from e


_TOP_KEYS = {"reasons", "rules", "providers"}
_REASON_KEYS = ("title", "explanation", "action")
_RULE_KEYS = {"reason", "kind", "code", "dsn", "text", "stage"}
_PROVIDER_KEYS = ("name", "url")  # besides match (a regex or a list) and kind (optional)


def _build(files: list[tuple[str, dict[str, Any]]]) -> Rules:
    """Rules from parsed files, the first file's rules and providers tried first.

    Reasons keep the shipped order; a user's reason with a shipped id overrides the fields it
    gives, and a new reason needs them all.
    """
    reason_fields: dict[str, dict[str, str]] = {}
    provider_fields: dict[str, dict[str, str]] = {}
    provider_match: dict[str, _Text] = {}
    provider_kinds: dict[str, frozenset[str] | None] = {}
    for path, data in reversed(files):  # shipped first, so a user's file overrides
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise UsageError(f"rules {path}: unknown table {sorted(unknown)[0]!r}")
        for rid, fields in _tables(path, data, "reasons").items():
            if not _ID_RE.match(rid):
                raise UsageError(f"rules {path}: reason id {rid!r} is not lower-case snake_case")
            what = f"reason {rid!r}"
            reason_fields[rid] = _fields(path, what, fields, _REASON_KEYS, reason_fields.get(rid))
        for pid, fields in _tables(path, data, "providers").items():
            what = f"provider {pid!r}"
            fields = dict(fields)
            match = fields.pop("match", None)
            if "kind" in fields:
                provider_kinds[pid] = _kinds(path, what, fields.pop("kind"))
            f = provider_fields[pid] = _fields(path, what, fields, _PROVIDER_KEYS, provider_fields.get(pid))
            if not re.match(r"https?://\S+$", f["url"]):
                raise UsageError(f"rules {path}: {what}: url is not a web address")
            if match is not None:
                provider_match[pid] = _pattern(path, what, _strings(path, what, "match", match))
            elif pid not in provider_match:
                raise UsageError(f"rules {path}: {what}: match is missing")
    if UNCLASSIFIED not in reason_fields:
        raise UsageError(f"rules {files[-1][0]}: no reason {UNCLASSIFIED!r}")
    reasons = {rid: Reason(rid, **f) for rid, f in reason_fields.items()}
    order = dict.fromkeys(pid for path, data in files for pid in _tables(path, data, "providers"))
    providers = [
        _ProviderRule(Provider(provider_fields[p]["name"], provider_fields[p]["url"]), provider_match[p],
                      provider_kinds.get(p))
        for p in order
    ]  # fmt: skip
    rules = [rule for path, data in files for rule in _rules(path, data, reasons)]
    return Rules(reasons, rules, providers)


def _tables(path: str, data: dict[str, Any], name: str) -> dict[str, Any]:
    tables = data.get(name, {})
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise UsageError(f"rules {path}: [{name}] must hold tables ([{name}.ID])")
    return tables


def _fields(path: str, what: str, fields: dict[str, Any], keys: tuple[str, ...],
            base: dict[str, str] | None) -> dict[str, str]:  # fmt: skip
    for key, value in fields.items():
        if key not in keys:
            raise UsageError(f"rules {path}: {what}: unknown key {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"rules {path}: {what}: {key} must be a non-empty string")
    merged = {**(base or {}), **fields}
    missing = [k for k in keys if k not in merged]
    if missing:
        raise UsageError(f"rules {path}: {what}: {missing[0]} is missing")
    return merged


def _rules(path: str, data: dict[str, Any], reasons: dict[str, Reason]) -> Iterable[_Rule]:
    rules = data.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise UsageError(f"rules {path}: rules must be an array of tables ([[rules]])")
    for number, rule in enumerate(rules, 1):
        what = f"rule {number}"
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise UsageError(f"rules {path}: {what}: unknown key {sorted(unknown)[0]!r}")
        rid = rule.get("reason")
        if not isinstance(rid, str) or rid not in reasons:
            raise UsageError(f"rules {path}: {what}: reason {rid!r} is not defined")
        if len(rule) == 1:
            raise UsageError(f"rules {path}: {what}: needs a kind, code, dsn, text or stage to match")
        codes = _strings(path, what, "code", rule.get("code"))
        bad = [c for c in codes if not _CODE_RE.match(c)]
        if bad:
            raise UsageError(f"rules {path}: {what}: code {bad[0]!r} is not 1 to 3 digits")
        dsns = _strings(path, what, "dsn", rule.get("dsn"))
        bad = [d for d in dsns if not _DSN_PATTERN_RE.match(d)]
        if bad:
            raise UsageError(f"rules {path}: {what}: dsn {bad[0]!r} is not like 5.1.1, x.7.26, 5.7 or 4")
        texts = _strings(path, what, "text", rule.get("text"))
        stages = _strings(path, what, "stage", rule.get("stage"))
        yield _Rule(
            reasons[rid],
            _kinds(path, what, rule.get("kind")),
            tuple(codes),
            _dsn_regex(dsns) if dsns else None,
            _pattern(path, what, texts) if texts else None,
            frozenset(stages) if stages else None,
        )


def _kinds(path: str, what: str, value: Any) -> frozenset[str] | None:
    kinds = _strings(path, what, "kind", value)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise UsageError(f"rules {path}: {what}: kind {bad[0]!r} is not one of {', '.join(sorted(KINDS))}")
    return frozenset(kinds) if kinds else None


def _strings(path: str, what: str, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise UsageError(f"rules {path}: {what}: {key} must be a string or a list of strings")
    return values


def _dsn_regex(patterns: list[str]) -> re.Pattern[str]:
    """``x.7.26``, ``5.7`` (any detail), ``4`` (any subject) -> one anchored regex."""
    alternatives = []
    for p in patterns:
        cls, *rest = p.split(".")
        parts = ["[245]" if cls == "x" else cls] + [r"\d{1,3}" if x == "x" else x for x in rest]
        parts += [r"\d{1,3}"] * (3 - len(parts))
        alternatives.append(r"\.".join(parts))
    return re.compile("(?:" + "|".join(alternatives) + ")$")


def _pattern(path: str, what: str, alternatives: list[str]) -> _Text:
    """One regex from a list of alternatives (a list keeps long patterns readable in TOML)."""
    for pattern in [*alternatives, "|".join(alternatives)]:  # the whole too: "(?i)" must lead
        try:
            re.compile(pattern)
        except re.error as e:
            raise UsageError(f"rules {path}: {what}: bad regular expression {pattern!r}: {e}") from e
    return _Text("|".join(alternatives))


@cache
def _status_words() -> dict[str, dict[str, str]]:
    data = (resources.files("postlens") / "data" / "enhanced_status.toml").read_bytes()
    return tomllib.loads(data.decode("utf-8"))


def describe_status(dsn: str) -> str:
    """``5.1.1`` -> "permanent failure: bad destination mailbox address" (RFC 3463 and later).

    An unknown detail still gives the class and the subject's words; "" when ``dsn`` is not
    an enhanced status code at all.
    """
    m = _DSN_RE.match(dsn.strip())
    if m is None:
        return ""
    cls, subject, detail = m.groups()
    words = _status_words()
    meaning = words["detail"].get(f"{int(subject)}.{int(detail)}") or words["subject"].get(str(int(subject)))
    return f"{words['class'][cls]}: {meaning}" if meaning else words["class"][cls]
