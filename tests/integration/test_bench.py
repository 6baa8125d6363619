"""ringmx-bench and ringmx-sink against each other and against ringmx: the counts agree.

Short runs (a few thousand messages, a few seconds); they check that the harness counts what
the servers really took, not how fast it went. With --starttls the servers' own counts (the
sink's `tls`, ringmx's event=tls and its ESMTPS Received headers) prove the mail went encrypted,
and a fake server shows that each way STARTTLS can fail is counted as an error.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, free_port, wait_port
from test_tls import make_cert


def bench(port, *args, timeout=60):
    out = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server", "127.0.0.1:%d" % port,
                          "--threads", "1", "--json", *args],
                         check=True, capture_output=True, text=True, timeout=timeout).stdout
    return json.loads(out)


class Sink:
    def __init__(self, tmp_path, *args):
        self.port = free_port()
        self.stats = str(tmp_path / "sink.json")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:%d" % self.port,
             "--shards", "2", "--stats", self.stats, *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port("127.0.0.1", self.port, proc=self.proc)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        with open(self.stats) as f:
            return json.load(f)


def test_bench_and_sink_agree_on_every_message(tmp_path):
    sink = Sink(tmp_path)
    try:
        r = bench(sink.port, "--connections", "20", "--messages", "3000", "--size", "2k",
                  "--rcpts", "2", "--pipelining")
    finally:
        # The wait_port probe and the bench's connections are all the sink saw.
        stats = sink.stop()
    assert r["sent"] == 3000 and r["errored"] == 0 and r["rejected"] == {}
    assert r["accepted"] == 3000 == stats["messages"]
    assert stats["recipients"] == 2 * 3000
    assert r["connections"] == 20 and stats["connections"] == 21


def test_a_busy_polling_sink_counts_the_same(tmp_path):
    """--busy-poll changes how the sink waits, not what it counts (and bad values are refused)."""
    sink = Sink(tmp_path, "--busy-poll", "200")
    try:
        r = bench(sink.port, "--connections", "10", "--messages", "2000", "--size", "1k")
    finally:
        stats = sink.stop()
    assert r["accepted"] == 2000 == stats["messages"] and r["errored"] == 0
    bad = subprocess.run([os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:1",
                          "--busy-poll", "20000"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "--busy-poll: expected an integer 0..10000" in bad.stderr


def test_defaults_count_the_cpus_one_may_run_on_not_the_online_ones(tmp_path):
    """Under a one-CPU affinity mask (taskset -c 0) the sink starts one shard and the generator
    one thread, not one per online CPU fighting over the same core."""
    one_cpu = lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    port = free_port()
    sink = subprocess.Popen([os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=one_cpu)
    try:
        wait_port("127.0.0.1", port, proc=sink)
        out = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server",
                              "127.0.0.1:%d" % port, "--connections", "4", "--messages", "200",
                              "--json"], check=True, capture_output=True, text=True, timeout=60,
                             preexec_fn=one_cpu).stdout
    finally:
        sink.send_signal(signal.SIGTERM)
        _, err = sink.communicate(timeout=20)
    r = json.loads(out)
    assert r["accepted"] == 200 and r["config"]["threads"] == 1
    assert "with 1 shard(s)" in err, err


def test_bench_counts_new_connections_per_message_and_chunking_like_the_sink(tmp_path):
    sink = Sink(tmp_path)
    try:
        r = bench(sink.port, "--connections", "8", "--messages", "400", "--per-conn", "1",
                  "--chunking")
    finally:
        stats = sink.stop()
    assert r["accepted"] == 400 == stats["messages"]
    assert r["connections"] == 400 and stats["connections"] == 401
    assert r["chunking_fallback"] is False


def test_bench_against_ringmx_counts_only_what_the_spool_holds(ringmx_factory):
    srv = ringmx_factory(server={"max_connections_per_ip": "0"})
    r = bench(srv.port, "--connections", "10", "--messages", "1000", "--size", "4k",
              "--to", "user{n}@localhost")
    assert r["accepted"] == 1000 and r["errored"] == 0
    assert srv.stop() == 0
    recs = srv.spool_records()
    assert len(recs) == r["accepted"]
    assert {rec["rcpts"][0] for rec in recs} == {"user%d@localhost" % n for n in range(1000)}


def test_a_server_that_refuses_every_recipient_is_reported_as_rejections_not_throughput(
        ringmx_factory, tmp_path):
    known = tmp_path / "recipients"
    known.write_text("only@localhost\n")
    srv = ringmx_factory(server={"max_connections_per_ip": "0"},
                         accept={"recipients": str(known)})
    r = bench(srv.port, "--connections", "4", "--messages", "200", "--to", "nobody{n}@localhost")
    assert r["accepted"] == 0
    assert r["rejected"] == {"550": 200}
    assert r["msgs_per_s"] == 0
    assert srv.spool_records() == []


def test_sink_failure_rates_reach_the_bench_report(tmp_path):
    sink = Sink(tmp_path, "--tempfail-pct", "30", "--permfail-pct", "20")
    try:
        r = bench(sink.port, "--connections", "4", "--messages", "1000")
    finally:
        stats = sink.stop()
    temp, perm = r["rejected"].get("451", 0), r["rejected"].get("554", 0)
    assert r["accepted"] + temp + perm == 1000
    assert stats["messages"] == r["accepted"] and stats["tempfailed"] == temp
    assert stats["permfailed"] == perm
    # 30 % and 20 % of 1000, give or take chance.
    assert 200 < temp < 400 and 100 < perm < 300


def test_sink_delay_shows_in_the_end_of_data_latency(tmp_path):
    sink = Sink(tmp_path, "--delay-ms", "40")
    try:
        r = bench(sink.port, "--connections", "4", "--messages", "40")
    finally:
        stats = sink.stop()
    assert r["accepted"] == 40 == stats["messages"]
    # Every reply to end-of-data waited 40 ms in the sink; nothing can make it faster.
    assert r["latency_eod_us"]["p50"] >= 40000 * 0.99


# ---- --starttls ------------------------------------------------------------------------------


def bench_run(port, *args, timeout=60):
    """ringmx-bench --json without check: (exit status, report, stderr)."""
    p = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server", "127.0.0.1:%d" % port,
                        "--threads", "1", "--json", *args],
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, json.loads(p.stdout), p.stderr


@pytest.fixture
def tls_sink(tmp_path):
    cert, key = make_cert(str(tmp_path))
    sink = Sink(tmp_path, "--starttls", "--tls-cert", cert, "--tls-key", key)
    yield sink
    if sink.proc.poll() is None:
        sink.proc.kill()
        sink.proc.wait()


def assert_tls_report(r, handshakes):
    assert r["tls"] is True and r["config"]["starttls"] is True
    assert r["tls_handshakes"] == handshakes and r["tls_failed"] == 0
    assert r["tls_version"] in ("TLSv1.2", "TLSv1.3") and r["tls_cipher"], r
    assert r["tls_error"] is None and r["connect_errors"] == 0


def test_starttls_against_the_sink_counts_agree_and_every_session_was_encrypted(tls_sink):
    try:
        r = bench(tls_sink.port, "--connections", "10", "--messages", "2000", "--size", "2k",
                  "--rcpts", "2", "--starttls")
    finally:
        stats = tls_sink.stop()
    assert r["sent"] == 2000 and r["errored"] == 0 and r["rejected"] == {}
    assert r["accepted"] == 2000 == stats["messages"]
    assert stats["recipients"] == 2 * 2000
    assert_tls_report(r, 10)
    # The sink's own count: 10 handshakes; the wait_port probe connected without TLS.
    assert stats["tls"] == 10 and stats["tls_failed"] == 0
    assert r["connections"] == 10 and stats["connections"] == 11


@pytest.mark.parametrize("mode", [["--pipelining"], ["--chunking"], ["--pipelining", "--chunking"]],
                         ids=["pipelining", "chunking", "pipelining+chunking"])
def test_starttls_with_pipelining_and_chunking_and_large_messages_loses_nothing(tls_sink, mode):
    # 100k messages and 40k: several TLS records and more than one wire buffer per write.
    try:
        r = bench(tls_sink.port, "--connections", "4", "--messages", "300",
                  "--size", "100k:1,40k:1,1k:2", *mode, "--starttls")
    finally:
        stats = tls_sink.stop()
    assert r["accepted"] == 300 == stats["messages"] and r["errored"] == 0
    assert r["pipelining_fallback"] is False and r["chunking_fallback"] is False
    assert_tls_report(r, 4)
    assert stats["tls"] == 4


def test_starttls_per_conn_1_does_one_handshake_per_message(tls_sink):
    try:
        r = bench(tls_sink.port, "--connections", "8", "--messages", "300", "--per-conn", "1",
                  "--pipelining", "--starttls")
    finally:
        stats = tls_sink.stop()
    assert r["accepted"] == 300 == stats["messages"] and r["errored"] == 0
    assert_tls_report(r, 300)
    assert r["connections"] == 300 and stats["tls"] == 300 and stats["tls_failed"] == 0


def test_starttls_against_ringmx_every_stored_message_came_over_esmtps(ringmx_factory, tmp_path):
    cert, key = make_cert(str(tmp_path))
    srv = ringmx_factory(server={"max_connections_per_ip": "0"},
                         extra={"tls": {"cert": cert, "key": key}})
    r = bench(srv.port, "--connections", "6", "--messages", "600", "--per-conn", "50",
              "--pipelining", "--chunking", "--starttls")
    assert r["accepted"] == 600 and r["errored"] == 0
    # 50 messages a connection: 12 at least (one that comes up when the others have taken the
    # last messages only QUITs), and a handshake on every one, as ringmx logged them.
    assert r["connections"] >= 12
    assert_tls_report(r, r["connections"])
    srv.wait_log("tls", count=r["connections"])
    assert srv.stop() == 0
    assert len(srv.log_events("tls")) == r["connections"]
    assert srv.log_events("tls_error") == []
    recs = srv.spool_records()
    assert len(recs) == 600
    for rec in recs:
        assert b"by mx.test (ringmx) with ESMTPS id " in rec["message"], rec["message"][:300]
    assert {rec["rcpts"][0] for rec in recs} == {"user%d@localhost" % n for n in range(600)}


def test_without_starttls_the_same_ringmx_stores_plain_esmtp(ringmx_factory, tmp_path):
    cert, key = make_cert(str(tmp_path))
    srv = ringmx_factory(server={"max_connections_per_ip": "0"},
                         extra={"tls": {"cert": cert, "key": key}})
    r = bench(srv.port, "--connections", "2", "--messages", "20")
    assert r["accepted"] == 20 and r["tls"] is False and r["tls_handshakes"] == 0
    assert r["tls_version"] is None and r["config"]["starttls"] is False
    assert srv.stop() == 0
    assert all(b" with ESMTP id " in rec["message"] for rec in srv.spool_records())


def test_starttls_against_a_server_without_it_is_errors_not_plaintext_mail(tmp_path):
    sink = Sink(tmp_path)
    try:
        rc, r, err = bench_run(sink.port, "--connections", "2", "--messages", "100",
                               "--starttls")
    finally:
        stats = sink.stop()
    assert rc == 1, err
    assert "does not offer STARTTLS" in err
    assert r["sent"] == 0 and r["accepted"] == 0 and r["msgs_per_s"] == 0
    # Each slot tries 5 times, then gives up; each try is a failed connection and a TLS failure.
    assert r["connect_errors"] == 10 and r["tls_failed"] == 10 and r["tls_handshakes"] == 0
    assert r["tls_error"] == "the server does not offer STARTTLS"
    assert stats["messages"] == 0


class FakeServer:
    """A loopback server that runs self.session(conn) in a thread of its own per connection;
    a subclass sets its state, then calls start()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.done = False

    def start(self):
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def close(self):
        self.done = True
        self.sock.close()


