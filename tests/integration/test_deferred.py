"""Mail that keeps waiting: the deferred stream (a message deferred twice leaves the hot spool
segments, so one dead destination pins nothing), delay warnings ([queue] warn_after), and
[domain] tls = required (no TLS in this build yet: deferred with a clear reason, never sent in
the clear). Receivers are outbound.Receiver on loopback, reached through [transport]."""
import glob
import os
import signal

import pytest

from outbound import (events, loopback_address, make_message, outbound_sections, parse_dsn,
                      send, wait_events, wait_maildir, wait_until)

SENDER = "sender@localhost"


def mta(ringmx_factory, hop, queue=None, shards="2", **sections):
    server = {"max_connections_per_ip": "0", "shards": shards}
    return ringmx_factory(server=server, transport={"slow.test": hop},
                          **outbound_sections(None, queue=queue, **sections))


def segments(path):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(path, "seg-*.rmx")))


@pytest.mark.outbound
def test_a_message_deferred_twice_moves_out_of_the_hot_segments(ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    rcv.fail("RCPT", "451 4.3.0 try again later")
    # 1 MiB segments (the least) roll after a little mail: the hot segment can then go
    srv = mta(ringmx_factory, "smtp:[%s]:2525" % addr, queue={"retry": "1s"},
              spool={"segment_size": "1M"}, shards="1")
    qid = send(srv, SENDER, ["u@slow.test"], make_message(subject="keeps waiting"))
    (mv,) = wait_events(srv, "moved_to_deferred", qid=qid, timeout=10)
    assert mv["to"].startswith("deferred/seg-") and mv["recipients_pending"] == "1"
    deferred_dir = os.path.join(srv.spool, "deferred")
    assert segments(deferred_dir), "no segment in the deferred stream"
    # more mail rolls the hot segment; the moved message no longer keeps it
    filler = ("y" * 998 + "\r\n") * 700
    for i in range(3):
        send(srv, SENDER, ["x%d@localhost" % i], make_message(subject="filler %d" % i,
                                                                body=filler))
    wait_events(srv, "segment_removed", timeout=10)
    hot_seg = mv["from"]
    wait_until(lambda: hot_seg not in segments(srv.spool), timeout=10,
               what="%s removed from the hot spool" % hot_seg)
    # a crash now: the copy in the deferred stream is what comes back, once
    srv.kill()
    rcv.rules.clear()
    srv.start()
    rcv.wait_messages(1, timeout=10)
    wait_events(srv, "delivered", qid=qid, timeout=5)
    assert len([m for m in rcv.messages if b"keeps waiting" in m.data]) == 1


@pytest.mark.outbound
def test_a_delay_warning_goes_to_the_sender_after_warn_after(ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    rcv.fail("RCPT", "451 4.3.0 greylisted")
    srv = mta(ringmx_factory, "smtp:[%s]:2525" % addr,
              queue={"retry": "1s", "warn_after": "2s", "max_lifetime": "1h"})
    qid = send(srv, SENDER, ["u@slow.test"], make_message(subject="slow"))
    (w,) = wait_events(srv, "delay_warning_queued", qid=qid, timeout=10)
    assert w["to"] == SENDER
    (data,) = wait_maildir(srv.maildir, "sender", 1, timeout=5)
    msg, groups, original = parse_dsn(data)
    assert "Delayed" in msg["Subject"]
    assert groups[1]["action"] == "delayed" and groups[1]["status"].startswith("4.")
    assert "will-retry-until" in groups[1]
    # one warning only, and the message is still queued, not bounced
    srv_log_deferred = len(events(srv, "deferred", qid=qid))
    wait_until(lambda: len(events(srv, "deferred", qid=qid)) > srv_log_deferred + 1, timeout=5)
    assert len(events(srv, "delay_warning_queued", qid=qid)) == 1
    assert events(srv, "bounced", qid=qid) == []


@pytest.mark.outbound
def test_tls_required_defers_instead_of_sending_in_the_clear(ringmx_factory, receivers):
    """The receiver offers no STARTTLS: with tls = required nothing but EHLO is said."""
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    srv = mta(ringmx_factory, "smtp:[%s]:2525" % addr, queue={"retry": "1s"},
              extra={"domain slow.test": {"tls": "required"}})
    qid = send(srv, SENDER, ["u@slow.test"], make_message(subject="secret"))
    d = wait_events(srv, "deferred", 2, qid=qid, timeout=10)
    assert d[0]["dsn"] == "4.7.5" and "does not offer STARTTLS" in d[0]["reply"], d[0]
    assert rcv.messages == []
    assert not any(verb == "MAIL" for s in rcv.connections for verb, _, _ in s.commands)


# ---- what the remote server offers ------------------------------------------------------------

def raw_bdat(srv, sender, rcpt, body):
    """Sends one message with BDAT (bytes as they are, bare LF allowed); returns the qid."""
    import socket
    with socket.create_connection((srv.host, srv.port), timeout=10) as c:
        f = c.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    return line

        reply()
        c.sendall(b"EHLO t.test\r\n")
        reply()
        c.sendall(b"MAIL FROM:<%s>\r\n" % sender.encode())
        assert reply().startswith(b"250")
        c.sendall(b"RCPT TO:<%s>\r\n" % rcpt.encode())
        assert reply().startswith(b"250")
        c.sendall(b"BDAT %d LAST\r\n" % len(body) + body)
        r = reply()
        assert r.startswith(b"250"), r
        c.sendall(b"QUIT\r\n")
        return r.split()[-1].decode()


@pytest.mark.outbound
def test_a_message_over_the_remote_size_limit_bounces_unsent(ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525, size=2000)
    srv = mta(ringmx_factory, "smtp:[%s]:2525" % addr)
    qid = send(srv, SENDER, ["u@slow.test"], make_message(subject="big", body="z" * 5000))
    (b,) = wait_events(srv, "bounced", qid=qid)
    assert b["dsn"] == "5.3.4" and "2000" in b["reply"], b
    assert rcv.messages == []
    assert not any(verb == "MAIL" for s in rcv.connections for verb, _, _ in s.commands)


@pytest.mark.outbound
def test_bdat_bytes_with_bare_lf_leave_as_crlf_to_a_server_without_chunking(ringmx_factory,
                                                                             receivers):
    """Accepted by BDAT as sent (bare LF kept in the spool); relayed with DATA to a server that
    offers neither CHUNKING nor PIPELINING: one command per reply, and every line end CRLF
    (the receiver fails the test on a bare CR or LF, or on unoffered pipelining)."""
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525, pipelining=False, chunking=False)
    srv = mta(ringmx_factory, "smtp:[%s]:2525" % addr)
    body = b"Subject: bare\r\n\r\nline one\nline two\n.dot\nend\r\n"
    qid = raw_bdat(srv, SENDER, "u@slow.test", body)
    (m,) = rcv.wait_messages(1)
    assert b"line one\r\nline two\r\n.dot\r\nend\r\n" in m.data, m.data
    assert b"\n" not in m.data.replace(b"\r\n", b"")
    wait_events(srv, "delivered", qid=qid)
