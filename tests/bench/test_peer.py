"""The storm's peer side (bench/peer.py): tcplife-bpfcc's output counted per port, BCC's lost
reports summed, and a real tcplife-bpfcc on this kernel seeing a prime number of connections."""

from __future__ import annotations

import socket
import threading

import pytest

from bench import peer

# tcplife-bpfcc's own output format (the lines as it prints them: PID COMM LADDR LPORT RADDR RPORT TX_KB RX_KB MS)
TCPLIFE_OUT = """PID   COMM       LADDR           LPORT RADDR           RPORT TX_KB RX_KB MS
4021  ab         127.0.0.1       41866 127.0.0.1       8080      0     0 0.21
4019  nginx      127.0.0.1       8080  127.0.0.1       41866     0     0 0.22
77    sshd       10.0.0.5        22    10.0.0.9        51000     3     1 9012.11
4021  ab         127.0.0.1       41868 127.0.0.1       18080     0     0 0.20
"""


def test_lines_are_counted_for_the_servers_port_at_either_end() -> None:
    assert peer.count_lines(TCPLIFE_OUT, 8080) == 2
    assert peer.count_lines(TCPLIFE_OUT, 18080) == 1
    assert peer.count_lines(TCPLIFE_OUT, 9999) == 0


def test_bcc_lost_reports_are_summed() -> None:
    err = b"Possibly lost 12 samples\nsomething else\nPossibly lost 5 samples\n"
    assert peer.reported_lost(err) == 17
    assert peer.reported_lost(b"") == 0


def test_peer_cost_lost_is_ends_not_printed() -> None:
    before = {"cpu_s": 1.0, "VmRSS": 100}
    after = {"cpu_s": 1.5, "VmRSS": 120, "VmHWM": 130, "drained": True}
    c = peer.peer_cost(before, after, made=1000, seconds=5.0, lines=1990, lost_reported=3)
    assert c["records_lost"] == 10 and c["records_emitted"] == 2000 and c["lost_reported"] == 3
    assert c["cpu_s_per_10k_conn"] == pytest.approx(5.0) and c["cores"] == pytest.approx(0.1)


N = 23  # prime: a count that cannot happen by accident


@pytest.mark.ebpf
def test_real_tcplife_prints_both_ends_of_each_connection() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(N):
            conn, _ = srv.accept()
            conn.recv(16)
            conn.close()

    tool = peer.start_peer()
    try:
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        for _ in range(N):
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"x")
                c.recv(16)  # the server's close
        t.join(30)
        tool.caught_up()
    finally:
        text, err = tool.stop()
        srv.close()
    assert peer.count_lines(text, port) == 2 * N, text[-2000:]
    assert peer.reported_lost(err) == 0
