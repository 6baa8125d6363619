"""ringmx on the wire: raw sockets that send exactly the bytes a test wants.

Pipelining and BDAT, the bounds of DESIGN invariant 6, SMTP smuggling (invariant 3), config
checking, graceful stop and SIGHUP reload.
"""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, free_port
from smtpwire import Wire, assert_serves, body_after_received, ehlo, unstuff

F_8BITMIME, F_SMTPUTF8, F_BINARY = 1, 2, 4
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f]{16})$")


def qid_of(reply):
    m = QUEUED.match(reply.last)
    assert m, reply
    return m.group(1)


def rejects(srv, reason):
    return [l for l in srv.log_events("reject") if "reason=%s" % reason in l]


# ---- pipelining ---------------------------------------------------------------------------

def test_ehlo_mail_three_rcpts_and_data_in_one_write_get_every_reply_in_order(ringmx):
    cmds = (b"EHLO pipe.test\r\n"
            b"MAIL FROM:<pipe@client.test>\r\n"
            b"RCPT TO:<a@localhost>\r\n"
            b"RCPT TO:<b@example.test>\r\n"
            b"RCPT TO:<c@elsewhere.test>\r\n"
            b"DATA\r\n")
    body = b"Subject: pipelined\r\n\r\nall in one write\r\n"
    qids = []
    one_read = False
    # The replies should leave in one send and so arrive in one read; TCP is allowed to split
    # them, so that is asked of one attempt in three. Order and count are asked of every one.
    for attempt in range(3):
        with Wire(ringmx.port) as w:
            before = w.nrecv
            w.send(cmds)
            rs = w.replies(6)
            assert [r.code for r in rs] == [250, 250, 250, 250, 250, 354], rs
            assert rs[0].lines[0] == "250-mx.test" and "250-PIPELINING" in rs[0].lines
            assert [r.last for r in rs[1:]] == ["250 2.1.0 Ok"] + ["250 2.1.5 Ok"] * 3 + \
                ["354 End data with <CR><LF>.<CR><LF>"]
            one_read |= all(r.recv_index == before + 1 for r in rs) and w.nrecv == before + 1
            w.send(body + b".\r\nQUIT\r\n")
            done, bye = w.replies(2)
            qids.append(qid_of(done))
            assert bye.code == 221
            w.assert_closed()
        if one_read:
            break
    assert one_read, "the six replies never came in one read"
    recs = ringmx.spool_records()
    assert sorted(r["qid"] for r in recs) == sorted(qids)
    for r in recs:
        assert r["from"] == "pipe@client.test"
        assert r["rcpts"] == ["a@localhost", "b@example.test", "c@elsewhere.test"]
        assert body_after_received(r["message"]) == body
    assert_serves(ringmx.port)


# ---- BDAT (RFC 3030) ----------------------------------------------------------------------

def test_bdat_last_pipelined_with_mail_and_rcpt_is_stored_byte_exact_and_flagged_binary(
        ringmx):
    # Counted bytes: bare CR/LF, a lone dot line and NUL are data, stored as sent.
    chunk = (b"Subject: bdat\r\n\r\nbare\nLF, bare\rCR,\r\n.\r\n"
             b"..two dots\r\nNUL\x00 and 8-bit \xff\xfe\r\nno final CRLF")
    with Wire(ringmx.port) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<bdat@client.test>\r\nRCPT TO:<r@localhost>\r\n"
               b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        mail, rcpt, done = w.replies(3)
        assert (mail.last, rcpt.last) == ("250 2.1.0 Ok", "250 2.1.5 Ok")
        qid = qid_of(done)
        # The chunk was not read as commands, and the session goes on.
        assert w.cmd("NOOP").last == "250 2.0.0 Ok"
        assert w.quiet()
    recs = ringmx.spool_records()
    assert [r["qid"] for r in recs] == [qid]
    assert recs[0]["flags"] & F_BINARY
    assert body_after_received(recs[0]["message"]) == chunk
    assert recs[0]["size"] == len(recs[0]["message"])