class StrictPipelining(FakeServer):
    """A server that offers PIPELINING but, like Haraka, refuses a command that arrives behind
    the message's "." before its reply (503). It records, per message, whether the envelope
    came in one piece (RCPT and DATA already buffered when MAIL was read) and whether anything
    was waiting behind the "."."""

    def __init__(self):
        super().__init__()
        self.accepted = self.behind_dot = self.envelope_in_one = 0
        self.lock = threading.Lock()
        self.start()

    def session(self, conn):
        buf = b""

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(b"220 strict.test ESMTP\r\n")
                line()
                conn.sendall(b"250-strict.test\r\n250 PIPELINING\r\n")
                while True:
                    cmd = line().upper()
                    if cmd == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        return
                    if cmd == b"RSET":
                        conn.sendall(b"250 reset\r\n")
                        continue
                    if not cmd.startswith(b"MAIL"):
                        conn.sendall(b"503 5.5.1 bad sequence\r\n")
                        continue
                    whole = b"\r\nDATA\r\n" in b"\r\n" + buf
                    line()  # RCPT
                    line()  # DATA
                    conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
                    while line() != b".":
                        pass
                    with self.lock:
                        self.envelope_in_one += whole
                    if buf:  # commands pipelined behind the dot: refused, as Haraka does
                        with self.lock:
                            self.behind_dot += 1
                        conn.sendall(b"250 queued\r\n")
                        while buf:
                            line()
                            conn.sendall(b"503 5.5.1 pipelined after end of DATA\r\n")
                        continue
                    with self.lock:
                        self.accepted += 1
                    conn.sendall(b"250 queued\r\n")
            except (OSError, EOFError):
                pass


