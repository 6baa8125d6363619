"""ringmx driven by Python's smtplib, a real SMTP client the project did not write."""
import re
import smtplib

import pytest

from smtpwire import assert_serves, body_after_received

QUEUED = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9a-f]{16})$")

F_8BITMIME, F_SMTPUTF8, F_BINARY = 1, 2, 4


def client(srv, name="smtplib.test"):
    s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname=name, timeout=5)
    s.ehlo()
    return s


def data_qid(reply):
    code, text = reply
    assert code == 250, reply
    m = QUEUED.match(text)
    assert m, reply
    return m.group(1).decode()


def test_an_8bitmime_message_keeps_its_utf8_bytes_and_is_flagged_8bitmime(ringmx):
    msg = ("From: a@client.test\r\nTo: b@localhost\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           "\r\nGrüße, café, 日本語, emoji \U0001F600\r\n.leading dot\r\n").encode("utf-8")
    with client(ringmx) as s:
        assert s.has_extn("8bitmime")
        s.mail("a@client.test", ["BODY=8BITMIME"])
        assert s.rcpt("b@localhost")[0] == 250
        qid = data_qid(s.data(msg))
    recs = ringmx.spool_records()
    assert [r["qid"] for r in recs] == [qid]
    assert recs[0]["flags"] & F_8BITMIME
    assert not recs[0]["flags"] & (F_SMTPUTF8 | F_BINARY)
    # smtplib dot-stuffs ".leading dot"; the server unstuffs it: the bytes are the original.
    assert body_after_received(recs[0]["message"]) == msg
    assert_serves(ringmx.port)


def test_an_smtputf8_message_to_a_utf8_local_part_is_accepted_and_flagged_smtputf8(ringmx):
    msg = "From: 发件人@client.test\r\nTo: 用户@localhost\r\nSubject: 你好\r\n\r\n正文\r\n".encode()
    with client(ringmx) as s:
        assert s.has_extn("smtputf8")
        refused = s.sendmail("发件人@client.test", ["用户@localhost"], msg,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    recs = ringmx.spool_records()
    assert len(recs) == 1
    rec = recs[0]
    assert rec["from"] == "发件人@client.test"
    assert rec["rcpts"] == ["用户@localhost"]
    assert rec["flags"] & F_SMTPUTF8 and rec["flags"] & F_8BITMIME
    assert body_after_received(rec["message"]) == msg
    assert b" with UTF8SMTP id " in rec["message"]
    assert "for <用户@localhost>".encode() in rec["message"]
    assert_serves(ringmx.port)


def test_a_utf8_address_without_the_smtputf8_parameter_gets_553_5_6_7(ringmx):
    with client(ringmx) as s:
        s.command_encoding = "utf-8"  # smtplib would refuse to send it otherwise
        code, text = s.mail("用户@localhost")
        assert (code, text[:6]) == (553, b"5.6.7 ")
        # The sender was refused: no transaction is open, RCPT needs a MAIL first.
        assert s.rcpt("b@localhost")[0] == 503
        assert s.mail("ascii@client.test")[0] == 250
        code, text = s.rcpt("用户@localhost")
        assert (code, text[:6]) == (553, b"5.6.7 ")
        # The ASCII transaction is still usable after the refused recipient.
        assert s.rcpt("b@localhost")[0] == 250
        qid = data_qid(s.data(b"Subject: ok\r\n\r\nascii only\r\n"))
    recs = ringmx.spool_records()
    assert [(r["qid"], r["from"], r["rcpts"]) for r in recs] == \
        [(qid, "ascii@client.test", ["b@localhost"])]
    assert len([l for l in ringmx.log_events("reject")
                if "reason=utf8_without_smtputf8" in l]) == 2


def test_two_hundred_messages_on_one_connection_are_all_stored_with_distinct_qids(ringmx):
    n = 200
    sent = {}
    with client(ringmx) as s:
        for i in range(n):
            body = b"Subject: message %d\r\nX-Seq: %d\r\n\r\nbody of message %d\r\n" % (i, i, i)
            s.mail("seq%d@client.test" % i)
            assert s.rcpt("rcpt%d@localhost" % i)[0] == 250
            qid = data_qid(s.data(body))
            sent[qid] = (i, body)
    assert len(sent) == n  # the server gave each its own qid
    recs = ringmx.spool_records()
    assert len(recs) == n
    assert len({r["qid"] for r in recs}) == n
    for r in recs:
        i, body = sent[r["qid"]]
        assert r["from"] == "seq%d@client.test" % i
        assert r["rcpts"] == ["rcpt%d@localhost" % i]
        assert body_after_received(r["message"]) == body
    assert len(ringmx.log_events("accept")) == n
    assert_serves(ringmx.port)


def test_rset_mid_transaction_discards_it_and_only_the_next_transaction_is_stored(ringmx):
    with client(ringmx) as s:
        assert s.mail("first@client.test")[0] == 250
        assert s.rcpt("r1@localhost")[0] == 250
        assert s.rcpt("r2@localhost")[0] == 250
        assert s.rset()[0] == 250
        # RSET ended the transaction: DATA now has no recipients and MAIL is not nested.
        assert s.docmd("DATA")[0] in (503, 554)
        assert s.mail("second@client.test")[0] == 250
        assert s.rcpt("r3@localhost")[0] == 250
        qid = data_qid(s.data(b"Subject: second\r\n\r\nsecond\r\n"))
    recs = ringmx.spool_records()
    assert [(r["qid"], r["from"], r["rcpts"]) for r in recs] == \
        [(qid, "second@client.test", ["r3@localhost"])]


def test_vrfy_gets_252_help_gets_214_and_noop_gets_250(ringmx):
    with client(ringmx) as s:
        code, text = s.verify("someone@localhost")
        assert (code, text[:6]) == (252, b"2.0.0 ")
        code, text = s.docmd("HELP")
        assert (code, text[:6]) == (214, b"2.0.0 ")
        assert b"EHLO" in text and b"BDAT" in text
        assert s.noop() == (250, b"2.0.0 Ok")
        # None of them touched the transaction state: a full mail still goes through.
        assert s.mail("v@client.test")[0] == 250
        code, text = s.verify("x@localhost")  # mid-transaction too
        assert code == 252
        assert s.rcpt("v@localhost")[0] == 250
        qid = data_qid(s.data(b"Subject: v\r\n\r\nv\r\n"))
    assert [r["qid"] for r in ringmx.spool_records()] == [qid]


@pytest.fixture
def with_recipients(ringmx_factory, tmp_path):
    f = tmp_path / "recipients"
    f.write_text("# valid addresses\nalice@localhost\nBob@Example.test   # Bob\n\n")
    return ringmx_factory(accept={"recipients": str(f)})


def test_with_a_recipients_file_a_known_user_is_accepted_and_an_unknown_one_gets_550(
        with_recipients):
    srv = with_recipients
    with client(srv) as s:
        assert s.mail("x@client.test")[0] == 250
        code, text = s.rcpt("nobody@localhost")
        assert (code, text[:6]) == (550, b"5.1.1 ")
        assert s.rcpt("ALICE@localhost")[0] == 250  # case does not matter
        assert s.rcpt("bob@example.test")[0] == 250
        code, _ = s.rcpt("mallory@example.test")
        assert code == 550
        qid = data_qid(s.data(b"Subject: r\r\n\r\nr\r\n"))
    recs = srv.spool_records()
    assert [(r["qid"], r["rcpts"]) for r in recs] == \
        [(qid, ["ALICE@localhost", "bob@example.test"])]
    rejects = [l for l in srv.log_events("reject") if "reason=unknown_recipient" in l]
    assert len(rejects) == 2, rejects
    assert_serves(srv.port)


def test_postmaster_without_a_domain_is_accepted_even_when_not_listed(with_recipients):
    srv = with_recipients
    with client(srv) as s:
        assert s.mail("x@client.test")[0] == 250
        assert s.rcpt("postmaster")[0] == 250
        assert s.rcpt("PostMaster@localhost")[0] == 250  # RFC 5321 4.5.1, any local domain
        qid = data_qid(s.data(b"Subject: pm\r\n\r\npm\r\n"))
    recs = srv.spool_records()
    assert [(r["qid"], r["rcpts"]) for r in recs] == \
        [(qid, ["postmaster", "PostMaster@localhost"])]
