"""Redaction of secrets in command lines, URLs and text before anything leaves the agent.

Rules are deliberately greedy: a false positive costs a `***` in a log line, a false negative
leaks a credential off the node. Two layers, each a table of named rules with one test case or
more in tests/agent/redaction/cases.yaml (`RULES` lists the names; the test checks each has one):

- generic rules on any string (`redact_text`): secret-named flags with `=`, URL userinfo of any
  scheme (`user:pw@`, and a token alone `https://TOKEN@` outside the ssh family), `user:pw@host`
  with no scheme, signed-URL query parameters (`sig=`, `X-Amz-Signature=` ...),
  `Authorization:`/`Bearer`/`Basic` values, `Cookie:`/`Set-Cookie:`/`X-Vault-Token:`-style headers,
  JSON and YAML snippets with secret keys, quoted assignments in code (`password = 'x'`,
  `os.environ['PGPASSWORD']='x'`), `KEY=value` / `key: value` where the key names a secret;
- argv rules (`redact_argv`): the value after a lone secret-named flag, `set <secret-key> VALUE`,
  the per-client options of agent/redaction/clients.py (`redis-cli -a`, `mysql -pX`, `curl -u u:p`,
  `sshpass -p`, `curl -E cert:pw`, `openssl -k`, `vault login TOKEN`, `mc alias set ... SECRET`),
  the argument after an AWS access key id, `echo X | ... --password-stdin`, and the command string
  of `sh -c`/`bash -c`, redacted as a command line of its own and put back in place (then the
  text rules once more on the whole line).

Free text: an argument with white space that no rule above claimed (`/bin/echo "curl -u a:b ..."`,
a message, a here-document line) is redacted as a command line too (rule `free-text`), so a client
command line quoted inside it is masked as if it had been run.

Cut arguments: the process probe keeps `ARG_LEN - 1` bytes of each argument (probes/process.py:
`ARG_LEN` = 64, so 63 bytes; at most `ARGS_MAX` = 16 arguments). With `arg_capacity`, an argument
that filled that buffer may have been cut inside a secret: besides the rules above, its last word,
when it has the shape `user:secret` with nothing after it (rule `truncated-tail`), is masked, and
the argument is marked cut with a trailing `…` (`CUT_MARK`).

Idempotent: redacting redacted text changes nothing (the evidence export relies on it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import PurePosixPath

from agent.redaction.clients import Client, client_for

MASK = "***"
#: appended to an argument the probe cut at its buffer's size (see the module doc)
CUT_MARK = "…"

#: every rule's name, for the case-list test: each must have at least one case
RULES = (
    "flag-equals", "flag-separate", "url-userinfo", "auth-header", "json-secret", "key-value", "set-secret-key",
    "truncated-url", "shell-c", "url-token", "url-userinfo-bare", "quoted-assignment", "cookie-header",
    "signed-url", "aws-key-pair", "stdin-pipe",
    "redis-cli", "mysql", "psql", "curl", "wget", "sshpass", "ssh-keygen", "htpasswd", "kubectl", "helm", "aws",
    "gcloud", "az", "docker-login", "git", "curl-cert", "openssl", "mongosh", "vault", "mc", "xfreerdp",
    "ldap", "sqlcmd", "zip", "7z", "mosquitto", "smbclient", "lftp", "rabbitmqctl",
    "free-text", "truncated-tail",
)

_SECRET_WORD = r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|" \
    r"private[_-]?key|credentials?|auth(?:orization)?|session[_-]?key|client[_-]?secret|requirepass|masterauth)"
# options that name a secret but take a file, a prompt or stdin instead of the value
# (or name what kind of secret: mongosh --authenticationDatabase admin, --auth-type basic)
_NOT_A_VALUE = re.compile(r"(?:[-_](?:file|stdin|prompt|env|command|cmd)|^--no-[\w-]*|^--ask[\w-]*"
                          r"|[-_]?(?:database|mechanism|method|type))$", re.I)
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
# (closing brackets right before the value's end stay: `{password: x}` -> `{password: ***}`)
_KEY_VALUE = re.compile(
    rf"(?P<key>\b[\w.-]*{_SECRET_WORD}[\w.-]*)(?P<sep>\s*[=:]\s*)(?!(?:bearer|basic|token)\s)(?!\*\*\*)"
    r"(?P<value>[^\s&;,'\"]+?)(?=[)}\]]*(?:[\s&;,'\"]|$))", re.I)
# password='x' / password = "x" / os.environ['PGPASSWORD']='x' / token: "x" (code, YAML, shell): the
# whole quoted value, to its closing quote or the end of a cut argument
_QUOTED_ASSIGNMENT = re.compile(
    rf"""(?P<key>\b[\w.-]*{_SECRET_WORD}[\w.-]*(?:["']\])?\s*[=:]\s*)(?P<q>["'])(?P<value>(?:(?!(?P=q)).)*)(?P<end>(?P=q)?)""",
    re.I)
# scheme://TOKEN@host (a token or user alone: git's https://<token>@github.com form). ssh-family
# URLs are left alone: there the user part names an account and cannot carry a password.
_URL_TOKEN = re.compile(r"(?P<scheme>\b(?P<name>[a-z][a-z0-9+.-]*)://)(?!\*\*\*@)(?P<token>[^:/@\s?#]+)@", re.I)
_USER_ONLY_SCHEMES = frozenset({"ssh", "sftp", "scp", "git+ssh", "ssh+git", "rsync"})
# user:password@host[:port][/...] as a whole argument with no scheme (`mysqlsh root:pw@db:3306`);
# `image:tag@sha256:...` is a digest, not a password, and has no such host part
_BARE_USERINFO = re.compile(r"^(?P<user>[\w.+-]+):(?!\*\*\*@)(?P<pw>[^@\s/:]+)@(?P<host>[a-z0-9][\w.-]*)(?::\d+)?(?:/\S*)?$", re.I)
# Cookie: a=b / Set-Cookie: a=b / X-Vault-Token: x / PRIVATE-TOKEN: x ... : the whole header value
_CREDENTIAL_HEADER = re.compile(
    r"(?P<name>\b(?:cookie|set-cookie|x-vault-token|private-token|x-auth-token|x-amz-security-token|x-csrf-token"
    r"|x-goog-api-key|ocp-apim-subscription-key|x-functions-key)\s*:\s*)(?!\*\*\*)(?P<value>\S[^\r\n]*)", re.I)
# signed URLs: ?sig= (Azure SAS), X-Amz-Signature / X-Amz-Security-Token (AWS SigV4 presigned),
# X-Goog-Signature (GCS), signature=, key= (Google API keys), code= (OAuth authorization code)
_SIGNED_QUERY = re.compile(
    r"(?P<name>[?&](?:sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature|x-goog-credential"
    r"|key|code|password|pwd)=)(?!\*\*\*)(?P<value>[^&#\s'\"]+)", re.I)
# scheme://user:pass@host -> scheme://user:***@host (any scheme: postgres, redis, amqp, s3, git+https...)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
# Authorization: Bearer x / Basic x / token x
_AUTH_HEADER = re.compile(r"(?P<kind>\b(?:bearer|basic|token)\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})", re.I)
# A truncated URL that never reached its '@' may still hold a password: drop everything after ://
_TRUNCATED_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<rest>[^@\s]*:[^@\s]*)$", re.I)

# AKIA... / ASIA...: an AWS access key id (IAM user guide, "Understanding access key IDs");
# the argument after one is its secret access key
_AWS_KEY_ID = re.compile(r"^(?:AKIA|ASIA)[A-Z0-9]{16}$")
# docker login --password-stdin, gh auth login --with-token, vault ... - (the pipe carries it)
_STDIN_SECRET = re.compile(rf"^--?[\w-]*(?:{_SECRET_WORD})[\w-]*-stdin$|^--with-token$", re.I)

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "mksh"})
_SHELL_C = re.compile(r"^-[a-z]*c[a-z]*$")  # -c, -ec, -lc, -xec ...
_MAX_NESTING = 3
# the last word of a cut argument shaped `user:secret` (`... curl -u admin:S3cr`, `--creds=a:b`):
# what follows the cut is unknown, so it may be a password; a port (`host:5432`) is left alone
_CUT_USERPASS_TAIL = re.compile(r"(?P<user>[^\s:/@]+):(?!\*\*\*$)(?P<secret>(?!\d+$)[^\s/@]+)$")