@pytest.mark.parametrize("mode", ["--pipelining-envelope", "--pipelining"])
def test_pipelining_envelope_sends_nothing_behind_the_dot(mode):
    """--pipelining-envelope pipelines MAIL, RCPT and DATA but waits for the final reply, so a
    server that refuses commands behind the "." takes every message; --pipelining (the control)
    sends the next envelope behind the dot and is refused there, and says so."""
    srv = StrictPipelining()
    try:
        rc, r, err = bench_run(srv.port, "--connections", "2", "--messages", "200",
                               "--size", "1k", mode, "--timeout", "5")
    finally:
        srv.close()
    if mode == "--pipelining-envelope":
        assert rc == 0, err
        assert r["config"]["pipelining_envelope"] is True
        assert r["accepted"] == 200 == srv.accepted and r["rejected"] == {}
        assert srv.behind_dot == 0
        assert srv.envelope_in_one == 200, "MAIL, RCPT and DATA came in one write"
    else:
        # Each refused transaction is one that rode behind a ".": counted, never ignored.
        refused = r["rejected"].get("503", 0)
        assert refused > 0 and refused == srv.behind_dot, (r, srv.behind_dot)
        assert r["accepted"] + refused == r["sent"] == 200


class FakeStarttls(FakeServer):
    """A server that offers STARTTLS and then misbehaves: `refuse` answers 454, `garbage`
    answers 220 and sends bytes that are not TLS, `inject` sends a reply right behind its 220 in
    the clear (RFC 3207 5), `silent` answers 220 and then says nothing."""

    def __init__(self, behaviour):
        super().__init__()
        self.behaviour = behaviour
        self.sessions = 0
        self.start()

    def session(self, conn):
        with conn:
            conn.settimeout(10)
            f = conn.makefile("rb")
            try:
                conn.sendall(b"220 fake.test ESMTP\r\n")
                if not f.readline().upper().startswith(b"EHLO"):
                    return
                conn.sendall(b"250-fake.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                if f.readline().upper() != b"STARTTLS\r\n":
                    return
                self.sessions += 1
                if self.behaviour == "refuse":
                    conn.sendall(b"454 4.7.0 TLS not available\r\n")
                elif self.behaviour == "inject":
                    conn.sendall(b"220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n")
                else:
                    conn.sendall(b"220 2.0.0 go ahead\r\n")
                    if self.behaviour == "garbage":
                        conn.sendall(b"this is not a TLS record at all\r\n" * 4)
                f.read()  # until the client closes
            except OSError:
                pass


@pytest.mark.parametrize("behaviour,reason", [
    ("refuse", "STARTTLS refused (reply 454)"),
    ("garbage", "handshake failed"),
    ("inject", "the server sent more after its 220 to STARTTLS"),
    ("silent", "the TLS handshake timed out"),
])
def test_a_failed_starttls_or_handshake_is_counted_as_an_error_never_ignored(behaviour, reason):
    fake = FakeStarttls(behaviour)
    try:
        rc, r, err = bench_run(fake.port, "--connections", "1", "--messages", "10",
                               "--starttls", "--timeout", "0.3")
    finally:
        fake.close()
    assert rc == 1, err
    assert reason in r["tls_error"], r["tls_error"]
    assert reason in err
    assert r["sent"] == 0 and r["tls_handshakes"] == 0
    assert r["tls_failed"] == r["connect_errors"] == 5 == fake.sessions
    if behaviour == "silent":
        assert r["timeouts"] == 5
