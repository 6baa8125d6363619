"""ringmx driven by swaks, a real SMTP client the project did not write.

swaks runs as a subprocess; its transcript ("<-  " received, "<** " received error, " -> "
sent) is parsed into the replies and the lines it sent.
"""
import re
import smtplib
import subprocess

import pytest

from smtpwire import assert_serves, body_after_received, unstuff

QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f]{16})$")


class Transcript:
    def __init__(self, rc, out):
        self.rc = rc
        self.out = out
        self.events = []  # ("sent" | "recv", text) in transcript order
        for line in out.splitlines():
            if line.startswith(" -> "):
                self.events.append(("sent", line[4:]))
            elif line.startswith("<-  ") or line.startswith("<** "):
                self.events.append(("recv", line[4:]))

    @property
    def sent(self):
        return [t for d, t in self.events if d == "sent"]

    @property
    def received(self):
        return [t for d, t in self.events if d == "recv"]

    def replies(self):
        """Final lines of the server's replies, in order (multi-line replies folded)."""
        return [t for t in self.received if len(t) < 4 or t[3] != "-"]

    def index(self, direction, prefix):
        for i, (d, t) in enumerate(self.events):
            if d == direction and t.startswith(prefix):
                return i
        raise AssertionError("no %s line starting %r in transcript:\n%s"
                             % (direction, prefix, self.out))

    def queued_qid(self):
        for r in self.replies():
            m = QUEUED.match(r)
            if m:
                return m.group(1)
        raise AssertionError("no 'queued as' reply in transcript:\n%s" % self.out)

    def __repr__(self):
        return "swaks rc=%d\n%s" % (self.rc, self.out)


def swaks(srv, *args, source=None):
    cmd = ["swaks", "--server", "127.0.0.1:%d" % srv.port, "--helo", "swaks.test",
           "--timeout", "5"]
    if source is not None:
        cmd += ["--local-interface", source]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=30)
    return Transcript(p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace"))


def test_a_single_mail_is_queued_and_stored_byte_exact_after_our_received_header(ringmx,
                                                                                  tmp_path):
    # With --no-data-fixup swaks sends the file as it is, then CRLF: the file ends in the
    # terminator's ".". The dot-stuffed line must be stored with one dot less.
    raw = (b"From: Sender <sender@client.test>\r\n"
           b"To: rcpt@example.test\r\n"
           b"Subject: swaks byte-exact\r\n"
           b"\r\n"
           b"first line\r\n"
           b"..a line that starts with one dot once unstuffed\r\n"
           b"\ttab and trailing space \r\n"
           b"\r\n"
           b"last line\r\n"
           b".")
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    t = swaks(ringmx, "--from", "sender@client.test", "--to", "rcpt@example.test",
              "--data", "@%s" % f, "--no-data-fixup")
    assert t.rc == 0, t
    qid = t.queued_qid()
    assert t.replies()[-1].startswith("221 "), t

    recs = ringmx.spool_records()
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["qid"] == qid
    assert rec["from"] == "sender@client.test"
    assert rec["rcpts"] == ["rcpt@example.test"]
    assert rec["helo"] == "swaks.test"
    assert rec["client"] == "127.0.0.1"
    assert rec["flags"] == 0
    msg = rec["message"]
    assert rec["size"] == len(msg)
    assert body_after_received(msg) == unstuff(raw + b"\r\n")
    received = msg[:len(msg) - len(body_after_received(msg))]
    assert received.startswith(b"Received: from swaks.test ([127.0.0.1])\r\n")
    assert b"by mx.test (ringmx) with ESMTP id " + qid.encode() in received
    assert b"for <rcpt@example.test>;" in received

    accepts = ringmx.log_events("accept")
    assert len(accepts) == 1 and "qid=%s" % qid in accepts[0], accepts
    assert "from=sender@client.test" in accepts[0] and "nrcpt=1" in accepts[0]
    assert_serves(ringmx.port)


def test_swaks_pipelines_mail_rcpt_and_data_because_pipelining_is_offered(ringmx):
    t = swaks(ringmx, "--pipeline", "--from", "pipe@client.test",
              "--to", "one@localhost,two@example.test", "--body", "pipelined body")
    assert t.rc == 0, t
    assert "250-PIPELINING" in t.received, t
    # Pipelined: MAIL, both RCPTs and DATA all leave before the reply to MAIL is read.
    first_mail_reply = t.index("recv", "250 2.1.0")
    for prefix in ("MAIL FROM:<pipe@client.test>", "RCPT TO:<one@localhost>",
                   "RCPT TO:<two@example.test>", "DATA"):
        assert t.index("sent", prefix) < first_mail_reply, t
    # ... and the replies come back in command order.
    rs = t.replies()
    i = rs.index("250 2.1.0 Ok")
    assert rs[i:i + 4] == ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok",
                           "354 End data with <CR><LF>.<CR><LF>"], t
    qid = t.queued_qid()

    recs = ringmx.spool_records()
    assert [r["qid"] for r in recs] == [qid]
    assert recs[0]["from"] == "pipe@client.test"
    assert recs[0]["rcpts"] == ["one@localhost", "two@example.test"]
    assert b"\r\n\r\npipelined body\r\n" in recs[0]["message"]
    assert_serves(ringmx.port)