def test_bdat_in_two_chunks_is_acknowledged_per_chunk_and_stored_as_their_concatenation(
        ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<chunks@client.test>").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        w.send(b"BDAT 3\r\nabc")
        assert w.reply().last == "250 2.0.0 3 octets received"
        w.send(b"BDAT 4 LAST\r\nd\r\ne")
        qid = qid_of(w.reply())
        # ... and the two chunks pipelined in one write, in a second transaction.
        w.send(b"MAIL FROM:<chunks2@client.test>\r\nRCPT TO:<r@localhost>\r\n"
               b"BDAT 3\r\nxyzBDAT 4 LAST\r\n1234")
        rs = w.replies(4)
        assert [r.last for r in rs[:3]] == ["250 2.1.0 Ok", "250 2.1.5 Ok",
                                          "250 2.0.0 3 octets received"]
        qid2 = qid_of(rs[3])
    recs = {r["qid"]: r for r in ringmx.spool_records()}
    assert set(recs) == {qid, qid2}
    assert body_after_received(recs[qid]["message"]) == b"abcd\r\ne"
    assert body_after_received(recs[qid2]["message"]) == b"xyz1234"
    assert recs[qid]["flags"] & F_BINARY and recs[qid2]["flags"] & F_BINARY


def test_bdat_0_last_ends_a_chunked_message_at_once(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<zero@client.test>").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        w.send(b"BDAT 5\r\nhello")
        assert w.reply().last == "250 2.0.0 5 octets received"
        # Nothing follows the command: the reply must not wait for more bytes.
        w.send(b"BDAT 0 LAST\r\n")
        qid = qid_of(w.reply(timeout=3))
        assert w.cmd("NOOP").code == 250
    recs = ringmx.spool_records()
    assert [r["qid"] for r in recs] == [qid]
    assert body_after_received(recs[0]["message"]) == b"hello"


def test_bdat_0_last_as_the_only_chunk_stores_an_empty_message(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<empty@client.test>").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        w.send(b"BDAT 0 LAST\r\n")
        qid = qid_of(w.reply(timeout=3))
        assert w.cmd("NOOP").code == 250
    recs = ringmx.spool_records()
    assert [r["qid"] for r in recs] == [qid]
    assert body_after_received(recs[0]["message"]) == b""


def test_rcpt_between_bdat_chunks_gets_503_so_no_accepted_recipient_is_left_out(ringmx):
    # Found by tests/fuzz/fuzz_session: the first chunk writes the envelope into the record, so
    # a RCPT after it used to get 250 and then be missing from the stored message.
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<late@client.test>").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        w.send(b"BDAT 3\r\nabc")
        assert w.reply().last == "250 2.0.0 3 octets received"
        r = w.cmd("RCPT TO:<second@localhost>")
        assert r.last == "503 5.5.1 Error: RCPT after BDAT", r
        w.send(b"BDAT 2 LAST\r\nde")
        qid = qid_of(w.reply())
    recs = ringmx.spool_records()
    assert [(r["qid"], r["rcpts"]) for r in recs] == [(qid, ["r@localhost"])]
    assert body_after_received(recs[0]["message"]) == b"abcde"
    assert len(rejects(ringmx, "rcpt_after_bdat")) == 1


def test_bdat_without_rcpt_consumes_the_chunk_refuses_it_and_the_session_goes_on(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        # No MAIL at all: the chunk (which looks like commands) must be skipped, not run.
        w.send(b"BDAT 12 LAST\r\nQUIT\r\nRSET\r\n")
        r = w.reply()
        assert r.code == 503 and r.last.startswith("503 5.5.1 "), r
        assert w.cmd("NOOP").last == "250 2.0.0 Ok"
        # MAIL but no RCPT: refused, and the transaction is gone.
        assert w.cmd("MAIL FROM:<norcpt@client.test>").code == 250
        w.send(b"BDAT 6\r\nQUIT\r\n")
        r = w.reply()
        assert r.code in (503, 554) and r.last[4:10] == "5.5.1 ", r
        assert w.cmd("NOOP").last == "250 2.0.0 Ok"
        assert w.quiet()
        # A whole transaction works afterwards.
        w.send(b"MAIL FROM:<good@client.test>\r\nRCPT TO:<r@localhost>\r\nBDAT 2 LAST\r\nok")
        rs = w.replies(3)
        qid = qid_of(rs[2])
    recs = ringmx.spool_records()
    assert [(r["qid"], r["from"]) for r in recs] == [(qid, "good@client.test")]
    assert body_after_received(recs[0]["message"]) == b"ok"


# ---- bounds (DESIGN invariant 6) ----------------------------------------------------------

def test_a_command_line_longer_than_max_line_length_gets_500_and_the_session_goes_on(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<" + b"a" * 5000 + b"@client.test>\r\n")
        r = w.reply()
        assert r.last == "500 5.5.2 Error: line too long"
        assert w.quiet()  # one reply for the whole line, none for its tail
        # The over-long MAIL did not open a transaction; a normal one works.
        assert w.cmd("RCPT TO:<r@localhost>").code == 503
        assert w.cmd("MAIL FROM:<ok@client.test>").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        assert w.cmd("DATA").code == 354
        w.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        qid = qid_of(w.reply())
    assert [r["qid"] for r in ringmx.spool_records()] == [qid]
    assert len(rejects(ringmx, "line_too_long")) == 1


def test_a_line_of_exactly_max_line_length_is_taken_and_one_byte_more_is_not(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        exact = b"NOOP " + b"x" * (2048 - len(b"NOOP \r\n"))  # 2048 bytes with its CRLF
        assert w.cmd(exact).last == "250 2.0.0 Ok"
        assert w.cmd(exact + b"x").last == "500 5.5.2 Error: line too long"
        assert w.cmd("NOOP").last == "250 2.0.0 Ok"
    assert len(rejects(ringmx, "line_too_long")) == 1


def test_a_transaction_sent_one_byte_per_write_is_read_like_one_sent_at_once(ringmx):
    with Wire(ringmx.port) as w:
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def trickle(data):
            for i in range(len(data)):
                w.send(data[i:i + 1])

        trickle(b"EHLO slow.test\r\nMAIL FROM:<slow@client.test>\r\nRCPT TO:<r@localhost>\r\n"
                b"DATA\r\n")
        assert [r.code for r in w.replies(4)] == [250, 250, 250, 354]
        body = b"Subject: slow\r\n\r\n..stuffed\r\nline\r\n"
        trickle(body + b".\r\nNOOP\r\n")
        done, noop = w.replies(2)
        qid = qid_of(done)
        assert noop.last == "250 2.0.0 Ok"
    recs = ringmx.spool_records()
    assert [r["qid"] for r in recs] == [qid]
    assert body_after_received(recs[0]["message"]) == unstuff(body + b".\r\n")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_megabyte_line_without_crlf_gets_one_500_and_the_server_lives_on(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        w.send(b"A" * (1 << 20))
        assert w.reply().last == "500 5.5.2 Error: line too long"
        # The server is alive and serving others while this line is still open.
        assert_serves(ringmx.port)
        # The line ends; the session is usable again, with no further reply for the line.
        w.send(b"A" * 1000 + b"\r\nNOOP\r\n")
        assert w.reply().last == "250 2.0.0 Ok"
        assert w.quiet()
        assert w.cmd("MAIL FROM:<after@client.test>").code == 250
    assert ringmx.proc.poll() is None
    assert ringmx.spool_records() == []
    assert len(rejects(ringmx, "line_too_long")) == 1
    assert_serves(ringmx.port)


def test_an_endless_line_is_skipped_not_buffered(ringmx_factory):
    # One shard, so that the warm-up touches the very receive buffers the big line goes
    # through: each shard's buffer ring (16 MiB) counts in RSS once it has been used.
    srv = ringmx_factory(server={"shards": "1"})
    chunk = b"B" * (1 << 20)
    with Wire(srv.port) as w:
        ehlo(w)
        for _ in range(24):
            w.send(chunk)
        assert w.reply().last == "500 5.5.2 Error: line too long"
        rss_before = rss_kb(srv.proc.pid)
        for _ in range(64):
            w.send(chunk)
        w.send(b"\r\nNOOP\r\n")
        assert w.reply().last == "250 2.0.0 Ok"
        grown = rss_kb(srv.proc.pid) - rss_before
        assert grown < 4 * 1024, "RSS grew by %d KiB over a 64 MiB line" % grown
    assert_serves(srv.port)


def test_a_bdat_message_bigger_than_max_message_size_gets_552_and_is_not_stored(
        ringmx_factory):
    srv = ringmx_factory(server={"max_message_size": "65536"})
    with Wire(srv.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<big@client.test>").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        w.send(b"BDAT 40000\r\n" + b"a" * 40000)
        assert w.reply().last == "250 2.0.0 40000 octets received"
        # The chunk that crosses the limit is still read whole (its bytes are not commands).
        w.send(b"BDAT 40000 LAST\r\n" + b"QUIT\r\n" * 6666 + b"QUIT")
        assert w.reply().last == "552 5.3.4 Error: message too big"
        assert w.cmd("NOOP").last == "250 2.0.0 Ok"
        # The transaction is over: a new one starts cleanly and is stored.
        w.send(b"MAIL FROM:<small@client.test>\r\nRCPT TO:<r@localhost>\r\nBDAT 5 LAST\r\nsmall")
        qid = qid_of(w.replies(3)[2])
    recs = srv.spool_records()
    assert [(r["qid"], r["from"]) for r in recs] == [(qid, "small@client.test")]
    assert len(rejects(srv, "message_too_big")) == 1


def test_the_recipient_past_max_recipients_gets_452_and_the_message_keeps_the_first_five(
        ringmx_factory):
    srv = ringmx_factory(server={"max_recipients": "5"})
    rcpts = ["r%d@localhost" % i for i in range(1, 8)]
    with Wire(srv.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<many@client.test>").code == 250
        got = [w.cmd("RCPT TO:<%s>" % r).last for r in rcpts]
        assert got == ["250 2.1.5 Ok"] * 5 + ["452 4.5.3 Error: too many recipients"] * 2
        assert w.cmd("DATA").code == 354
        w.send(b"Subject: many\r\n\r\nfive\r\n.\r\n")
        qid = qid_of(w.reply())
        # 452 is not an error that counts toward max_errors, and the session goes on.
        assert w.cmd("NOOP").code == 250
    recs = srv.spool_records()
    assert [(r["qid"], r["rcpts"]) for r in recs] == [(qid, rcpts[:5])]
    assert len(rejects(srv, "too_many_recipients")) == 2


def test_after_max_errors_unknown_commands_the_server_says_421_and_closes(ringmx_factory):
    srv = ringmx_factory(server={"max_errors": "3"})
    with Wire(srv.port) as w:
        ehlo(w)
        assert w.cmd("FOO").last == "500 5.5.2 Error: command not recognized"
        assert w.cmd("BAR").code == 500
        w.send(b"BAZ\r\nNOOP\r\n")
        r500, r421 = w.replies(2)
        assert r500.code == 500
        assert r421.last == "421 4.7.0 mx.test Error: too many errors"
        w.assert_closed()  # the NOOP after it was not answered
    assert len(rejects(srv, "too_many_errors")) == 1
    assert_serves(srv.port)


def test_an_idle_client_gets_421_4_4_2_after_timeout_command_and_is_closed(ringmx_factory):
    srv = ringmx_factory(server={"timeout_command": "1"})
    with Wire(srv.port) as w:
        ehlo(w)
        t0 = time.monotonic()
        r = w.reply(timeout=5)
        waited = time.monotonic() - t0
        assert r.last == "421 4.4.2 mx.test Error: timeout exceeded"
        assert 0.8 <= waited <= 3.5, waited
        w.assert_closed()
    assert len(rejects(srv, "timeout")) == 1
    assert_serves(srv.port)


@pytest.fixture
def delayed(ringmx_factory):
    return ringmx_factory(server={"greeting_delay_ms": "800"})


def test_a_client_that_talks_before_the_delayed_greeting_gets_554_and_is_closed(delayed):
    with Wire(delayed.port, greet=False) as w:
        w.send(b"EHLO early.test\r\n")
        r = w.reply(timeout=3)
        assert r.last == "554 5.5.1 Error: SMTP protocol synchronization"
        w.assert_closed()
    assert len(rejects(delayed, "early_talker")) == 1


def test_a_patient_client_gets_the_greeting_after_greeting_delay_ms(delayed):
    t0 = time.monotonic()
    with Wire(delayed.port, greet=False) as w:
        r = w.reply(timeout=4)
        waited = time.monotonic() - t0
        assert r.last == "220 mx.test ESMTP ringmx"
        assert 0.7 <= waited <= 2.5, waited
        ehlo(w)
        assert w.cmd("QUIT").code == 221
    assert rejects(delayed, "early_talker") == []


def test_the_third_connection_from_one_address_gets_421_with_max_connections_per_ip_2(
        ringmx_factory):
    srv = ringmx_factory(server={"max_connections_per_ip": "2"})
    a = Wire(srv.port, source="127.0.0.2")
    b = Wire(srv.port, source="127.0.0.2")
    try:
        assert a.greeting.code == 220 and b.greeting.code == 220
        with Wire(srv.port, source="127.0.0.2", greet=False) as c:
            r = c.reply()
            assert r.last == "421 4.7.0 Error: too many connections from your address"
            c.assert_closed()
        # relay_networks (127.0.0.1) are exempt from the limit.
        with Wire(srv.port) as d, Wire(srv.port) as e, Wire(srv.port) as f:
            assert {d.greeting.code, e.greeting.code, f.greeting.code} == {220}
        # The two held connections still work.
        assert a.cmd("NOOP").code == 250 and b.cmd("NOOP").code == 250
        # Once one closes, its place is free again.
        assert a.cmd("QUIT").code == 221
        a.assert_closed()
        deadline = time.monotonic() + 3
        while True:
            with Wire(srv.port, source="127.0.0.2", greet=False) as g:
                r = g.reply()
                if r.code == 220:
                    ehlo(g)
                    break
            assert time.monotonic() < deadline, "the slot was never given back"
            time.sleep(0.05)
    finally:
        a.close()
        b.close()
    lines = [l for l in srv.log_events("reject") if "reason=connections_per_ip" in l]
    assert lines and all("client=127.0.0.2" in l for l in lines)


def test_an_http_request_gets_554_and_the_connection_is_closed(ringmx):
    with Wire(ringmx.port) as w:
        w.send(b"GET / HTTP/1.1\r\nHost: mx.test\r\nUser-Agent: curl\r\n\r\n")
        r = w.reply()
        assert r.code == 554 and r.last.startswith("554 5.7.0 ")
        w.assert_closed()  # and nothing was said to the header lines
    assert len(rejects(ringmx, "http_command")) == 1
    assert_serves(ringmx.port)


def test_a_nul_byte_in_a_command_gets_500_5_5_2_and_the_command_is_not_run(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        r = w.cmd(b"NO\x00OP")
        assert r.last == "500 5.5.2 Error: invalid character in command"
        r = w.cmd(b"MAIL FROM:<nul\x00@client.test>")
        assert r.last == "500 5.5.2 Error: invalid character in command"
        # The MAIL was not taken: no transaction is open.
        assert w.cmd("RCPT TO:<r@localhost>").code == 503
        assert w.cmd("MAIL FROM:<clean@client.test>").code == 250
        assert w.cmd("NOOP").code == 250
    assert len(rejects(ringmx, "bad_character")) == 2


def test_a_command_ending_in_a_bare_lf_gets_500_and_is_not_run(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<lf@client.test>\n")
        assert w.reply().last == "500 5.5.2 Error: bare <LF> received"
        assert w.cmd("RCPT TO:<r@localhost>").code == 503
        assert w.cmd("MAIL FROM:<crlf@client.test>").code == 250


@pytest.mark.parametrize("param,reply", [
    ("SIZE=abc", "501 5.5.4 Error: bad parameter syntax"),
    ("SIZE=", "501 5.5.4 Error: bad parameter syntax"),
    ("BODY=BINARYMIME", "501 5.5.4 Error: bad parameter syntax"),
    ("FOO=bar", "555 5.5.4 Error: unsupported parameter"),
    ("SIZE=1000 X-UNKNOWN", "555 5.5.4 Error: unsupported parameter"),
])
def test_a_bad_mail_parameter_is_refused_and_leaves_no_transaction(ringmx, param, reply):
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<p@client.test> " + param).last == reply
        assert w.cmd("RCPT TO:<r@localhost>").code == 503
        assert w.cmd("MAIL FROM:<p@client.test> SIZE=100 BODY=8BITMIME").code == 250
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        assert w.cmd("DATA").code == 354
        w.send(b"Subject: p\r\n\r\np\r\n.\r\n")
        qid = qid_of(w.reply())
    recs = ringmx.spool_records()
    assert [(r["qid"], r["flags"] & F_8BITMIME) for r in recs] == [(qid, F_8BITMIME)]


def test_mail_before_ehlo_gets_503_and_works_after_ehlo(ringmx):
    with Wire(ringmx.port) as w:
        assert w.cmd("MAIL FROM:<early@client.test>").last == \
            "503 5.5.1 Error: send HELO/EHLO first"
        assert w.cmd("DATA").code == 503
        ehlo(w)
        assert w.cmd("MAIL FROM:<early@client.test>").code == 250


def test_data_before_rcpt_is_refused_and_the_open_transaction_survives(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("DATA").last == "503 5.5.1 Error: need RCPT command"
        assert w.cmd("MAIL FROM:<first@client.test>").code == 250
        r = w.cmd("DATA")
        assert r.code in (503, 554) and r.last[4:10] == "5.5.1 ", r
        assert w.cmd("RCPT TO:<r@localhost>").code == 250
        assert w.cmd("DATA").code == 354
        w.send(b"Subject: d\r\n\r\nd\r\n.\r\n")
        qid = qid_of(w.reply())
    recs = ringmx.spool_records()
    assert [(r["qid"], r["from"]) for r in recs] == [(qid, "first@client.test")]


def test_a_nested_mail_gets_503_and_the_first_transaction_is_kept(ringmx):
    with Wire(ringmx.port) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<first@client.test>").code == 250
        assert w.cmd("RCPT TO:<r1@localhost>").code == 250
        assert w.cmd("MAIL FROM:<second@client.test>").last == \
            "503 5.5.1 Error: nested MAIL command"
        assert w.cmd("RCPT TO:<r2@localhost>").code == 250
        assert w.cmd("DATA").code == 354
        w.send(b"Subject: n\r\n\r\nn\r\n.\r\n")
        qid = qid_of(w.reply())
    recs = ringmx.spool_records()
    assert [(r["qid"], r["from"], r["rcpts"]) for r in recs] == \
        [(qid, "first@client.test", ["r1@localhost", "r2@localhost"])]


# ---- SMTP smuggling (DESIGN invariant 3) --------------------------------------------------

BAD_ENDINGS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\n.\r",
               b"\r.\n", b"\r\n\n.\r\n", b"\r\n.\r\r\n"]
SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\n"
            b"smuggled\r\n.\r\n")  # its CRLF.CRLF is the real end of the outer message


def smuggle(srv, ending):
    """One DATA transaction holding `ending` + a whole second transaction, then NOOP and QUIT
    in the same write. Returns (reply to the end of data, the input that DATA carried)."""
    data = b"Subject: smuggle\r\n\r\nhello" + ending + SMUGGLED
    with Wire(srv.port) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<sender@client.test>\r\nRCPT TO:<rcpt@localhost>\r\nDATA\r\n")
        assert [r.code for r in w.replies(3)] == [250, 250, 354]
        w.send(data + b"NOOP\r\nQUIT\r\n")
        rs = w.replies_until_close()
        # Exactly one reply for the whole input, then the NOOP's and the QUIT's: no
        # 250/250/354 of a second transaction anywhere.
        assert [r.code for r in rs[1:]] == [250, 221], rs
    return rs[0], data


def ending_id(e):
    return e.decode().replace("\r", "CR").replace("\n", "LF")


@pytest.mark.parametrize("ending", BAD_ENDINGS, ids=[ending_id(e) for e in BAD_ENDINGS])
def test_a_bare_newline_end_of_data_is_rejected_with_554_and_nothing_is_stored(ringmx,
                                                                              ending):
    end, _ = smuggle(ringmx, ending)
    assert end.last == "554 5.6.0 Error: bare <CR> or <LF> in message data (RFC 5321 2.3.8)"
    recs = ringmx.spool_records()
    assert not [r for r in recs if r["from"] == "evil@x"]
    assert recs == []
    assert len(rejects(ringmx, "bare_newline")) == 1
    assert ringmx.log_events("accept") == []


@pytest.mark.parametrize("ending", BAD_ENDINGS, ids=[ending_id(e) for e in BAD_ENDINGS])
def test_with_bare_newline_accept_the_smuggled_transaction_is_only_body_bytes(ringmx_factory,
                                                                             ending):
    srv = ringmx_factory(server={"bare_newline": "accept"})
    end, data = smuggle(srv, ending)
    qid = qid_of(end)
    recs = srv.spool_records()
    assert [(r["qid"], r["from"], r["rcpts"]) for r in recs] == \
        [(qid, "sender@client.test", ["rcpt@localhost"])]
    body = body_after_received(recs[0]["message"])
    assert b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nsmuggled\r\n" in body
    assert body == unstuff(data)
    assert len(srv.log_events("accept")) == 1


# ---- config checking ----------------------------------------------------------------------

def write_conf(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join(l + "\n" for l in lines))
    return str(p)


def good_lines(tmp_path, port):
    return ["[server]",
            "listen = 127.0.0.1:%d" % port,
            "hostname = mx.test",
            "shards = 1",
            "[spool]",
            "dir = %s" % (tmp_path / "spool"),
            "[accept]",
            "domains = localhost"]


def ringmx_run(*args, timeout=10):
    return subprocess.run([os.path.join(BIN, "ringmx")] + list(args), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("lineno,line,what", [
    (4, "lisen = 127.0.0.1:25", 'unknown key "lisen"'),
    (4, "max_recipients = abc", "max_recipients"),
    (4, "max_message_size = 1000", "max_message_size"),
    (6, "fsync = maybe", "fsync"),
], ids=["unknown-key", "not-a-number", "below-minimum", "not-a-boolean"])
def test_check_reports_file_and_line_for_a_bad_config_and_the_server_refuses_it(
        tmp_path, lineno, line, what):
    port = free_port()
    lines = good_lines(tmp_path, port)
    lines.insert(lineno - 1, line)
    conf = write_conf(tmp_path, "bad.conf", lines)
    p = ringmx_run("-c", conf, "--check")
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    m = re.search(r"%s:(\d+): (.*)" % re.escape(conf), out)
    assert m, out
    assert int(m.group(1)) == lineno, out
    assert what in m.group(2), out
    assert "ok" not in p.stdout
    # Started for real, it refuses with the same message and never listens.
    s = ringmx_run("-c", conf)
    assert s.returncode == 1, s.stdout + s.stderr
    assert m.group(0) in s.stdout + s.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not (tmp_path / "spool").exists()


def test_check_says_ok_and_exits_0_for_a_good_config(tmp_path):
    conf = write_conf(tmp_path, "good.conf", good_lines(tmp_path, free_port()))
    p = ringmx_run("-c", conf, "--check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "%s: ok" % conf
    assert not (tmp_path / "spool").exists()  # a check creates nothing


def test_check_reports_a_missing_file(tmp_path):
    conf = str(tmp_path / "missing.conf")
    p = ringmx_run("-c", conf, "--check")
    assert p.returncode == 1
    assert conf + ": " in p.stderr


# ---- shard threads ------------------------------------------------------------------------

def cpus_allowed(status_path):
    """The Cpus_allowed_list of a /proc status file ("0-1", "1")."""
    with open(status_path) as f:
        return [l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list:")][0]


def thread_cpus(pid):
    """{thread name: its Cpus_allowed_list} for the process's threads named shard-N."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            name = f.read().strip()
        if name.startswith("shard-"):
            out[name] = cpus_allowed("/proc/%d/task/%s/status" % (pid, tid))
    return out


def process_cpus(pid):
    return cpus_allowed("/proc/%d/status" % pid)


def test_each_shard_thread_runs_pinned_on_its_own_cpu_and_pin_shards_no_leaves_them_free(
        ringmx_factory):
    cpus = sorted(os.sched_getaffinity(0))
    srv = ringmx_factory(server={"shards": str(len(cpus) + 1)})
    # shard i on the i-th CPU of the mask, the one past the last CPU back on the first
    want = {"shard-%d" % i: str(cpus[i % len(cpus)]) for i in range(len(cpus) + 1)}
    srv.wait_log("started")  # every shard is up and has named and pinned itself
    assert thread_cpus(srv.proc.pid) == want
    # the main thread (signals, reload) is not pinned
    assert process_cpus(srv.proc.pid) == process_cpus(os.getpid())
    assert_serves(srv.port)
    free = ringmx_factory(server={"shards": "2", "pin_shards": "no"})
    free.wait_log("started")
    assert thread_cpus(free.proc.pid) == {"shard-0": process_cpus(os.getpid()),
                                          "shard-1": process_cpus(os.getpid())}
    assert_serves(free.port)


# ---- graceful stop ------------------------------------------------------------------------

def test_sigterm_lets_a_message_in_progress_finish_then_says_421_and_exits_0(ringmx_factory):
    srv = ringmx_factory(server={"shutdown_timeout": "5"})
    busy = Wire(srv.port)
    idle = Wire(srv.port)
    try:
        ehlo(busy)
        ehlo(idle)
        busy.send(b"MAIL FROM:<busy@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
        assert [r.code for r in busy.replies(3)] == [250, 250, 354]
        first = b"Subject: in flight\r\n\r\nfirst half\r\n"
        busy.send(first)
        time.sleep(0.1)  # the first half is in the server
        srv.proc.send_signal(signal.SIGTERM)
        # The idle client is told at once.
        r = idle.reply(timeout=3)
        assert r.last == "421 4.3.2 mx.test Service shutting down"
        idle.assert_closed()
        srv.wait_log("stopping", count=2)  # both shards are stopping
        assert srv.proc.poll() is None  # ... but wait for the message in progress
        # New connections are no longer served (refused, or closed with nothing said).
        try:
            late = Wire(srv.port, timeout=1, greet=False)
        except ConnectionRefusedError:
            pass
        else:
            with late:
                late.assert_closed(timeout=3)
        second = b"second half\r\n"
        busy.send(second + b".\r\n")
        done, bye = busy.replies(2)
        qid = qid_of(done)
        assert bye.last == "421 4.3.2 mx.test Service shutting down"
        busy.assert_closed()
    finally:
        busy.close()
        idle.close()
    assert srv.proc.wait(timeout=5) == 0
    recs = srv.spool_records()
    assert [(r["qid"], r["from"]) for r in recs] == [(qid, "busy@client.test")]
    assert body_after_received(recs[0]["message"]) == first + second
    assert srv.log_events("exit")


def test_sigterm_closes_a_transaction_that_does_not_finish_at_shutdown_timeout(
        ringmx_factory):
    srv = ringmx_factory(server={"shutdown_timeout": "1"})
    with Wire(srv.port) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<slow@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
        assert [r.code for r in w.replies(3)] == [250, 250, 354]
        w.send(b"Subject: never finished\r\n\r\npart\r\n")
        time.sleep(0.1)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        r = w.reply(timeout=5)
        assert r.last == "421 4.3.2 mx.test Service shutting down"
        assert 0.7 <= time.monotonic() - t0 <= 4
        w.assert_closed()
    assert srv.proc.wait(timeout=5) == 0
    assert srv.spool_records() == []


# ---- SIGHUP reload ------------------------------------------------------------------------

def test_sighup_reload_adds_a_domain_and_logs_reloaded(ringmx):
    def try_new_domain():
        with Wire(ringmx.port, source="127.0.0.2") as w:  # not a relay client
            ehlo(w)
            assert w.cmd("MAIL FROM:<x@client.test>").code == 250
            r = w.cmd("RCPT TO:<user@new.test>")
            if r.code != 250:
                return r
            assert w.cmd("DATA").code == 354
            w.send(b"Subject: new\r\n\r\nnew domain\r\n.\r\n")
            return w.reply()

    before = try_new_domain()
    assert before.last == "554 5.7.1 Error: relay access denied"
    ringmx.reload(accept={"domains": "localhost example.test new.test"})
    ringmx.wait_log("reloaded")
    deadline = time.monotonic() + 3
    while True:
        r = try_new_domain()
        if r.code == 250 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    qid = qid_of(r)
    recs = ringmx.spool_records()
    assert [(r["qid"], r["rcpts"], r["client"]) for r in recs] == \
        [(qid, ["user@new.test"], "127.0.0.2")]
    assert ringmx.log_events("reload_partial") == []


def test_sighup_with_a_new_listen_address_logs_reload_partial_and_keeps_the_old_port(
        ringmx):
    old = ringmx.port
    new = free_port()
    ringmx.reload(server={"listen": "127.0.0.1:%d" % new},
                  accept={"domains": "localhost example.test other.test"})
    lines = ringmx.wait_log("reload_partial")
    assert "listen" in lines[0]
    ringmx.wait_log("reloaded")  # the rest of the file was applied
    assert_serves(old)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", new), timeout=1).close()
    # ... and the keys that do take effect on reload did.
    with Wire(old, source="127.0.0.2") as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<x@client.test>").code == 250
        assert w.cmd("RCPT TO:<u@other.test>").code == 250


def test_sighup_with_a_broken_config_keeps_the_running_one(ringmx):
    ringmx.reload(server={"max_recipients": "lots"})
    lines = ringmx.wait_log("reload_failed")
    assert "max_recipients" in lines[0]
    assert ringmx.log_events("reloaded") == []
    assert_serves(ringmx.port)
    assert ringmx.proc.poll() is None
