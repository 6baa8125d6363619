"""Outbound delivery over SMTP, all on loopback: ringmx resolves the out.test. domains with nsd
(tests/integration/dns/outbound.zone, loopback_mx = yes) and delivers to receivers on
127.0.0.X:25, one address per test (the zone's A records), or follows [transport] to a receiver
on an address from outbound.loopback_address(). Receivers are outbound.Receiver (scriptable,
strict about the client's protocol; any violation fails the test) or aiosmtpd.

The first tests check the harness itself and pass without the delivery engine; the rest are
marked `outbound` (issue 5): `-m 'not outbound'` leaves them out while it is being written."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN
from outbound import (events, loopback_address, make_message, message_id, outbound_sections,
                      parse_dsn, received_qid, send, send_many, strip_received, wait_events,
                      wait_maildir, wait_until, zone_address)

SENDER = "sender@localhost"


def mta(ringmx_factory, nsd, deliver=None, queue=None, **sections):
    """A delivering ringmx whose resolver is the test nsd (see outbound.outbound_sections)."""
    server = {"max_connections_per_ip": "0"}
    server.update(sections.pop("server", {}))
    return ringmx_factory(server=server, **outbound_sections(nsd.port, deliver=deliver,
                                                             queue=queue, **sections))


def mx_receiver(receivers, domain, **kw):
    """The receiver for DOMAIN's MX host (mx.DOMAIN in the zone), on its address port 25."""
    return receivers(zone_address("mx." + domain), 25, **kw)


def bench(srv, messages, to, connections=4, *args):
    out = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server",
                          "127.0.0.1:%d" % srv.port, "--threads", "1", "--json",
                          "--connections", str(connections), "--messages", str(messages),
                          "--size", "1k", "--from", SENDER, "--to", to, *args],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    r = json.loads(out)
    assert r["accepted"] == messages and r["errored"] == 0, r
    return r


# ---- the harness (runs without the engine) ------------------------------------------------------


def answer(ns, qtype, name):
    out = ns.drill(qtype, name)
    rcode = out.split("rcode: ", 1)[1].split(",", 1)[0]
    section = out.split(";; ANSWER SECTION:\n", 1)[1].split(";;", 1)[0]
    return rcode, [line.split()[-1] if qtype == "A" else " ".join(line.split()[-2:])
                   for line in section.splitlines() if line.strip()]


def test_harness_nsd_serves_the_outbound_zone(outbound_nsd):
    ns = outbound_nsd
    assert answer(ns, "MX", "mxroute.out.test") == ("NOERROR", ["10 mx.mxroute.out.test."])
    assert answer(ns, "A", "mx.mxroute.out.test") == ("NOERROR", ["127.0.0.21"])
    assert answer(ns, "MX", "nullmx.out.test") == ("NOERROR", ["0 ."])
    assert answer(ns, "MX", "nosuch.out.test") == ("NXDOMAIN", [])
    assert answer(ns, "MX", "empty.out.test") == ("NOERROR", [])
    assert answer(ns, "A", "amx.out.test") == ("NOERROR", ["127.0.0.24"])
    for i in range(10):
        assert answer(ns, "MX", "r%d.out.test" % i)[1] == ["10 mx.rollup.out.test."]
    # the test's view of the zone agrees with nsd's
    for name in ("mx.batch.out.test", "mx1.fallback.out.test", "mx.rollup.out.test"):
        assert answer(ns, "A", name)[1] == [zone_address(name)]