def _json_value(m: re.Match[str]) -> str:
    v = m.group("value")
    if v == MASK or v in (f'"{MASK}"', f"'{MASK}'"):
        return m.group(0)
    q = v[0] if v[:1] in ("'", '"') else ""
    return f"{m.group('key')}{q}{MASK}{q}"


def _url_token(m: re.Match[str]) -> str:
    if m.group("name").lower() in _USER_ONLY_SCHEMES:
        return m.group(0)
    return f"{m.group('scheme')}{MASK}@"


def _quoted_value(m: re.Match[str]) -> str:
    if m.group("value") == MASK:
        return m.group(0)
    return f"{m.group('key')}{m.group('q')}{MASK}{m.group('end')}"


def redact_text(text: str, truncated: bool = False) -> str:
    """Mask secrets inside one string (an argument, a log message, a URL, a JSON snippet)."""
    m = _FLAG.match(text)
    if m and not _NOT_A_VALUE.search(m.group("flag")):
        return f"{m.group('flag')}={MASK}"
    out = _text_rules(text)
    if truncated:
        out = _TRUNCATED_URL.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    return out


def _text_rules(text: str) -> str:
    """The rules that apply anywhere inside a string (all but the whole-argument `--flag=`)."""
    m = _BARE_USERINFO.match(text)
    if m:
        text = f"{m.group('user')}:{MASK}@{text[m.end('pw') + 1:]}"
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    out = _URL_TOKEN.sub(_url_token, out)
    out = _SIGNED_QUERY.sub(lambda m: f"{m.group('name')}{MASK}", out)
    out = _CREDENTIAL_HEADER.sub(lambda m: f"{m.group('name')}{MASK}", out)
    out = _AUTH_HEADER.sub(lambda m: m.group(0) if m.group("value") == MASK else f"{m.group('kind')}{MASK}", out)
    out = _JSON_PAIR.sub(_json_value, out)
    out = _QUOTED_ASSIGNMENT.sub(_quoted_value, out)
    return _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", out)


