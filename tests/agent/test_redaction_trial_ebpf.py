"""The fresh-user trial's leaks, replayed on the real kernel: real programs run in a test cgroup
with a planted secret (git with a token-only URL and its git-remote-https child, python3 -c with a
quoted assignment, curl with a Cookie header and a client certificate password, openssl enc -k,
a shell piping into --password-stdin, a signed URL); the agent's exec log lines for that cgroup
and its files hold none of it."""

from __future__ import annotations

import shutil
import sys

import pytest
from agent_harness import RunningAgent, wait_for

pytestmark = pytest.mark.ebpf

SECRET = "S3cretTrial7"  # distinct from anything else the session's agent may see

COMMANDS = [
    ["git", "ls-remote", f"https://{SECRET}@127.0.0.1:1/x.git"],
    [sys.executable, "-c", f"password='{SECRET}'"],
    [sys.executable, "-c", f"import os; os.environ['PGPASSWORD']='{SECRET}'"],
    ["curl", "-s", "-m", "2", "-H", f"Cookie: session={SECRET}", "http://127.0.0.1:1/"],
    ["curl", "-s", "-m", "2", "-E", f"cert.pem:{SECRET}", "http://127.0.0.1:1/"],
    ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-k", SECRET, "-in", "/dev/null", "-out", "/dev/null"],
    ["bash", "-c", f"echo {SECRET} | /bin/true --password-stdin"],
    ["/bin/true", f"https://h/path?X-Amz-Signature={SECRET}&sig={SECRET}"],
    # trial 2: free text holding a client command line, and the same cut by the probe inside the
    # password (63 bytes kept: the first 6 bytes of the secret would have been left)
    ["/bin/echo", f"curl -u admin:{SECRET} http://x"],
    ["/bin/echo", "x" * 42 + f" curl -u admin:{SECRET} http://x"],
]


def test_the_trial_commands_reach_the_exec_log_redacted(running_agent: RunningAgent, cgroup) -> None:
    for argv in COMMANDS:
        if shutil.which(argv[0]) is None:
            pytest.fail(f"{argv[0]} is not installed: the replay needs it")
        cgroup.run_argv(argv, timeout=30)  # exit codes do not matter: what was exec'd does

    def execs() -> list[list[str]]:
        return [r["attributes"]["process.command_args"] for r in running_agent.logs()
                if r["body"] == "process exec" and r["attributes"].get("bcgov.cgroup.id") == cgroup.id]

    # every command above, and git's own git-remote-https child
    wait_for(lambda: len(execs()) >= len(COMMANDS) + 1 and sum(a[0] == "/bin/echo" for a in execs()) >= 2,
             what="the exec lines of the replayed commands")
    seen = execs()
    assert any(a[0].endswith("git-remote-https") or a[:2] == ["git", "remote-https"] or "remote-https" in a[0]
               for a in seen), seen
    assert ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-k", "***", "-in", "/dev/null", "-out", "/dev/null"] in seen
    assert not [a for a in seen if any(SECRET in x or SECRET[:6] in x for x in a)], seen
    assert ["/bin/echo", "x" * 42 + " curl -u admin:***…"] in seen  # masked, and marked cut
    assert SECRET not in running_agent.log_path.read_text()
    assert SECRET not in running_agent.spans_path.read_text()