@pytest.fixture
def small_server(ringmx_factory):
    # 64K is the smallest max_message_size the config allows (RFC 5321 4.5.3.1.7).
    return ringmx_factory(server={"max_message_size": "65536"})


def test_a_message_bigger_than_max_message_size_gets_552_after_data_and_is_not_stored(
        small_server, tmp_path):
    srv = small_server
    body = tmp_path / "body.txt"
    body.write_bytes(b"".join(b"line %05d %s\r\n" % (i, b"x" * 64) for i in range(1400)))
    assert body.stat().st_size > 100000
    t = swaks(srv, "--from", "big@client.test", "--to", "rcpt@localhost",
              "--add-header", "X-Padding: " + "p" * 900, "--body", "@%s" % body)
    assert t.rc != 0, t
    # swaks got to send the whole message: the refusal is the reply to the end of data.
    assert t.index("sent", ".") < t.index("recv", "552 5.3.4"), t
    assert "552 5.3.4 Error: message too big" in t.replies(), t
    assert t.replies()[-1].startswith("221 "), t  # the session went on to QUIT
    assert srv.spool_records() == []
    assert any("reason=message_too_big" in l for l in srv.log_events("reject"))

    # A message under the limit still goes through on the same server.
    ok = swaks(srv, "--from", "small@client.test", "--to", "rcpt@localhost",
               "--body", "small enough")
    assert ok.rc == 0, ok
    recs = srv.spool_records()
    assert [r["from"] for r in recs] == ["small@client.test"]


def test_a_declared_size_above_max_message_size_gets_552_at_mail_and_nothing_is_stored(
        small_server):
    srv = small_server
    # swaks has no way to send MAIL parameters; smtplib declares SIZE= by itself whenever the
    # server offers SIZE, which is what a real sender does.
    msg = b"Subject: big\r\n\r\n" + b"y" * 100000 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as s:
        s.ehlo("size.test")
        assert s.has_extn("size") and int(s.esmtp_features["size"]) == 65536
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("big@client.test", ["rcpt@localhost"], msg)
        assert e.value.smtp_code == 552
        assert e.value.smtp_error.startswith(b"5.3.4 ")
        # Nothing of a transaction is left: a new MAIL is not "nested".
        assert s.noop()[0] == 250
        assert s.mail("after@client.test")[0] == 250
        s.rset()
    assert srv.spool_records() == []
    assert any("reason=size_declared" in l for l in srv.log_events("reject"))
    assert_serves(srv.port)


def test_relaying_from_a_non_relay_address_gets_554_5_7_1_and_nothing_is_stored(ringmx):
    t = swaks(ringmx, "--from", "spammer@client.test", "--to", "someone@elsewhere.test",
              source="127.0.0.2")
    assert t.rc != 0, t
    assert "554 5.7.1 Error: relay access denied" in t.replies(), t
    assert "=== Connected to 127.0.0.1." in t.out
    assert ringmx.spool_records() == []
    rejects = ringmx.log_events("reject")
    assert any("reason=relay_denied" in l and "client=127.0.0.2" in l for l in rejects), rejects
    assert_serves(ringmx.port, source="127.0.0.2")


def test_relaying_from_127_0_0_1_a_relay_network_is_accepted(ringmx):
    t = swaks(ringmx, "--from", "app@client.test", "--to", "someone@elsewhere.test",
              source="127.0.0.1")
    assert t.rc == 0, t
    qid = t.queued_qid()
    recs = ringmx.spool_records()
    assert [(r["qid"], r["rcpts"], r["client"]) for r in recs] == \
        [(qid, ["someone@elsewhere.test"], "127.0.0.1")]


def test_mail_for_a_local_domain_from_a_non_relay_address_is_accepted(ringmx):
    t = swaks(ringmx, "--from", "friend@remote.test", "--to", "user@Example.TEST",
              source="127.0.0.2")
    assert t.rc == 0, t
    qid = t.queued_qid()
    recs = ringmx.spool_records()
    assert [(r["qid"], r["rcpts"], r["client"]) for r in recs] == \
        [(qid, ["user@Example.TEST"], "127.0.0.2")]
    assert b"Received: from swaks.test ([127.0.0.2])" in recs[0]["message"]