def _mask_value(kind: str, value: str) -> str:
    if kind.startswith("userpass"):  # user:password -> user:***; a lone user name stays (curl then prompts)
        user, sep, pw = value.partition(kind[len("userpass"):] or ":")  # smbclient user%pw, lftp user,pw
        return f"{user}{sep}{MASK}" if sep and pw else value
    if kind == "literal":  # name=value -> name=***
        name, sep, _ = value.partition("=")
        return f"{name}={MASK}" if sep else MASK
    return MASK


def _client_option(client: Client, arg: str) -> tuple[str, str] | None:
    """(kind, masked arg) when `arg` carries its secret itself (`--opt=v`, `-pv`); (kind, "") when
    it is an option whose value is the next argument; None otherwise."""
    kinds = (("value", client.value), ("userpass" + client.userpass_sep, client.userpass), ("literal", client.literal))
    for kind, opts in kinds:
        if arg in opts:
            return kind, ""
        name, eq, value = arg.partition("=")
        if eq and name in opts and name.startswith("--"):
            return kind, f"{name}={_mask_value(kind, value)}"
        for opt in opts:
            if client.joined and len(opt) == 2 and arg.startswith(opt) and len(arg) > 2 and not arg.startswith("--"):
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
    words: list[str] = []   # the client's positional arguments so far (vault login TOKEN)
    piped = _piped_secrets(argv)
    for i, arg in enumerate(argv):
        if i in piped:
            out.append(MASK)
            continue
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
            client, batch, words = named, False, []
            out.append(arg)
            continue
        if i > 0 and _AWS_KEY_ID.match(argv[i - 1]) and not arg.startswith("-"):
            out.append(MASK)  # an access key id's secret access key follows it
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
            if client.positional and not arg.startswith("-"):
                secret = "=" not in arg and _is_positional_secret(client, words)
                words.append(arg.lower())
                if secret:
                    out.append(MASK)
                    continue
        if _FLAG_ALONE.match(arg) and not _NOT_A_VALUE.search(arg):
            out.append(arg)
            pending = "value"
            continue
        if _SECRET_KEY_WORD.match(arg) and i > 0 and argv[i - 1].lower() == "set" and i + 1 < len(argv):
            out.append(arg)
            pending = "value"
            continue
        if any(c.isspace() for c in arg) and not _FLAG.match(arg) and _depth < _MAX_NESTING:
            out.append(redact_command_line(arg, cut, _depth + 1))  # free text: a command line inside it too
            continue
        out.append(redact_text(arg, truncated=cut))
    if batch and len(out) > 1 and not argv[-1].startswith("-"):
        out[-1] = MASK  # htpasswd -b[...] [file] user PASSWORD
    if arg_capacity is not None:
        out = [_cut_tail(a) if len(argv[i].encode()) >= arg_capacity - 1 else a for i, a in enumerate(out)]
    return out


def _cut_tail(arg: str) -> str:
    """A redacted argument the probe cut: its `user:secret`-shaped last word masked, `CUT_MARK` added."""
    body = arg.removesuffix(CUT_MARK)
    body = _CUT_USERPASS_TAIL.sub(lambda m: f"{m.group('user')}:{MASK}", body)
    return body + CUT_MARK


def _is_positional_secret(client: Client, words: list[str]) -> bool:
    return any(tuple(words[:len(path)]) == path and len(words) - len(path) in positions
               for path, positions in client.positional)


def _piped_secrets(argv: Sequence[str]) -> set[int]:
    """Indexes of `echo`/`printf` arguments piped into a `--*-stdin` secret option
    (`echo S3cret | docker login --password-stdin`), and of the word a here-string feeds it
    (`docker login --password-stdin <<< S3cret`): the shell's tokens of a `sh -c` line."""
    out: set[int] = set()
    if any(_STDIN_SECRET.match(t) for t in argv):
        out.update(i + 1 for i, t in enumerate(argv[:-1]) if t == "<<<")
    if "|" not in argv:
        return out
    start = 0
    for i, tok in enumerate(list(argv) + ["|"]):
        if tok != "|":
            continue
        nxt = [t for t in argv[i + 1:]]
        stop = next((j for j, t in enumerate(nxt) if t in ("|", ";", "&&", "||", "&")), len(nxt))
        if start < i and PurePosixPath(argv[start]).name in ("echo", "printf") and \
                any(_STDIN_SECRET.match(t) for t in nxt[:stop]):
            out.update(j for j in range(start + 1, i) if not argv[j].startswith("-"))
        start = i + 1
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
    for before, after in zip(tokens, redacted, strict=True):
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
    # the text rules once more on the whole line: the shell's splitting cuts `{password: x}` and
    # `os.environ['PGPASSWORD']='x'` (whose quotes it removes) apart from their values
    out = _text_rules(out)
    if truncated:
        out = _TRUNCATED_URL.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    return out
