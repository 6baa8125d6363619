"""Local delivery: mail for the [accept] domains (localhost, example.test) goes to a Maildir per
local part under [deliver] maildir_root (srv.maildir, inside the test's tmp dir), to an LMTP
server, or nowhere (discard). A Maildir file is the message with LF line ends and
`Return-Path: <sender>` and `Delivered-To: rcpt` in front; the rest is what the client sent,
after the Received: header ringmx adds at accept time.

These need the outbound delivery engine (issue 5): `-m 'not outbound'` leaves them out."""
import os
import signal
import smtplib

import pytest

from outbound import (crlf_to_lf, events, loopback_address, make_message, maildir_new, send,
                      strip_received, wait_events, wait_maildir, wait_until)

pytestmark = pytest.mark.outbound

SENDER = "sender@localhost"


def local(ringmx_factory, **deliver):
    d = {"local": "maildir", "idle_timeout": "1"}
    d.update(deliver)
    return ringmx_factory(deliver=d, queue={"retry": "1s"})


def assert_maildir_copy(data, sent, sender, rcpt):
    """A Maildir file: Return-Path and Delivered-To first, then our Received:, then exactly the
    message that was sent, all with LF line ends."""
    assert b"\r" not in data, "CR left in a Maildir file: %r" % data[:200]
    lines = data.split(b"\n")
    assert lines[0] == b"Return-Path: <%s>" % sender.encode(), lines[:3]
    assert lines[1] == b"Delivered-To: %s" % rcpt.encode(), lines[:3]
    rest = b"\n".join(lines[2:])
    assert rest.startswith(b"Received: "), rest[:200]
    assert strip_received(rest) == crlf_to_lf(sent)


def test_a_message_to_a_local_user_lands_in_its_maildir_byte_exact(ringmx_factory):
    srv = local(ringmx_factory)
    sent = make_message(subject="local one", body="Hello,\r\n\r\nthree lines\r\nof body.\r\n")
    qid = send(srv, SENDER, ["user@localhost"], sent)
    (data,) = wait_maildir(srv.maildir, "user")
    assert_maildir_copy(data, sent, SENDER, "user@localhost")
    ev = wait_events(srv, "delivered", qid=qid)
    assert ev[0]["rcpt"] == "user@localhost" and ev[0]["relay"] == "maildir"
    assert ev[0]["dsn"] == "2.0.0" and ev[0]["attempts"] == "1"
    assert int(ev[0]["delay_ms"]) >= 0


def test_the_maildir_has_tmp_new_and_cur_and_nothing_is_left_in_tmp(ringmx_factory):
    srv = local(ringmx_factory)
    for i in range(3):
        send(srv, SENDER, ["box@localhost"], make_message(subject="n%d" % i))
    wait_maildir(srv.maildir, "box", 3)
    root = os.path.join(srv.maildir, "box")
    assert sorted(os.listdir(root)) == ["cur", "new", "tmp"]
    assert os.listdir(os.path.join(root, "tmp")) == []
    names = os.listdir(os.path.join(root, "new"))
    assert len(set(names)) == 3 and all(":" not in n for n in names)  # new/ has no info part


def test_two_recipients_get_a_copy_each_with_their_own_delivered_to(ringmx_factory):
    srv = local(ringmx_factory)
    sent = make_message(subject="two", body="for both of you\r\n")
    qid = send(srv, SENDER, ["alice@localhost", "bob@example.test"], sent)
    (a,) = wait_maildir(srv.maildir, "alice")
    (b,) = wait_maildir(srv.maildir, "bob")
    assert_maildir_copy(a, sent, SENDER, "alice@localhost")
    assert_maildir_copy(b, sent, SENDER, "bob@example.test")
    ev = wait_events(srv, "delivered", 2, qid=qid)
    assert sorted(e["rcpt"] for e in ev) == ["alice@localhost", "bob@example.test"]


