"""Delivery into the receivers the project did not write or that the benchmarks use: Postfix's
smtp-sink (dumping every transaction to a file) and ringmx-sink (counting sessions), and the
embedded default config's promise: mail to @localhost lands in Maildirs under ./var/mail."""
import glob
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, free_port, wait_port
from outbound import (loopback_address, make_message, outbound_sections, send, wait_events,
                      wait_until)

SENDER = "sender@localhost"


def mta(ringmx_factory, transport, **sections):
    return ringmx_factory(server={"max_connections_per_ip": "0"}, transport=transport,
                          **outbound_sections(None, **sections))


@pytest.mark.outbound
def test_postfix_smtp_sink_gets_every_message_with_its_envelope(ringmx_factory, tmp_path):
    addr = loopback_address(2525)
    dump = tmp_path / "dump"
    dump.mkdir()
    sink = subprocess.Popen(["smtp-sink", "-u", "root", "-d", str(dump) + "/%M.",
                             "%s:2525" % addr, "100"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(addr, 2525, proc=sink)
        srv = mta(ringmx_factory, {"pfsink.test": "smtp:[%s]:2525" % addr})
        qids = [send(srv, SENDER, ["u%d@pfsink.test" % i, "v%d@pfsink.test" % i],
                     make_message(subject="to smtp-sink %d" % i, body="body %d\r\n" % i))
                for i in range(20)]
        # the 250 comes after smtp-sink wrote the transaction: then every dump is whole
        for q in qids:
            wait_events(srv, "delivered", 2, qid=q, timeout=10)
        dumps = {}
        for p in glob.glob(str(dump / "*")):
            data = open(p, "rb").read()
            subj = [l for l in data.split(b"\n") if l.startswith(b"Subject: to smtp-sink")]
            dumps[subj[0].split()[-1].decode()] = data
        assert sorted(dumps) == sorted(str(i) for i in range(20))
        for i, data in dumps.items():
            assert b"X-Mail-Args: <%s>" % SENDER.encode() in data
            rcpts = [l for l in data.split(b"\n") if l.startswith(b"X-Rcpt-Args:")]
            assert rcpts == [b"X-Rcpt-Args: <u%s@pfsink.test>" % i.encode(),
                             b"X-Rcpt-Args: <v%s@pfsink.test>" % i.encode()], rcpts
            assert data.rstrip().endswith(b"body %s" % i.encode())
    finally:
        sink.terminate()
        sink.wait()


@pytest.mark.outbound
def test_ringmx_sink_counts_the_batching(ringmx_factory, tmp_path):
    """300 messages for one domain, 3 connections at most, 50 messages per connection: the
    sink sees every message and about 300/50 sessions (a few more when the last ones close
    on idle and reopen)."""
    port = free_port()
    stats = tmp_path / "sink.json"
    sink = subprocess.Popen([os.path.join(BIN, "ringmx-sink"), "--listen",
                             "127.0.0.1:%d" % port, "--shards", "1", "--stats", str(stats)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port, proc=sink)
        srv = mta(ringmx_factory, {"sink.test": "smtp:[127.0.0.1]:%d" % port},
                  extra={"domain sink.test": {"max_connections": "3",
                                              "max_messages_per_connection": "50"}})
        out = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server",
                              "127.0.0.1:%d" % srv.port, "--threads", "1", "--json",
                              "--connections", "4", "--messages", "300", "--size", "1k",
                              "--from", SENDER, "--to", "u{n}@sink.test"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        assert json.loads(out)["accepted"] == 300
        wait_events(srv, "delivered", 300, timeout=30)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=10)
    st = json.load(open(stats))
    assert st["messages"] == 300 and st["recipients"] == 300, st
    assert 6 <= st["connections"] <= 300 // 50 + 3 + 2, st


def test_the_embedded_default_config_delivers_localhost_mail_to_var_mail(tmp_path):
    """`make run`'s promise (README): no -c, port 2525, mail for user@localhost in
    ./var/mail/user/new/ relative to the working directory."""
    try:
        socket.create_connection(("127.0.0.1", 2525), timeout=0.2).close()
        pytest.skip("something already listens on 127.0.0.1:2525")
    except OSError:
        pass
    log = open(tmp_path / "ringmx.log", "wb")
    proc = subprocess.Popen([os.path.join(BIN, "ringmx")], cwd=str(tmp_path), stdout=log,
                            stderr=log)
    try:
        wait_port("127.0.0.1", 2525, proc=proc)
        import smtplib
        with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as s:
            s.sendmail("you@example.org", ["user@localhost"],
                       b"Subject: default config\r\n\r\nhello from the default config\r\n")
        box = tmp_path / "var" / "mail" / "user" / "new"
        wait_until(lambda: list(box.glob("*")), 10, "a message in %s" % box)
        (f,) = list(box.glob("*"))
        data = f.read_bytes()
        assert data.startswith(b"Return-Path: <you@example.org>\nDelivered-To: user@localhost\n")
        assert data.endswith(b"hello from the default config\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log.close()
