"""The rule table for command-line clients that take a secret as an option value.

One `Client` per program family: which options carry a secret and in what form. The option
spellings are the clients' own (man pages and reference docs; the source of each is recorded next
to its test case in tests/agent/redaction/cases.yaml). Generic rules (any `--*password*` flag,
`KEY=value`, URLs, headers, JSON/YAML, `sh -c`) live in agent/redaction/redact.py and apply to every
command; this table adds what only the client's name can tell: `-a S3cret` is a password for
redis-cli and an address for many others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Client:
    """Secret-carrying options of one client.

    - `value`: options whose value (next argument, `--opt=value`, or joined `-pvalue` for a short
      one) is a secret.
    - `joined_only`: short options whose value counts only when joined (`mysql -pS3cret`; a lone
      `-p` prompts and the next argument is the database).
    - `userpass`: options whose value is `user:password`; only the part after the first colon is
      masked.
    - `literal`: options whose value is `name=value` with a secret value (`--from-literal`).
    - `batch_flag`: a short option letter that makes the last argument a password (`htpasswd -b`).
    - `auth_words`: positional words after which every remaining argument is a secret
      (`redis-cli AUTH user pass`).
    - `userpass_sep`: what separates user and password in a `userpass` value (`:`; smbclient `%`,
      lftp `,`).
    - `joined`: whether a short option may carry its value joined (`-pS3cret`); openssl's options
      are words (`-k` and `-kfile` differ), so for it a prefix is not a value.
    - `positional`: (subcommand words, positions) pairs: after those positional words, the
      positional arguments at these 0-based positions are secrets (`mc alias set NAME URL ACCESS
      SECRET`: 3); options (`-x`) are not counted. `KEY=value` arguments never count as one (they
      are `vault login -method=userpass password=x`, handled by the generic rule).
    """

    rule: str
    value: frozenset[str] = frozenset()
    joined_only: frozenset[str] = frozenset()
    userpass: frozenset[str] = frozenset()
    literal: frozenset[str] = frozenset()
    batch_flag: str = ""
    auth_words: frozenset[str] = frozenset()
    joined: bool = True
    userpass_sep: str = ":"
    positional: tuple[tuple[tuple[str, ...], frozenset[int]], ...] = ()


def _c(rule: str, **kw: object) -> Client:
    return Client(rule, **{k: (frozenset(v) if isinstance(v, (set, list)) else v) for k, v in kw.items()})  # type: ignore[arg-type]


_REDIS = _c("redis-cli", value={"-a", "--pass"}, auth_words={"auth"})
_MYSQL = _c("mysql", value={"--password"}, joined_only={"-p"})
_LDAP = _c("ldap", value={"-w"})  # -W prompts, -y reads a file
_ZIP = _c("zip", value={"-P", "--password"})
_7Z = _c("7z", joined_only={"-p"})  # -p alone prompts
_MQTT = _c("mosquitto", value={"-P", "--pw"})
_MONGO = _c("mongosh", value={"-p", "--password"})
_RDP = _c("xfreerdp", joined_only={"/p:", "/gp:", "/pth:"})
_DOCKER = _c("docker-login", value={"-p", "--password"}, userpass={"--creds", "--src-creds", "--dest-creds"})

#: program basename -> its rule
CLIENTS: dict[str, Client] = {
    "redis-cli": _REDIS, "redis-benchmark": _REDIS, "valkey-cli": _REDIS,
    **{name: _MYSQL for name in ("mysql", "mariadb", "mysqldump", "mariadb-dump", "mysqladmin", "mariadb-admin",
                                 "mysqlimport", "mysqlshow", "mysqlcheck", "mysqlslap")},
    "psql": _c("psql", value={"--password"}),  # takes no value; `password=` and URLs carry it (generic)
    "pg_dump": _c("psql", value={"--password"}),
    "curl": _c("curl", value={"--oauth2-bearer", "--pass", "--proxy-pass", "--tlspassword", "--proxy-tlspassword"},
               userpass={"-u", "--user", "-U", "--proxy-user", "-E", "--cert", "--proxy-cert"}),  # cert[:password]
    "wget": _c("wget", value={"--password", "--http-password", "--ftp-password", "--proxy-password"}),
    "sshpass": _c("sshpass", value={"-p"}),
    "ssh-keygen": _c("ssh-keygen", value={"-N", "-P"}),
    "htpasswd": _c("htpasswd", batch_flag="b"),
    "kubectl": _c("kubectl", value={"--token", "--password", "--docker-password"}, literal={"--from-literal"}),
    "helm": _c("helm", value={"-p", "--password"}),
    "aws": _c("aws", value={"--secret-access-key", "--session-token"}),
    "gcloud": _c("gcloud", value={"--password"}),
    "az": _c("az", value={"-p", "--password", "--client-secret"}),
    "docker": _DOCKER, "podman": _DOCKER, "nerdctl": _DOCKER, "buildah": _DOCKER, "skopeo": _DOCKER,
    "openssl": _c("openssl", value={"-k", "-K"}, joined=False),  # -kfile FILE / -passin pass:X: not here / generic
    "mongosh": _MONGO, "mongo": _MONGO, "mongodump": _MONGO, "mongorestore": _MONGO, "mongoexport": _MONGO,
    "mongoimport": _MONGO, "mongostat": _MONGO, "mongotop": _MONGO, "mongofiles": _MONGO,
    "vault": _c("vault", positional=((("login",), frozenset({0})),)),
    "mc": _c("mc", positional=((("alias", "set"), frozenset({3})), (("config", "host", "add"), frozenset({3})))),
    "xfreerdp": _RDP, "xfreerdp3": _RDP, "wlfreerdp": _RDP, "sdl-freerdp": _RDP,
    **{name: _LDAP for name in ("ldapsearch", "ldapadd", "ldapmodify", "ldapdelete", "ldapmodrdn", "ldappasswd",
                                "ldapwhoami", "ldapcompare", "ldapexop", "ldapurl")},
    "sqlcmd": _c("sqlcmd", value={"-P"}), "bcp": _c("sqlcmd", value={"-P"}),
    "zip": _ZIP, "zipcloak": _ZIP, "unzip": _ZIP, "funzip": _ZIP,
    "7z": _7Z, "7za": _7Z, "7zr": _7Z, "7zz": _7Z, "rar": _7Z, "unrar": _7Z,
    "mosquitto_pub": _MQTT, "mosquitto_sub": _MQTT, "mosquitto_rr": _MQTT,
    "smbclient": _c("smbclient", value={"--password"}, userpass={"-U", "--user"}, userpass_sep="%"),
    "lftp": _c("lftp", userpass={"-u", "--user"}, userpass_sep=","),
    "rabbitmqctl": _c("rabbitmqctl", positional=((("add_user",), frozenset({1})), (("change_password",), frozenset({1})),
                                                 (("authenticate_user",), frozenset({1})))),
    "git": _c("git"),  # credentials ride in URLs and -c http.extraHeader=Authorization: ... (generic)
}


def client_for(token: str) -> Client | None:
    """The rule of the program `token` names (a path or a bare name), if it is a known client."""
    return CLIENTS.get(PurePosixPath(token).name) if token else None