def test_dots_at_line_starts_arrive_unstuffed(ringmx_factory):
    srv = local(ringmx_factory)
    body = (b"first\r\n.leading dot\r\n..two dots\r\n.\r\n. space\r\n"
            b"...\r\nlast line\r\n")
    sent = make_message(subject="dots", body=body)
    send(srv, SENDER, ["dots@localhost"], sent)  # smtplib dot-stuffs on the wire
    (data,) = wait_maildir(srv.maildir, "dots")
    assert_maildir_copy(data, sent, SENDER, "dots@localhost")
    assert b"\n.\n. space\n...\nlast line\n" in data


def test_a_large_message_arrives_whole(ringmx_factory):
    srv = local(ringmx_factory)
    body = b"".join(b"line %06d %s\r\n" % (i, b"x" * (i % 97)) for i in range(6000))
    sent = make_message(subject="large", body=body)
    assert len(sent) > 300000
    send(srv, SENDER, ["big@localhost"], sent)
    (data,) = wait_maildir(srv.maildir, "big", timeout=10)
    assert_maildir_copy(data, sent, SENDER, "big@localhost")


def test_a_null_sender_gets_an_empty_return_path(ringmx_factory):
    srv = local(ringmx_factory)
    sent = make_message(subject="from nobody")
    send(srv, "", ["null@localhost"], sent)
    (data,) = wait_maildir(srv.maildir, "null")
    assert data.startswith(b"Return-Path: <>\nDelivered-To: null@localhost\n")


def test_a_transport_entry_can_send_another_domain_to_the_maildir(ringmx_factory):
    srv = ringmx_factory(deliver={"local": "maildir"}, transport={"other.test": "maildir"})
    sent = make_message(subject="via transport")
    send(srv, SENDER, ["carol@other.test"], sent)
    (data,) = wait_maildir(srv.maildir, "carol")
    assert_maildir_copy(data, sent, SENDER, "carol@other.test")


def test_local_discard_delivers_nothing_and_logs_it(ringmx_factory):
    srv = local(ringmx_factory, local="discard")
    qid = send(srv, SENDER, ["gone@localhost"], make_message(subject="discard"))
    ev = wait_events(srv, "delivered", qid=qid)
    assert ev[0]["relay"] == "discard" and ev[0]["dsn"] == "2.0.0"
    assert not os.path.exists(os.path.join(srv.maildir, "gone"))


def test_delivery_disabled_keeps_the_mail_in_the_spool(ringmx_factory):
    srv = local(ringmx_factory, enabled="no")
    qid = send(srv, SENDER, ["kept@localhost"], make_message(subject="kept"))
    with pytest.raises(AssertionError):
        wait_maildir(srv.maildir, "kept", timeout=2)
    assert events(srv, "delivered") == [] and events(srv, "deferred") == []
    assert srv.stop() == 0
    assert qid in {r["qid"] for r in srv.spool_records()}


def test_the_default_inbound_server_delivers_nothing(ringmx):
    """The inbound tests' fixture writes [deliver] enabled = no: nothing is ever delivered."""
    qid = send(ringmx, SENDER, ["quiet@localhost"], make_message(subject="quiet"))
    with pytest.raises(AssertionError):
        wait_maildir(ringmx.maildir, "quiet", timeout=1.5)
    assert events(ringmx, "delivered") == []
    assert ringmx.stop() == 0
    assert qid in {r["qid"] for r in ringmx.spool_records()}


def test_local_lmtp_over_tcp_to_aiosmtpd(ringmx_factory, receivers):
    addr = loopback_address(2424)
    lmtp = receivers(addr, 2424, aio=True, lmtp=True)
    srv = local(ringmx_factory, local="lmtp:%s:2424" % addr)
    sent = make_message(subject="lmtp tcp")
    qid = send(srv, SENDER, ["dave@localhost", "erin@example.test"], sent)
    msgs = lmtp.wait_messages(1)
    wait_until(lambda: sum(len(m.rcpts) for m in lmtp.messages) >= 2, 5)
    assert sorted(r for m in msgs for r in m.rcpts) == ["dave@localhost", "erin@example.test"]
    assert all(m.mail_from == SENDER for m in msgs)
    assert strip_received(msgs[0].data) == sent
    ev = wait_events(srv, "delivered", 2, qid=qid)
    assert all(e["relay"].startswith("lmtp") for e in ev)