def test_harness_receiver_takes_mail_from_swaks_and_records_the_session(receivers):
    rcv = receivers(loopback_address(), 25, chunking=True)
    rcv.fail("RCPT", "550 5.1.1 no such user", match="bad@")
    r = subprocess.run(["swaks", "--server", rcv.host, "--port", "25", "--from", "a@x.test",
                        "--to", "ok@y.test,bad@y.test", "--pipeline", "--body",
                        "one\n.dot\n", "--hide-all"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    (m,) = rcv.messages
    assert (m.mail_from, m.rcpts, m.via) == ("a@x.test", ["ok@y.test"], "DATA")
    assert m.data.endswith(b"\r\none\r\n.dot\r\n\r\n\r\n") or b"\r\none\r\n.dot\r\n" in m.data
    assert rcv.rejected == [("RCPT", "bad@y.test", "550 5.1.1 no such user")]
    (s,) = rcv.connections
    assert [c[0] for c in s.commands] == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert s.commands[1][2] is True  # MAIL came with the RCPTs behind it (pipelined)
    assert s.quit and rcv.max_concurrent == 1


def test_harness_receiver_takes_pipelined_bdat_from_ringmx_bench_without_complaint(receivers):
    rcv = receivers(loopback_address(), 25, pipelining=True, chunking=True)
    out = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server", "%s:25" % rcv.host,
                          "--threads", "1", "--json", "--connections", "4", "--messages", "400",
                          "--size", "1k", "--rcpts", "2", "--pipelining", "--chunking",
                          "--per-conn", "50"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    assert json.loads(out)["accepted"] == 400
    rcv.wait_messages(400)
    assert {m.via for m in rcv.messages} == {"BDAT"} and len(rcv.rcpts()) == 800
    assert rcv.max_concurrent <= 4 and max(len(s.messages) for s in rcv.connections) == 50
    assert all(c[2] for s in rcv.connections for c in s.commands if c[0] == "MAIL")


def test_harness_receiver_catches_a_client_that_breaks_the_protocol(receivers):
    rcv = receivers(loopback_address(), 25, pipelining=False)
    with socket.create_connection((rcv.host, 25), timeout=5) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO x\r\n")
        while f.readline()[3:4] == b"-":
            pass
        c.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        c.sendall(b"bare\nlf\r\n.\r\nQUIT\r\n")
        assert f.readline()[:3] == b"250" and f.readline()[:3] == b"221"
    wait_until(lambda: rcv.active == 0, 5)
    assert rcv.violations == [
        "session 1: MAIL pipelined without PIPELINING offered",
        "session 1: RCPT pipelined without PIPELINING offered",
        "session 1: bare LF in DATA: b'bare\\n'"]
    rcv.violations.clear()  # they were the point of this test


def test_harness_aiosmtpd_receiver_takes_mail_from_swaks(receivers):
    aio = receivers(loopback_address(2525), 2525, aio=True)
    r = subprocess.run(["swaks", "--server", aio.host, "--port", "2525", "--from", "a@x.test",
                        "--to", "b@y.test,c@y.test", "--hide-all"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (m,) = aio.wait_messages(1)
    assert m.rcpts == ["b@y.test", "c@y.test"] and aio.hellos == 1


# ---- next hops from [transport] and relayhost ---------------------------------------------------


@pytest.mark.outbound
def test_a_transport_smtp_hop_gets_the_message_byte_exact(ringmx_factory, outbound_nsd,
                                                          receivers):
    addr = loopback_address(2525)
    aio = receivers(addr, 2525, aio=True)
    srv = mta(ringmx_factory, outbound_nsd, transport={"relay.test": "smtp:[%s]:2525" % addr})
    sent = make_message(subject="transport", body="exact\r\n.dot\r\n\r\nbytes \t\r\n")
    qid = send(srv, SENDER, ["a@relay.test", "b@relay.test"], sent)
    (m,) = aio.wait_messages(1)
    assert m.mail_from == SENDER and m.rcpts == ["a@relay.test", "b@relay.test"]
    assert m.data.startswith(b"Received: ") and received_qid(m.data) == qid
    assert strip_received(m.data) == sent
    ev = wait_events(srv, "delivered", 2, qid=qid)
    for e in ev:
        assert e["relay"].endswith("[%s]:2525" % addr), e
        assert e["dsn"] == "2.0.0" and e["attempts"] == "1" and e["reply"].startswith("250")


@pytest.mark.outbound
def test_a_transport_pattern_covers_subdomains(ringmx_factory, outbound_nsd, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    srv = mta(ringmx_factory, outbound_nsd,
              transport={"*.sub.test": "smtp:[%s]:2525" % addr})
    send(srv, SENDER, ["x@deep.sub.test"], make_message(subject="pattern"))
    (m,) = rcv.wait_messages(1)
    assert m.rcpts == ["x@deep.sub.test"]


@pytest.mark.outbound
def test_a_transport_discard_drops_the_message(ringmx_factory, outbound_nsd):
    srv = mta(ringmx_factory, outbound_nsd, transport={"drop.test": "discard"})
    qid = send(srv, SENDER, ["x@drop.test"], make_message(subject="drop"))
    ev = wait_events(srv, "delivered", qid=qid)
    assert ev[0]["relay"] == "discard" and ev[0]["rcpt"] == "x@drop.test"


@pytest.mark.outbound
def test_a_relayhost_takes_all_non_local_mail_without_dns(ringmx_factory, outbound_nsd,
                                                          receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    srv = mta(ringmx_factory, outbound_nsd, deliver={"relayhost": "[%s]:2525" % addr})
    # neither domain is in the zone (nsd refuses them): only the relayhost can deliver them
    qid = send(srv, SENDER, ["a@elsewhere.example", "b@mxroute.out.test"],
               make_message(subject="relayhost"))
    rcv.wait_rcpts(2)
    assert sorted(rcv.rcpts()) == ["a@elsewhere.example", "b@mxroute.out.test"]
    wait_events(srv, "delivered", 2, qid=qid)


# ---- MX routing ---------------------------------------------------------------------------------


@pytest.mark.outbound
def test_mail_goes_to_the_mx_host_found_in_dns(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "mxroute.out.test")
    srv = mta(ringmx_factory, outbound_nsd)
    sent = make_message(subject="mx")
    qid = send(srv, SENDER, ["u@mxroute.out.test"], sent)
    (m,) = rcv.wait_messages(1)
    assert (m.mail_from, m.rcpts) == (SENDER, ["u@mxroute.out.test"])
    assert strip_received(m.data) == sent
    assert rcv.connections[0].helo == "ringmx.out.test"  # [deliver] helo_name
    (e,) = wait_events(srv, "delivered", qid=qid)
    assert e["relay"] == "mx.mxroute.out.test[127.0.0.21]:25", e
    assert (e["dsn"], e["attempts"]) == ("2.0.0", "1")


@pytest.mark.outbound
def test_a_refused_preferred_mx_falls_back_to_the_next(ringmx_factory, outbound_nsd, receivers):
    # nothing listens on mx1 (127.0.0.22): connection refused; mx2 takes it in the same attempt
    rcv = receivers(zone_address("mx2.fallback.out.test"))
    srv = mta(ringmx_factory, outbound_nsd)
    qid = send(srv, SENDER, ["u@fallback.out.test"], make_message(subject="fallback"))
    rcv.wait_messages(1)
    (e,) = wait_events(srv, "delivered", qid=qid)
    assert e["relay"] == "mx2.fallback.out.test[127.0.0.23]:25", e


@pytest.mark.outbound
def test_a_domain_without_mx_is_delivered_to_its_address(ringmx_factory, outbound_nsd,
                                                         receivers):
    rcv = receivers(zone_address("amx.out.test"))
    srv = mta(ringmx_factory, outbound_nsd)
    send(srv, SENDER, ["u@amx.out.test"], make_message(subject="implicit mx"))
    (m,) = rcv.wait_messages(1)
    assert m.rcpts == ["u@amx.out.test"]


# ---- the SMTP client: extensions and transactions -----------------------------------------------


@pytest.mark.outbound
def test_chunking_and_pipelining_are_used_when_offered(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "feat.out.test", pipelining=True, chunking=True)
    srv = mta(ringmx_factory, outbound_nsd)
    sent = make_message(subject="bdat", body="a\r\n.b\r\n.\r\nc\r\n")
    send(srv, SENDER, ["a@feat.out.test", "b@feat.out.test"], sent)
    (m,) = rcv.wait_messages(1)
    assert m.via == "BDAT" and strip_received(m.data) == sent
    assert m.rcpts == ["a@feat.out.test", "b@feat.out.test"]
    cmds = rcv.connections[0].commands
    mail = [c for c in cmds if c[0] == "MAIL"][0]
    assert mail[2], "MAIL was not pipelined with its RCPTs: %r" % cmds


@pytest.mark.outbound
def test_without_extensions_the_client_waits_for_each_reply_and_dot_stuffs(
        ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "plain.out.test", pipelining=False, chunking=False)
    srv = mta(ringmx_factory, outbound_nsd)
    sent = make_message(subject="plain", body=b".\r\n..\r\n.x\r\nend\r\n")
    send(srv, SENDER, ["a@plain.out.test", "b@plain.out.test"], sent)
    (m,) = rcv.wait_messages(1)
    # the receiver un-stuffs; a client that did not stuff would have ended the data at "."
    assert m.via == "DATA" and strip_received(m.data) == sent
    # (any pipelining without PIPELINING is a violation, checked after the test)


def fold_998(line):
    """A line broken as ringmx (and Postfix) breaks one over 998 octets: CRLF SP after each
    998 on the wire, the space counting in the next piece and a stuffed dot in the first (so
    the first piece of a line starting with '.' holds 997 of its octets)."""
    out, room = [], 997 if line.startswith(b".") else 998
    while len(line) > room:
        out.append(line[:room])
        line, room = b" " + line[room:], 998
    return b"\r\n".join(out + [line])


@pytest.mark.outbound
def test_lines_over_998_octets_are_broken_with_crlf_space_in_data(ringmx_factory, outbound_nsd,
                                                                  receivers):
    # The receiver is strict: a DATA line over 1000 octets with its CRLF (RFC 5321 4.5.3.1.6)
    # is a violation, which fails the test after it.
    rcv = mx_receiver(receivers, "plain.out.test", pipelining=False, chunking=False)
    srv = mta(ringmx_factory, outbound_nsd)
    header = b"X-Long: " + b"h" * 1500
    body = b"b" * 2500 + b"\r\n." + b"d" * 1200 + b"\r\n" + b"e" * 998 + b"\r\nend\r\n"
    sent = make_message(subject="long lines", body=body, headers=[header.decode()])
    send(srv, SENDER, ["a@plain.out.test"], sent)
    (m,) = rcv.wait_messages(1)
    got = strip_received(m.data)
    assert max(len(l) for l in got.split(b"\r\n")) == 998
    # a header breaks into a folded header line; a body line gains one space per break; a
    # line of 998 is left alone
    want = b"\r\n".join(fold_998(l) for l in sent.split(b"\r\n"))
    assert got == want
    assert b"\r\n" + fold_998(header) + b"\r\n" in got
    assert b"\r\n" + b"e" * 998 + b"\r\n" in got


@pytest.mark.outbound
def test_the_recipients_of_a_message_share_transactions_of_max_recipients(
        ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "rcpts.out.test")
    srv = mta(ringmx_factory, outbound_nsd,
              extra={"domain rcpts.out.test": {"max_recipients": "2"}})
    rcpts = ["u%d@rcpts.out.test" % i for i in range(5)]
    sent = make_message(subject="five")
    qid = send(srv, SENDER, rcpts, sent)
    rcv.wait_rcpts(5)
    assert sorted(len(m.rcpts) for m in rcv.messages) == [1, 2, 2]
    assert sorted(rcv.rcpts()) == rcpts
    assert all(strip_received(m.data) == sent for m in rcv.messages)
    assert len(wait_events(srv, "delivered", 5, qid=qid)) == 5


@pytest.mark.outbound
def test_an_idle_connection_is_reused_and_closed_after_idle_timeout(ringmx_factory,
                                                                    outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "idle.out.test")
    srv = mta(ringmx_factory, outbound_nsd, deliver={"idle_timeout": "2"})
    send(srv, SENDER, ["a@idle.out.test"], make_message(subject="first"))
    rcv.wait_messages(1)
    time.sleep(0.3)
    send(srv, SENDER, ["b@idle.out.test"], make_message(subject="second"))
    rcv.wait_messages(2)
    assert len(rcv.connections) == 1, "the second message did not reuse the idle connection"
    s = rcv.connections[0]
    t_last = rcv.messages[-1].t
    wait_until(lambda: s.t_close is not None, 6, "the idle connection was never closed")
    assert s.quit, "the idle connection was dropped without QUIT"
    assert 1.5 <= s.t_close - t_last <= 4.5, s.t_close - t_last


# ---- batching, connection limits and rollup -----------------------------------------------------


@pytest.mark.outbound
def test_1000_messages_for_one_domain_use_few_connections(ringmx_factory, outbound_nsd,
                                                          receivers):
    rcv = mx_receiver(receivers, "batch.out.test", pipelining=True, chunking=True)
    srv = mta(ringmx_factory, outbound_nsd, extra={"domain batch.out.test": {
        "max_connections": "4", "max_messages_per_connection": "100"}})
    bench(srv, 1000, "u{n}@batch.out.test", 4)
    rcv.wait_messages(1000, timeout=60)
    assert sorted(rcv.rcpts()) == sorted("u%d@batch.out.test" % n for n in range(1000))
    assert rcv.max_concurrent <= 4
    sessions = rcv.connections
    assert len(sessions) <= 1000 // 100 + 4, len(sessions)
    assert max(len(s.messages) for s in sessions) <= 100
    wait_events(srv, "delivered", 1000, timeout=10)


@pytest.mark.outbound
def test_max_connections_of_a_domain_is_respected(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "conns.out.test", eod_delay_s=0.02)
    srv = mta(ringmx_factory, outbound_nsd, extra={"domain conns.out.test": {
        "max_connections": "2", "max_messages_per_connection": "10"}})
    bench(srv, 100, "u{n}@conns.out.test", 4)
    rcv.wait_messages(100, timeout=30)
    assert rcv.max_concurrent <= 2
    assert all(len(s.messages) <= 10 for s in rcv.connections)
    assert len(rcv.connections) >= 10


@pytest.mark.outbound
def test_domains_with_the_same_mx_hosts_share_one_site(ringmx_factory, outbound_nsd,
                                                       receivers):
    rcv = mx_receiver(receivers, "rollup.out.test", eod_delay_s=0.01)  # mx.rollup.out.test
    srv = mta(ringmx_factory, outbound_nsd, deliver={"max_connections": "3"})
    send_many(srv, 200, SENDER, lambda i: ["u%d@r%d.out.test" % (i, i % 10)])
    rcv.wait_messages(200, timeout=30)
    assert rcv.max_concurrent <= 3, rcv.max_concurrent
    mixed = [s for s in rcv.connections if len({d for m in s.messages for d in m.domains}) > 1]
    assert mixed, "no session carried mail for more than one domain of the site"


# ---- retries and backoff ------------------------------------------------------------------------


@pytest.mark.outbound
def test_a_451_to_the_data_is_retried_and_then_delivered(ringmx_factory, outbound_nsd,
                                                         receivers):
    rcv = mx_receiver(receivers, "retry.out.test")
    rcv.fail("EOD", "451 4.3.0 try again later", times=1)
    srv = mta(ringmx_factory, outbound_nsd, queue={"retry": "1s"})
    sent = make_message(subject="retry")
    qid = send(srv, SENDER, ["u@retry.out.test"], sent)
    (d,) = wait_events(srv, "deferred", qid=qid)
    assert d["dsn"] == "4.3.0" and d["reply"].startswith("451") and d["attempts"] == "1"
    assert 1 <= int(d["retry_s"]) <= 2, d
    (e,) = wait_events(srv, "delivered", qid=qid, timeout=8)
    assert e["attempts"] == "2"
    (m,) = rcv.messages
    assert strip_received(m.data) == sent
    assert len(rcv.rejected) == 1


@pytest.mark.outbound
def test_a_451_to_one_recipient_defers_only_that_recipient(ringmx_factory, outbound_nsd,
                                                           receivers):
    rcv = mx_receiver(receivers, "retry.out.test")
    rcv.fail("RCPT", "451 4.2.0 greylisted", match="grey@", times=1)
    srv = mta(ringmx_factory, outbound_nsd, queue={"retry": "1s"})
    qid = send(srv, SENDER, ["ok@retry.out.test", "grey@retry.out.test"],
               make_message(subject="greylist"))
    (d,) = wait_events(srv, "deferred", qid=qid)
    assert d["rcpt"] == "grey@retry.out.test" and d["dsn"] == "4.2.0"
    rcv.wait_rcpts(2, timeout=8)
    assert [m.rcpts for m in rcv.messages] == [["ok@retry.out.test"], ["grey@retry.out.test"]]
    wait_events(srv, "delivered", 2, qid=qid)


@pytest.mark.outbound
def test_a_421_greeting_backs_off_the_whole_site(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "busy.out.test")
    rcv.fail("CONNECT", "421 4.3.2 too busy, come back later")
    srv = mta(ringmx_factory, outbound_nsd, queue={"retry": "1m"},
              extra={"domain busy.out.test": {"max_connections": "2"}})
    send_many(srv, 10, SENDER, lambda i: ["u%d@busy.out.test" % i])
    wait_events(srv, "deferred")
    time.sleep(2)
    # up to max_connections were on their way before the first 421; after it, none
    assert len(rcv.sessions) <= 2, len(rcv.sessions)
    assert rcv.messages == [] and events(srv, "delivered") == []
    for d in events(srv, "deferred"):
        assert d["dsn"].startswith("4.") and int(d["retry_s"]) >= 30, d


# ---- bounces ------------------------------------------------------------------------------------


def one_dsn(srv, timeout=5):
    """The DSN in sender@localhost's Maildir, parsed (the Maildir copy has LF line ends)."""
    (data,) = wait_maildir(srv.maildir, "sender", 1, timeout=timeout)
    return parse_dsn(data)


@pytest.mark.outbound
def test_a_550_recipient_bounces_with_a_dsn_to_the_sender(ringmx_factory, outbound_nsd,
                                                          receivers):
    rcv = mx_receiver(receivers, "bounce.out.test")
    rcv.fail("RCPT", "550 5.1.1 <bad@bounce.out.test>: no such user", match="bad@")
    srv = mta(ringmx_factory, outbound_nsd)
    sent = make_message(subject="will half bounce", body="SECRET-BODY-TEXT\r\n")
    qid = send(srv, SENDER, ["good@bounce.out.test", "bad@bounce.out.test"], sent)
    rcv.wait_messages(1)
    assert rcv.messages[0].rcpts == ["good@bounce.out.test"]
    (b,) = wait_events(srv, "bounced", qid=qid)
    assert (b["rcpt"], b["dsn"]) == ("bad@bounce.out.test", "5.1.1")
    assert b["reply"].startswith("550 5.1.1") and "mx.bounce.out.test" in b["relay"]
    (bq,) = wait_events(srv, "bounce_queued", qid=qid)
    assert bq["to"] == SENDER and bq["recipients"] == "1" and bq["bounce_qid"] != qid
    msg, groups, original = one_dsn(srv)
    assert msg["To"] and SENDER in msg["To"]
    per_rcpt = groups[1:]
    assert len(per_rcpt) == 1
    r = per_rcpt[0]
    assert r["final-recipient"].lower() == "rfc822; bad@bounce.out.test"
    assert r["action"] == "failed" and r["status"] == "5.1.1"
    assert "550" in r.get("diagnostic-code", ""), r
    assert b"Subject: will half bounce" in original
    assert message_id(sent).encode() in original
    assert b"SECRET-BODY-TEXT" not in msg.as_bytes(), "the DSN carries the original body"
    # the DSN is delivered like any mail, from the null sender: it cannot bounce again
    (e,) = wait_events(srv, "delivered", qid=bq["bounce_qid"])
    assert e["rcpt"] == SENDER and e["relay"] == "maildir"
    (data,) = wait_maildir(srv.maildir, "sender")
    assert data.startswith(b"Return-Path: <>\n")


@pytest.mark.outbound
def test_a_5xx_to_the_data_bounces_every_recipient_in_one_dsn(ringmx_factory, outbound_nsd,
                                                              receivers):
    rcv = mx_receiver(receivers, "datafail.out.test")
    rcv.fail("EOD", "554 5.6.0 content rejected")
    srv = mta(ringmx_factory, outbound_nsd)
    qid = send(srv, SENDER, ["a@datafail.out.test", "b@datafail.out.test"],
               make_message(subject="rejected content"))
    b = wait_events(srv, "bounced", 2, qid=qid)
    assert {e["dsn"] for e in b} == {"5.6.0"}
    (bq,) = wait_events(srv, "bounce_queued", qid=qid)
    assert bq["recipients"] == "2"
    msg, groups, _ = one_dsn(srv)
    assert sorted(g["final-recipient"].lower() for g in groups[1:]) == [
        "rfc822; a@datafail.out.test", "rfc822; b@datafail.out.test"]


@pytest.mark.outbound
def test_a_null_mx_bounces_at_once_with_5_1_10(ringmx_factory, outbound_nsd):
    srv = mta(ringmx_factory, outbound_nsd)
    qid = send(srv, SENDER, ["u@nullmx.out.test"], make_message(subject="null mx"))
    (b,) = wait_events(srv, "bounced", qid=qid)
    assert b["dsn"] == "5.1.10" and events(srv, "deferred") == []
    _, groups, _ = one_dsn(srv)
    assert groups[1]["status"] == "5.1.10"


@pytest.mark.outbound
def test_a_domain_that_does_not_exist_bounces_with_5_1_2(ringmx_factory, outbound_nsd):
    srv = mta(ringmx_factory, outbound_nsd)
    qid = send(srv, SENDER, ["u@nosuch.out.test"], make_message(subject="nxdomain"))
    (b,) = wait_events(srv, "bounced", qid=qid)
    assert b["dsn"] == "5.1.2"
    _, groups, _ = one_dsn(srv)
    assert groups[1]["status"] == "5.1.2"


@pytest.mark.outbound
def test_mail_deferred_past_max_lifetime_bounces_with_4_4_7(ringmx_factory, outbound_nsd,
                                                            receivers):
    rcv = mx_receiver(receivers, "expire.out.test")
    rcv.fail("RCPT", "451 4.3.0 not today")
    srv = mta(ringmx_factory, outbound_nsd, queue={"retry": "1s", "max_lifetime": "3s"})
    qid = send(srv, SENDER, ["u@expire.out.test"], make_message(subject="expires"))
    (b,) = wait_events(srv, "bounced", qid=qid, timeout=12)
    assert b["dsn"] == "4.4.7"
    d = events(srv, "deferred", qid=qid)
    assert len(d) >= 2, d  # retried every second until the 3 s were up
    _, groups, _ = one_dsn(srv)
    assert groups[1]["action"] == "failed" and groups[1]["status"].startswith("4."), groups
    assert rcv.messages == []


@pytest.mark.outbound
def test_the_null_sender_is_never_sent_a_bounce(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "nullsender.out.test")
    rcv.fail("RCPT", "550 5.1.1 no such user")
    srv = mta(ringmx_factory, outbound_nsd)
    qid = send(srv, "", ["u@nullsender.out.test"], make_message(subject="from <>"))
    wait_events(srv, "bounced", qid=qid)
    time.sleep(1.5)
    assert events(srv, "bounce_queued") == []
    assert not os.path.exists(srv.maildir) or all(
        not files for _, _, files in os.walk(srv.maildir))
    assert [m.mail_from for m in rcv.messages] == []


# ---- rate limits --------------------------------------------------------------------------------


@pytest.mark.outbound
def test_a_domain_rate_limit_spreads_the_deliveries(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "rate.out.test")
    srv = mta(ringmx_factory, outbound_nsd, extra={"domain rate.out.test": {"rate": "20/s"}})
    bench(srv, 60, "u{n}@rate.out.test", 2)
    rcv.wait_messages(60, timeout=20)
    ts = sorted(m.t for m in rcv.messages)
    span = ts[-1] - ts[0]
    # 60 messages at 20/s take about 3 s; allow 50 % over the rate (a burst at the start, a
    # loaded machine): at most 30/s on average
    assert span >= 59 / 30.0, "60 messages in %.2f s: over 20/s" % span


# ---- restart and hold ---------------------------------------------------------------------------


@pytest.mark.outbound
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_mail_queued_for_a_down_site_survives_a_restart(ringmx_factory, outbound_nsd,
                                                        receivers, sig):
    rcv = mx_receiver(receivers, "restart.out.test", start=False)
    srv = mta(ringmx_factory, outbound_nsd, queue={"retry": "1s"})
    sent = send_many(srv, 20, SENDER, lambda i: ["u%d@restart.out.test" % i])
    wait_events(srv, "deferred")  # connection refused
    assert srv.stop(sig) == (0 if sig == signal.SIGTERM else -9)
    rcv.start()
    srv.start()
    wait_until(lambda: {mid for _, mid in sent} <= set(rcv.message_ids()), 15,
               lambda: "all 20 delivered after the restart (have %d)" % len(
                   set(rcv.message_ids())))
    # at least once, and each copy is the one that was queued
    qids = {q for q, _ in sent}
    assert {received_qid(m.data) for m in rcv.messages} == qids


@pytest.mark.outbound
def test_kill_9_in_the_middle_of_deliveries_loses_nothing(ringmx_factory, outbound_nsd,
                                                          receivers):
    rcv = mx_receiver(receivers, "restart.out.test", eod_delay_s=0.02)
    srv = mta(ringmx_factory, outbound_nsd, queue={"retry": "1s"},
              extra={"domain restart.out.test": {"max_connections": "2"}})
    sent = send_many(srv, 100, SENDER, lambda i: ["k%d@restart.out.test" % i])
    wait_until(lambda: len(rcv.messages) >= 10, 10)
    srv.kill()
    srv.start()
    wait_until(lambda: {mid for _, mid in sent} <= set(rcv.message_ids()), 20,
               lambda: "all 100 delivered after kill -9 (have %d)" % len(
                   set(rcv.message_ids())))


@pytest.mark.outbound
def test_hold_keeps_the_mail_in_the_queue(ringmx_factory, outbound_nsd, receivers):
    rcv = mx_receiver(receivers, "hold.out.test")
    srv = mta(ringmx_factory, outbound_nsd, queue={"hold": "yes"})
    sent = send_many(srv, 3, SENDER, lambda i: ["u%d@hold.out.test" % i])
    time.sleep(3)
    assert rcv.sessions == [] and events(srv, "delivered") == []
    assert events(srv, "bounced") == [] and events(srv, "deferred") == []
    assert srv.stop() == 0
    assert {q for q, _ in sent} <= {r["qid"] for r in srv.spool_records()}


@pytest.mark.outbound
def test_a_bracketed_host_name_hop_uses_its_address_without_mx(ringmx_factory, outbound_nsd,
                                                               receivers):
    """`smtp:[amx.out.test]:2527`: the name's A record (127.0.0.24), no MX lookup; the
    receiver listens on that address, on a port no MX would ever use."""
    rcv = receivers(zone_address("amx.out.test"), 2527)
    srv = mta(ringmx_factory, outbound_nsd, transport={"named.test": "smtp:[amx.out.test]:2527"})
    qid = send(srv, SENDER, ["u@named.test"], make_message(subject="named hop"))
    rcv.wait_messages(1)
    (e,) = wait_events(srv, "delivered", qid=qid)
    assert e["relay"] == "amx.out.test[127.0.0.24]:2527", e
