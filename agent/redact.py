"""Redaction of secrets in command lines, URLs and text before anything leaves the agent.

Rules are deliberately greedy: a false positive costs a `***` in a log line, a false negative
leaks a credential off the node. Two layers, each a table of named rules with one test case or
more in tests/agent/redaction/cases.yaml (`RULES` lists the names; the test checks each has one):

- generic rules on any string (`redact_text`): secret-named flags with `=`, URL userinfo of any
  scheme, `Authorization:`/`Bearer`/`Basic` values, JSON and YAML snippets with secret keys,
  `KEY=value` / `key: value` where the key names a secret;
- argv rules (`redact_argv`): the value after a lone secret-named flag, `set <secret-key> VALUE`,
  the per-client options of agent/redact_clients.py (`redis-cli -a`, `mysql -pX`, `curl -u u:p`,
  `sshpass -p`, ...), and the command string of `sh -c`/`bash -c`, redacted as a command line of
  its own and put back in place.

Idempotent: redacting redacted text changes nothing (the evidence export relies on it).
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath
from typing import Sequence

from agent.redact_clients import Client, client_for

MASK = "***"

#: every rule's name, for the case-list test: each must have at least one case
RULES = (
    "flag-equals", "flag-separate", "url-userinfo", "auth-header", "json-secret", "key-value", "set-secret-key",
    "truncated-url", "shell-c",
    "redis-cli", "mysql", "psql", "curl", "wget", "sshpass", "ssh-keygen", "htpasswd", "kubectl", "helm", "aws",
    "gcloud", "az", "docker-login", "git",
)

_SECRET_WORD = r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|" \
    r"private[_-]?key|credentials?|auth(?:orization)?|session[_-]?key|client[_-]?secret|requirepass|masterauth)"
# options that name a secret but take a file, a prompt or stdin instead of the value
_NOT_A_VALUE = re.compile(r"(?:[-_](?:file|stdin|prompt|env|command|cmd)|^--no-[\w-]*|^--ask[\w-]*)$", re.I)
# --password VALUE / --db-password=VALUE / -token=VALUE
_FLAG = re.compile(rf"^(?P<flag>--?[\w.-]*{_SECRET_WORD}[\w.-]*)(?P<eq>=)(?P<value>.*)$", re.I)
_FLAG_ALONE = re.compile(rf"^--?[\w.-]*{_SECRET_WORD}[\w.-]*$", re.I)
# aws configure set aws_secret_access_key VALUE / redis CONFIG SET requirepass VALUE
_SECRET_KEY_WORD = re.compile(rf"^[\w.-]*{_SECRET_WORD}[\w.-]*$", re.I)
# "password": "x" / 'token': 'x' / "api_key": 12345  (JSON, Python and YAML flow mappings)
_JSON_PAIR = re.compile(
    rf"""(?P<key>(?P<q>["'])[\w.-]*{_SECRET_WORD}[\w.-]*(?P=q)\s*:\s*)(?P<value>"(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s,}}\]]+)""",
    re.I)
# FOO_PASSWORD=x, PGPASSWORD=x, aws_secret_access_key=x, `password=x` in a DSN, `password: x` in YAML
_KEY_VALUE = re.compile(rf"(?P<key>\b[\w.-]*{_SECRET_WORD}[\w.-]*)(?P<sep>\s*[=:]\s*)(?!(?:bearer|basic|token)\s)(?!\*\*\*)(?P<value>[^\s&;,'\"]+)", re.I)
# scheme://user:pass@host -> scheme://user:***@host (any scheme: postgres, redis, amqp, s3, git+https...)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
# Authorization: Bearer x / Basic x / token x
_AUTH_HEADER = re.compile(r"(?P<kind>\b(?:bearer|basic|token)\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})", re.I)
# A truncated URL that never reached its '@' may still hold a password: drop everything after ://
_TRUNCATED_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<rest>[^@\s]*:[^@\s]*)$", re.I)

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "mksh"})
_SHELL_C = re.compile(r"^-[a-z]*c[a-z]*$")  # -c, -ec, -lc, -xec ...
_MAX_NESTING = 3


def _json_value(m: re.Match[str]) -> str:
    v = m.group("value")
    if v == MASK or v in (f'"{MASK}"', f"'{MASK}'"):
        return m.group(0)
    q = v[0] if v[:1] in ("'", '"') else ""
    return f"{m.group('key')}{q}{MASK}{q}"


def redact_text(text: str, truncated: bool = False) -> str:
    """Mask secrets inside one string (an argument, a log message, a URL, a JSON snippet)."""
    m = _FLAG.match(text)
    if m and not _NOT_A_VALUE.search(m.group("flag")):
        return f"{m.group('flag')}={MASK}"
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    out = _AUTH_HEADER.sub(lambda m: m.group(0) if m.group("value") == MASK else f"{m.group('kind')}{MASK}", out)
    out = _JSON_PAIR.sub(_json_value, out)
    out = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", out)
    if truncated:
        out = _TRUNCATED_URL.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    return out


def _mask_value(kind: str, value: str) -> str:
    if kind == "userpass":  # user:password -> user:***; a lone user name stays (curl then prompts)
        user, sep, pw = value.partition(":")
        return f"{user}:{MASK}" if sep and pw else value
    if kind == "literal":  # name=value -> name=***
        name, sep, _ = value.partition("=")
        return f"{name}={MASK}" if sep else MASK
    return MASK


def _client_option(client: Client, arg: str) -> tuple[str, str] | None:
    """(kind, masked arg) when `arg` carries its secret itself (`--opt=v`, `-pv`); (kind, "") when
    it is an option whose value is the next argument; None otherwise."""
    kinds = (("value", client.value), ("userpass", client.userpass), ("literal", client.literal))
    for kind, opts in kinds:
        if arg in opts:
            return kind, ""
        name, eq, value = arg.partition("=")
        if eq and name in opts and name.startswith("--"):
            return kind, f"{name}={_mask_value(kind, value)}"
        for opt in opts:
            if len(opt) == 2 and arg.startswith(opt) and len(arg) > 2 and not arg.startswith("--"):
                return kind, opt + _mask_value(kind, arg[2:])
    for opt in client.joined_only:
        if arg.startswith(opt) and len(arg) > len(opt) and not arg.startswith("--"):
            return "value", opt + MASK
    return None


def redact_argv(argv: Sequence[str], arg_capacity: int | None = None, _depth: int = 0) -> list[str]:
    """Mask secret values in an argv (see the module doc for the rules).

    `arg_capacity` is the probe's per-argument buffer; an argument that filled it may have been
    cut inside a secret, so it is redacted more strictly.
    """
    out: list[str] = []
    pending = ""            # the kind of secret the next argument is
    client: Client | None = None
    shell = False           # a shell is the program: its -c argument is a command line
    auth = False            # every argument from here on is a secret (redis-cli AUTH ...)
    batch = False
    for i, arg in enumerate(argv):
        if pending:
            out.append(_mask_value(pending, arg))
            pending = ""
            continue
        if auth:
            out.append(MASK)
            continue
        cut = arg_capacity is not None and len(arg.encode()) >= arg_capacity - 1
        named = client_for(arg) if not arg.startswith("-") else None
        if named is not None:
            client, batch = named, False
            out.append(arg)
            continue
        if not arg.startswith("-") and PurePosixPath(arg).name in _SHELLS:
            shell = True
            out.append(arg)
            continue
        if shell and i > 0 and _SHELL_C.match(argv[i - 1]) and _depth < _MAX_NESTING:
            out.append(redact_command_line(arg, cut, _depth + 1))
            continue
        if client is not None:
            hit = _client_option(client, arg)
            if hit is not None:
                kind, masked = hit
                if masked:
                    out.append(masked)
                else:
                    out.append(arg)
                    pending = kind
                continue
            if client.batch_flag and arg.startswith("-") and not arg.startswith("--") and client.batch_flag in arg[1:]:
                batch = True
            if client.auth_words and arg.lower() in client.auth_words:
                auth = True
                out.append(arg)
                continue
        if _FLAG_ALONE.match(arg) and not _NOT_A_VALUE.search(arg):
            out.append(arg)
            pending = "value"
            continue
        if _SECRET_KEY_WORD.match(arg) and i > 0 and argv[i - 1].lower() == "set" and i + 1 < len(argv):
            out.append(arg)
            pending = "value"
            continue
        out.append(redact_text(arg, truncated=cut))
    if batch and len(out) > 1 and not argv[-1].startswith("-"):
        out[-1] = MASK  # htpasswd -b[...] [file] user PASSWORD
    return out


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _changed_part(before: str, after: str) -> str:
    """The substring of `before` that redaction replaced (common prefix and suffix removed)."""
    p = 0
    while p < min(len(before), len(after)) and before[p] == after[p]:
        p += 1
    s = 0
    while s < min(len(before), len(after)) - p and before[-1 - s] == after[-1 - s]:
        s += 1
    return before[p:len(before) - s]


def redact_command_line(command: str, truncated: bool = False, _depth: int = 1) -> str:
    """Mask secrets in a shell command string (the argument of `sh -c`), keeping its text and
    quoting: it is split the way the shell would split it, redacted as an argv, and each masked
    part replaced where it stands. A string that cannot be split (cut by the probe mid-quote)
    is split on white space instead."""
    try:
        tokens = _tokens(command)
    except ValueError:
        tokens = command.split()
    redacted = redact_argv(tokens, None, _depth)
    out, cursor = command, 0
    for before, after in zip(tokens, redacted):
        if before == after:
            at = out.find(before, cursor)
            if at >= 0:
                cursor = at + len(before)
            continue
        secret = _changed_part(before, after)
        at = out.find(secret, cursor) if secret else -1
        if at < 0:  # quoting or escapes hide it: give up the original spelling, not the secret
            return " ".join(shlex.quote(t) for t in redacted)
        out = out[:at] + MASK + out[at + len(secret):]
        cursor = at + len(MASK)
    if truncated:
        out = _TRUNCATED_URL.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    return out