def test_local_lmtp_over_a_unix_socket(ringmx_factory, receivers, tmp_path):
    path = str(tmp_path / "lmtp.sock")
    lmtp = receivers(aio=True, lmtp=True, unix_socket=path)
    srv = local(ringmx_factory, local="lmtp:unix:%s" % path)
    sent = make_message(subject="lmtp unix")
    send(srv, SENDER, ["frank@localhost"], sent)
    (msg,) = lmtp.wait_messages(1)
    assert msg.rcpts == ["frank@localhost"] and strip_received(msg.data) == sent


def test_lmtp_answers_each_recipient_on_its_own(ringmx_factory, receivers):
    """RFC 2033 4.2: one reply per recipient after the data. One recipient's mailbox is full
    (5xx): it bounces, and the DSN goes to the sender, through the same LMTP server."""
    addr = loopback_address(2424)
    lmtp = receivers(addr, 2424, lmtp=True)
    lmtp.fail("EOD", "552 5.2.2 mailbox full", match="full@localhost")
    srv = local(ringmx_factory, local="lmtp:%s:2424" % addr)
    qid = send(srv, SENDER, ["ok@localhost", "full@localhost"], make_message(subject="lmtp"))
    wait_events(srv, "delivered", qid=qid, rcpt="ok@localhost")
    b = wait_events(srv, "bounced", qid=qid)
    assert b[0]["rcpt"] == "full@localhost" and b[0]["dsn"] == "5.2.2"
    wait_events(srv, "bounce_queued", qid=qid)
    # the DSN itself is local mail for sender@localhost
    wait_until(lambda: SENDER in lmtp.rcpts(), 5, lambda: "DSN at LMTP: %r" % lmtp.rcpts())


def test_mail_waiting_for_a_down_lmtp_server_is_delivered_once_it_is_up(ringmx_factory,
                                                                         receivers):
    addr = loopback_address(2424)
    lmtp = receivers(addr, 2424, lmtp=True, start=False)
    srv = local(ringmx_factory, local="lmtp:%s:2424" % addr)
    qid = send(srv, SENDER, ["later@localhost"], make_message(subject="later"))
    d = wait_events(srv, "deferred", qid=qid)
    assert d[0]["dsn"].startswith("4.")
    lmtp.start()
    lmtp.wait_messages(1, timeout=10)
    wait_events(srv, "delivered", qid=qid, timeout=5)


def test_a_restart_delivers_local_mail_that_was_accepted_while_delivery_was_off(
        ringmx_factory):
    srv = local(ringmx_factory, enabled="no")
    sent = [make_message(subject="restart %d" % i) for i in range(5)]
    for m in sent:
        send(srv, SENDER, ["restarted@localhost"], m)
    assert srv.stop(signal.SIGTERM) == 0
    srv.sections["deliver"]["enabled"] = "yes"
    srv.write_config()
    srv.start()
    got = wait_maildir(srv.maildir, "restarted", 5, timeout=10)
    assert sorted(strip_received(d.split(b"\n", 2)[2]) for d in got) == sorted(
        crlf_to_lf(m) for m in sent)


def test_smtplib_rcpt_to_a_local_user_still_works_with_delivery_on(ringmx_factory):
    """Inbound is unchanged with delivery on: the usual dialogue, 250 and a qid."""
    srv = local(ringmx_factory)
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250
        s.sendmail(SENDER, ["smtplib@localhost"], make_message(subject="smtplib"))
    wait_maildir(srv.maildir, "smtplib")
    assert maildir_new(srv.maildir, "nobody") == []
