"""The security suite (issue 6, section 4): ringmx attacked on the wire, black-box.

Every case asserts the server's reply AND its state afterwards: what the spool holds (nothing
from the attacker, everything from the good client) and that the server still serves. During
the attacks a GOOD client (smtplib, a real client the project did not write) sends real mail on
other connections, in a thread or between attack steps; each of its messages must get 250 and
be in the spool. Its latency (connect to the final 250) is measured and only a generous bound is
asserted (GOOD_LATENCY_MAX): the test machines are shared and noisy. Run with -s to see the
figures at the end of the module.

What other files already cover, and this one does not repeat (it adds what they lack):
- test_protocol.py: the ten bare CR / bare LF DATA endings with a pipelined smuggled
  transaction, one write (test_a_bare_newline_end_of_data_is_rejected_with_554_...), and with
  bare_newline = accept; a 1 MB line (test_a_megabyte_line_without_crlf_gets_one_500_...) and a
  64 MB line with RSS bounded (test_an_endless_line_is_skipped_not_buffered); max_line_length
  exactly; BDAT over max_message_size; max_recipients = 5; max_errors; timeout_command;
  greeting_delay_ms with an early EHLO; max_connections_per_ip = 2 (the third gets 421); GET on
  port 25; NUL in NOOP and MAIL; a bare LF after a command; SIZE=abc, SIZE=, BODY=BINARYMIME,
  unknown parameters.
- test_swaks.py: plain relaying from 127.0.0.2 (554 5.7.1) and from 127.0.0.1 (accepted);
  DATA over max_message_size (~100 KB); a declared SIZE over the limit (552 at MAIL).
- test_tls.py: STARTTLS injection (STARTTLS + RSET in one write; STARTTLS + MAIL behind a
  pipelined transaction), a garbage ClientHello, a stalled handshake.
- test_crash.py: kill -9 at any moment (invariant 2).
- test_auth.py: AUTH itself, the throttle from one connection, slow checks off the shard. Here:
  a parallel brute force against a slow hash, on a single shard, with the good client measured.
"""
import contextlib
import os
import re
import resource
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import BIN
from smtpwire import Wire, assert_serves, body_after_received, ehlo
from test_auth import SLOW_PW, plain, reserved_ports, slow_hash
from test_protocol import BAD_ENDINGS, SMUGGLED, ending_id, rss_kb
from test_tls import client_ctx, make_cert, read_reply, recv_line

ASAN = "asan" in BIN  # make check-asan: slower, and ASan's quarantine inflates RSS
GOOD_LATENCY_MAX = 15.0 if ASAN else 5.0  # seconds, connect to final 250: generous on purpose
RSS_GROWTH_MAX_KB = (512 if ASAN else 64) * 1024
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f]{16})$")
UID = re.compile(rb"\r\nX-Uid: ([A-Za-z0-9_.-]+)\r\n")
LOCAL_DOMAINS = {"localhost", "example.test"}  # the fixture's [accept] domains
NON_RELAY = "127.0.0.2"  # the fixture's relay_networks is 127.0.0.1/32 ::1/128

LATENCIES = {}  # test name -> the good client's latencies (s), reported at the end


def qid_of(reply):
    m = QUEUED.match(reply.last)
    assert m, reply
    return m.group(1)


def rejects(srv, reason):
    return [l for l in srv.log_events("reject") if "reason=%s" % reason in l]


# ---- the good client --------------------------------------------------------------------------

class GoodClient:
    """A real client (smtplib) that sends real mail while the attack runs. Every message must be
    accepted (250), within GOOD_LATENCY_MAX, and be in the spool afterwards (assert_stored)."""

    SENDER = "good@client.test"
    RCPT = "good@localhost"

    def __init__(self, srv, tag, source=None):
        self.srv = srv
        self.tag = tag
        self.source = source
        self.uids = []
        self.latencies = []
        self.lock = threading.Lock()

    def send_one(self):
        with self.lock:
            uid = "%s.%d" % (self.tag, len(self.uids) + 1)
            self.uids.append(uid)  # counted before the send: a failed one is never stored
        msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: good %s\r\nX-Uid: %s\r\n\r\n"
               "A real message that must get through.\r\n" % (self.SENDER, self.RCPT, uid, uid)
               ).encode()
        src = (self.source, 0) if self.source else None
        t0 = time.monotonic()
        with smtplib.SMTP(self.srv.host, self.srv.port, local_hostname="good.test", timeout=20,
                          source_address=src) as s:
            refused = s.sendmail(self.SENDER, [self.RCPT], msg)
        dt = time.monotonic() - t0
        assert refused == {}, refused
        with self.lock:
            self.latencies.append(dt)
        assert dt < GOOD_LATENCY_MAX, "the good client waited %.2f s for its 250" % dt
        return dt

    @contextlib.contextmanager
    def running(self, interval=0.1):
        """Sends one message after another in a thread for as long as the block runs."""
        stop = threading.Event()
        errors = []

        def loop():
            while not stop.is_set():
                try:
                    self.send_one()
                except BaseException as e:  # reported in the test's thread
                    errors.append(e)
                    return
                stop.wait(interval)

        th = threading.Thread(target=loop, daemon=True)
        th.start()
        try:
            yield self
        finally:
            stop.set()
            th.join(60)
        if errors:
            raise AssertionError("the good client failed during the attack: %r"
                                 % (errors[0],)) from errors[0]
        assert not th.is_alive(), "the good client hung"
        assert self.latencies, "the good client sent nothing during the attack"

    def assert_stored(self, recs):
        """Every good message is in the spool exactly once, as sent; returns the other records."""
        good = [r for r in recs if r["from"] == self.SENDER]
        got = []
        for r in good:
            assert r["rcpts"] == [self.RCPT], r["rcpts"]
            m = UID.search(r["message"])
            assert m, r["message"][:300]
            got.append(m.group(1).decode())
        assert sorted(got) == sorted(self.uids), "good messages: stored %r, sent %r" % (
            sorted(got), sorted(self.uids))
        return [r for r in recs if r["from"] != self.SENDER]


@pytest.fixture
def good_client(request):
    made = []

    def make(srv, source=None):
        g = GoodClient(srv, "%s-%d" % (re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-40:],
                                       len(made)), source)
        made.append(g)
        return g

    yield make
    lat = [x for g in made for x in g.latencies]
    if lat:
        LATENCIES[request.node.name] = lat


@pytest.fixture(scope="module", autouse=True)
def latency_report():
    yield
    if not LATENCIES:
        return
    print("\n---- the good client's latency during the attacks (connect to final 250)")
    for name, lat in LATENCIES.items():
        lat = sorted(lat)
        base, _, param = name.partition("[")
        label = base[5:5 + (62 - len(param) if param else 64)] + ("[" + param if param else "")
        print("%-66s n=%3d median=%6.1f ms max=%6.1f ms" % (
            label, len(lat), 1000 * lat[len(lat) // 2], 1000 * lat[-1]))


def assert_only_good(srv, good):
    """The spool holds the good client's messages and nothing else."""
    others = good.assert_stored(srv.spool_records())
    assert others == [], "stored besides the good mail: %r" % [
        (r["from"], r["rcpts"], r["message"][-200:]) for r in others]


# ---- SMTP smuggling (DESIGN invariant 3) ------------------------------------------------------
# test_protocol.py sends each of BAD_ENDINGS + SMUGGLED in one write and checks the reply text.
# Here the same endings are cut at every byte into two writes (the DATA scanner must carry its
# state across reads), with the good client's mail between them, and the NUL variants.

def smuggle_split(srv, ending, cut, source=None):
    """One transaction whose DATA holds `ending` + a whole second transaction; the bytes go in
    two writes cut `cut` bytes into the ending, then NOOP. Returns the replies after the 354."""
    head = b"Subject: smuggle\r\n\r\nhello" + ending[:cut]
    tail = ending[cut:] + SMUGGLED + b"NOOP\r\n"
    with Wire(srv.port, source=source) as w:
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ehlo(w)
        w.send(b"MAIL FROM:<sender@client.test>\r\nRCPT TO:<rcpt@localhost>\r\nDATA\r\n")
        assert [r.code for r in w.replies(3)] == [250, 250, 354]
        w.send(head)
        time.sleep(0.02)  # two reads on the server, most of the time
        w.send(tail)
        rs = w.replies(2)
        # Nothing after the NOOP's reply: no reply of a smuggled MAIL/RCPT/DATA anywhere.
        assert w.quiet(0.05), w.buf
        return rs


@pytest.mark.parametrize("ending", BAD_ENDINGS, ids=[ending_id(e) for e in BAD_ENDINGS])
def test_a_bad_data_ending_cut_anywhere_across_two_writes_is_rejected_and_smuggles_nothing(
        ringmx, good_client, ending):
    good = good_client(ringmx)
    for cut in range(len(ending) + 1):
        end, noop = smuggle_split(ringmx, ending, cut)
        # One reply for the whole input (the real end is the smuggled body's CRLF.CRLF), then
        # the NOOP's: had the smuggled MAIL run, the second reply would be "250 2.1.0 Ok".
        assert end.last == ("554 5.6.0 Error: bare <CR> or <LF> in message data "
                            "(RFC 5321 2.3.8)"), (cut, end)
        assert noop.last == "250 2.0.0 Ok", (cut, noop)
        good.send_one()
    assert_only_good(ringmx, good)  # nothing of the bad message, nothing smuggled
    assert len(rejects(ringmx, "bare_newline")) == len(ending) + 1
    assert_serves(ringmx.port)


NUL_ENDINGS = [b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"]
NUL_IDS = [ending_id(e).replace("\x00", "NUL") for e in NUL_ENDINGS]


@pytest.mark.parametrize("ending", NUL_ENDINGS, ids=NUL_IDS)
def test_a_nul_data_ending_never_yields_a_second_message(ringmx, good_client, ending):
    good = good_client(ringmx)
    good.send_one()
    end, noop = smuggle_split(ringmx, ending, len(ending))
    assert noop.last == "250 2.0.0 Ok"
    # Whatever the verdict on the message, the smuggled transaction is never one of its own.
    assert end.code in (250, 554), end
    good.send_one()
    others = good.assert_stored(ringmx.spool_records())
    assert not [r for r in others if r["from"] == "evil@x" or "victim@localhost" in r["rcpts"]]
    assert len(others) == (1 if end.code == 250 else 0)
    if others:  # stored: then as one body, the smuggled lines in it
        assert others[0]["from"] == "sender@client.test"
        assert b"MAIL FROM:<evil@x>\r\n" in body_after_received(others[0]["message"])
    assert_serves(ringmx.port)


@pytest.mark.parametrize("ending", NUL_ENDINGS, ids=NUL_IDS)
def test_a_nul_data_ending_is_rejected_like_a_bare_newline(ringmx, ending):
    end, noop = smuggle_split(ringmx, ending, len(ending))
    assert noop.last == "250 2.0.0 Ok"
    assert end.code == 554 and end.last.startswith("554 5.6.0 "), end
    assert ringmx.spool_records() == []


# ---- STARTTLS injection (DESIGN invariant 4) --------------------------------------------------
# test_tls.py covers STARTTLS + RSET in one write and STARTTLS behind a pipelined transaction.
# Here: a whole smuggled transaction behind STARTTLS in one write, and plaintext commands sent in
# a second write after the 220 but before the ClientHello. Both are skipped while the server
# does not advertise STARTTLS.

@pytest.fixture
def starttls_srv(ringmx_factory, tmp_path):
    cert, key = str(tmp_path / "mx.crt"), str(tmp_path / "mx.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=mx.test", "-days", "1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    srv = ringmx_factory(extra={"tls": {"cert": cert, "key": key}})
    with Wire(srv.port) as w:
        if "250-STARTTLS" not in ehlo(w).lines:
            pytest.skip("STARTTLS not advertised")
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    srv.client_ctx = ctx
    return srv


def test_starttls_injection_a_whole_transaction_behind_starttls_is_discarded(starttls_srv,
                                                                          good_client):
    srv = starttls_srv
    good = good_client(srv)
    with good.running():
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            assert read_reply(sock)[0].startswith(b"220 ")
            sock.sendall(b"EHLO inject.test\r\n")
            assert b"250-STARTTLS\r\n" in read_reply(sock)
            sock.sendall(b"STARTTLS\r\n" + SMUGGLED + b"QUIT\r\n")  # one write
            assert recv_line(sock) == b"220 2.0.0 Ready to start TLS\r\n"
            tls = srv.client_ctx.wrap_socket(sock)
            sock = tls
            # The first reply over TLS is NOOP's: none for the injected MAIL/RCPT/DATA/QUIT.
            tls.sendall(b"NOOP\r\n")
            assert read_reply(tls) == [b"250 2.0.0 Ok\r\n"]
            # The session restarted: EHLO first, and no transaction survived.
            tls.sendall(b"MAIL FROM:<a@client.test>\r\n")
            assert read_reply(tls)[0].startswith(b"503 5.5.1 "), "MAIL before EHLO"
            tls.sendall(b"EHLO after.test\r\n")
            after = read_reply(tls)
            assert after[0] == b"250-mx.test\r\n" and b"250-STARTTLS\r\n" not in after
            tls.sendall(b"RCPT TO:<victim@localhost>\r\n")
            assert read_reply(tls)[0].startswith(b"503 ")
            tls.sendall(b"MAIL FROM:<tls@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
            assert [read_reply(tls)[0][:3] for _ in range(3)] == [b"250", b"250", b"354"]
            tls.sendall(b"Subject: over tls\r\n\r\nfine\r\n.\r\n")
            assert read_reply(tls)[0].startswith(b"250 2.0.0 Ok: queued as ")
        finally:
            sock.close()
    others = good.assert_stored(srv.spool_records())
    assert [(r["from"], r["rcpts"]) for r in others] == [("tls@client.test", ["r@localhost"])]
    assert any("reason=starttls_pipelined" in l for l in srv.log_events("reject"))
    assert_serves(srv.port)


def test_starttls_injection_plaintext_sent_after_the_220_before_the_handshake_is_never_run(
        starttls_srv, good_client):
    srv = starttls_srv
    good = good_client(srv)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        assert read_reply(sock)[0].startswith(b"220 ")
        sock.sendall(b"EHLO inject.test\r\n")
        read_reply(sock)
        sock.sendall(b"STARTTLS\r\n")
        assert recv_line(sock) == b"220 2.0.0 Ready to start TLS\r\n"
        # A man in the middle injects plaintext where the ClientHello should be.
        sock.sendall(SMUGGLED + b"QUIT\r\n")
        sock.settimeout(5)
        rest = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            rest += chunk
        # Closed, and no SMTP reply to any of it (at most a TLS alert record).
        assert not re.search(rb"(^|\n)[2-5]\d\d[ -]", rest), rest
    finally:
        sock.close()
    good.send_one()
    assert_only_good(srv, good)
    srv.wait_log("tls_error")
    assert_serves(srv.port)


# ---- open relay (DESIGN invariant 5) ----------------------------------------------------------
# From 127.0.0.2 (not in relay_networks) every classic trick is refused, or, where RFC 5321 makes
# the address local, accepted only as a local address: stored exactly as given and delivered to
# a local Maildir. test_swaks.py covers plain RCPT TO:<someone@elsewhere.test> from 127.0.0.2
# and relaying from 127.0.0.1.

RELAY_DENIED = "554 5.7.1 Error: relay access denied"
BAD_RCPT = "501 5.1.3 Error: bad recipient address syntax"

REFUSED = [
    # A remote domain, in any case: never ours.
    ("<user@evil.example>", RELAY_DENIED),
    ("<user@Evil.EXAMPLE>", RELAY_DENIED),
    ("<postmaster@evil.example>", RELAY_DENIED),
    # A local domain as a label of a remote one is not a local domain.
    ("<user@localhost.evil.example>", RELAY_DENIED),
    ("<user@evil.example.localhost>", RELAY_DENIED),
    # Source routes: RFC 5321 4.1.1.3 and Appendix C: servers MUST accept the syntax and SHOULD
    # ignore the route, delivering to the final mailbox; that mailbox is remote, so this is a
    # relay attempt, routed "through us" or not.
    ("<@localhost:user@evil.example>", RELAY_DENIED),
    ("<@localhost,@example.test:user@evil.example>", RELAY_DENIED),
    # A quoted local part holding '@' (RFC 5321 4.1.2 Quoted-string): the domain is the part
    # after the last unquoted '@'; here it is remote.
    ('<"user@localhost"@evil.example>', RELAY_DENIED),
    # Address literals (RFC 5321 4.1.3): a server MAY take its own address as local; ringmx takes
    # no literal as local, its own (127.0.0.1, ::1) included: refused, the safe side.
    ("<user@[192.0.2.1]>", RELAY_DENIED),
    ("<user@[127.0.0.1]>", RELAY_DENIED),
    ("<user@[IPv6:::1]>", RELAY_DENIED),
    ("<user@127.0.0.1>", RELAY_DENIED),  # a dotted quad without brackets is a (remote) name
    # Bang paths and quoted parts with no domain: RFC 5321 4.1.2 Mailbox = Local-part "@"
    # ( Domain / address-literal ); only "Postmaster" may go without one (4.5.1).
    ("<evil.example!user>", BAD_RCPT),
    ('<"user@evil.example">', BAD_RCPT),
    ("<user>", BAD_RCPT),
    # Trailing dots: Domain = sub-domain *("." sub-domain) has none, local domain or not.
    ("<user@evil.example.>", BAD_RCPT),
    ("<user@localhost.>", BAD_RCPT),
    ("<user@localhost..>", BAD_RCPT),
    # '%' is atext (a local part) but not a domain character.
    ("<user@evil.example%localhost>", BAD_RCPT),
    # Two '@' outside quotes, or a backslash outside quotes: not a Mailbox.
    ("<user@localhost@evil.example>", BAD_RCPT),
    ("<user\\@evil.example@localhost>", BAD_RCPT),
    ("<user@evil.example\\@localhost>", BAD_RCPT),
    ("<user@[127.0.0.1]@localhost>", BAD_RCPT),
    # Route syntax put in the wrong place, and a literal in a route (At-domain = "@" Domain).
    ("<user@evil.example,@localhost>", BAD_RCPT),
    ("<user@evil.example:localhost>", BAD_RCPT),
    ("<@[127.0.0.1]:user@evil.example>", BAD_RCPT),
    # No angle brackets (RFC 5321 4.1.1.3 Forward-path is "<" ... ">").
    ("user@evil.example", BAD_RCPT),
    # Text after the path: a second address is not an RCPT parameter.
    ("<user@evil.example>@localhost", "501 5.5.4 Error: syntax error in command or arguments"),
    ("<user@localhost> <x@evil.example>", "555 5.5.4 Error: unsupported parameter"),
]

# Local by RFC 5321: the local part is interpreted only by the host of the domain part (2.3.11,
# 2.4); '%' and '!' are atext (4.1.2), so "user%evil.example" and "evil.example!user" are plain
# local parts of a local domain. ringmx never reads them as routes (no percent hack, no UUCP):
# stored exactly as given and delivered to the Maildir of that literal local part. A source
# route is ignored (Appendix C): only the final mailbox is stored.
LOCAL = [
    ("<user%evil.example@localhost>", "user%evil.example@localhost", "user%evil.example"),
    ("<user%evil.example%localhost@example.test>", "user%evil.example%localhost@example.test",
     "user%evil.example%localhost"),
    ("<evil.example!user@localhost>", "evil.example!user@localhost", "evil.example!user"),
    ('<"user@evil.example"@localhost>', '"user@evil.example"@localhost', '"user@evil.example"'),
    ('<"user\\@evil.example"@localhost>', '"user\\@evil.example"@localhost',
     '"user\\@evil.example"'),
    ("<@evil.example:route@localhost>", "route@localhost", "route"),
    ("<@evil.example,@other.example:route2@example.test>", "route2@example.test", "route2"),
    ("<Mixed@LocalHost>", "Mixed@LocalHost", "mixed"),  # Maildir names are lower-cased
]


def domain_of(addr):
    return addr.rsplit("@", 1)[1] if "@" in addr else ""


def test_from_a_non_relay_address_every_relay_trick_is_refused_and_nothing_is_stored(
        ringmx, good_client):
    good = good_client(ringmx)
    wrong = []
    for rcpt, want in REFUSED:
        with Wire(ringmx.port, source=NON_RELAY) as w:
            ehlo(w)
            # A sender in our own domain gives no right to relay.
            w.send(b"MAIL FROM:<postmaster@localhost>\r\nRCPT TO:%s\r\nDATA\r\n" % rcpt.encode())
            mail, r, data = w.replies(3)
            assert mail.code == 250
            if r.last != want:
                wrong.append("%s: %r, expected %r" % (rcpt, r.last, want))
            assert data.code in (503, 554), (rcpt, data)  # no 354: no valid recipient
            assert w.cmd("NOOP").code == 250
        good.send_one()
    assert not wrong, "\n".join(wrong)
    assert_only_good(ringmx, good)
    denied = rejects(ringmx, "relay_denied")
    assert len(denied) == sum(1 for _, want in REFUSED if want == RELAY_DENIED)
    assert all("client=%s" % NON_RELAY in l for l in denied)
    assert_serves(ringmx.port, source=NON_RELAY)


def test_from_a_non_relay_address_tricky_local_addresses_are_stored_exactly_as_local(
        ringmx, good_client):
    good = good_client(ringmx)
    qids = {}
    for rcpt, stored, _ in LOCAL:
        with Wire(ringmx.port, source=NON_RELAY) as w:
            ehlo(w)
            w.send(b"MAIL FROM:<friend@remote.test>\r\nRCPT TO:%s\r\nDATA\r\n" % rcpt.encode())
            assert [r.code for r in w.replies(3)] == [250, 250, 354], rcpt
            w.send(b"Subject: local\r\n\r\nfor %s\r\n.\r\n" % rcpt.encode())
            qids[qid_of(w.reply())] = stored
        good.send_one()
    others = good.assert_stored(ringmx.spool_records())
    assert sorted((r["qid"], r["rcpts"]) for r in others) == \
        sorted((q, [s]) for q, s in qids.items())
    for r in others:
        assert r["client"] == NON_RELAY
        assert all(domain_of(a).lower() in LOCAL_DOMAINS for a in r["rcpts"]), r["rcpts"]
    assert_serves(ringmx.port)


@pytest.mark.outbound
def test_tricky_local_addresses_are_delivered_to_local_maildirs_and_never_relayed(
        ringmx_factory):
    from outbound import events, wait_events, wait_maildir
    srv = ringmx_factory(deliver={"local": "maildir", "idle_timeout": "1"},
                         queue={"retry": "1s"})
    qids = {}
    for rcpt, stored, box in LOCAL:
        with Wire(srv.port, source=NON_RELAY) as w:
            ehlo(w)
            w.send(b"MAIL FROM:<friend@localhost>\r\nRCPT TO:%s\r\nDATA\r\n" % rcpt.encode())
            assert [r.code for r in w.replies(3)] == [250, 250, 354], rcpt
            w.send(b"Subject: local\r\n\r\nfor %s\r\n.\r\n" % rcpt.encode())
            qids[qid_of(w.reply())] = (stored, box)
    for qid, (stored, box) in qids.items():
        (ev,) = wait_events(srv, "delivered", qid=qid)
        assert ev["rcpt"] == stored and ev["relay"] == "maildir", ev
        (data,) = wait_maildir(srv.maildir, box)
        assert b"\nDelivered-To: %s\n" % stored.encode() in b"\n" + data
    # Nothing went anywhere else: no SMTP delivery, no bounce, no deferral.
    for event in ("bounced", "deferred", "bounce_queued"):
        assert events(srv, event) == [], (event, srv.log()[-2000:])
    assert_serves(srv.port)


def test_a_relay_probe_of_many_pipelined_rcpts_is_cut_at_max_errors_and_nothing_is_stored(
        ringmx, good_client):
    good = good_client(ringmx)
    with good.running():
        with Wire(ringmx.port, source=NON_RELAY) as w:
            ehlo(w)
            w.send(b"MAIL FROM:<spammer@client.test>\r\n" +
                   b"".join(b"RCPT TO:<victim%d@evil.example>\r\n" % i for i in range(1000)) +
                   b"DATA\r\nSubject: spam\r\n\r\nspam\r\n.\r\n")
            rs = w.replies_until_close()
    # max_errors (10) refusals, then 421 and a close: the rest is never read as commands.
    assert [r.code for r in rs] == [250] + [554] * 10 + [421], rs
    assert rs[-1].last == "421 4.7.0 mx.test Error: too many errors"
    assert_only_good(ringmx, good)
    assert len(rejects(ringmx, "relay_denied")) == 10
    assert_serves(ringmx.port, source=NON_RELAY)


@pytest.mark.outbound
def test_postmaster_without_a_domain_is_delivered_locally_not_bounced(ringmx_factory):
    from outbound import events, wait_until
    srv = ringmx_factory(deliver={"local": "maildir", "idle_timeout": "1"},
                         queue={"retry": "1s"})
    with Wire(srv.port, source=NON_RELAY) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<sender@localhost>\r\nRCPT TO:<postmaster>\r\nDATA\r\n")
        assert [r.code for r in w.replies(3)] == [250, 250, 354]
        w.send(b"Subject: to postmaster\r\n\r\nhello\r\n.\r\n")
        qid = qid_of(w.reply())
    done = wait_until(lambda: events(srv, "delivered", qid=qid) + events(srv, "bounced", qid=qid)
                      or None, 5, "a delivery outcome for %s" % qid)
    assert done[0]["event"] == "delivered", done


# ---- bounds (DESIGN invariant 6) --------------------------------------------------------------

def test_megabyte_lines_count_as_errors_and_max_errors_of_them_end_in_421_and_close(
        ringmx, good_client):
    # test_protocol.py: one 1 MB line gets 500 and the session goes on; a 64 MB one is not
    # buffered. Here: each over-long line is an error, and the bound on errors closes.
    good = good_client(ringmx)
    rss0 = rss_kb(ringmx.proc.pid)
    with good.running():
        with Wire(ringmx.port) as w:
            # Before EHLO: nine 1 MB lines, then a shorter over-long one with no CRLF at all
            # (short, so that the server has read all of it when it closes: no RST).
            for _ in range(9):
                w.send(b"X" * (1 << 20) + b"\r\n")
            w.send(b"Y" * 4096)
            rs = w.replies_until_close(timeout=10)
    assert [r.last for r in rs] == ["500 5.5.2 Error: line too long"] * 10 + \
        ["421 4.7.0 mx.test Error: too many errors"], rs
    assert rss_kb(ringmx.proc.pid) - rss0 < RSS_GROWTH_MAX_KB
    assert len(rejects(ringmx, "line_too_long")) == 10
    assert_only_good(ringmx, good)
    assert_serves(ringmx.port)


def test_100000_pipelined_rcpts_get_452_after_max_recipients_with_memory_bounded(
        ringmx, good_client):
    n = 100000
    good = good_client(ringmx)
    rss0 = rss_kb(ringmx.proc.pid)
    log0 = os.path.getsize(ringmx.logfile)
    with good.running():
        with Wire(ringmx.port, timeout=60) as w:
            ehlo(w)
            assert w.cmd("MAIL FROM:<many@client.test>").code == 250
            got = []
            reader = threading.Thread(target=lambda: got.extend(w.replies(n, timeout=60)))
            reader.start()  # read while sending: neither side's buffers fill up
            w.send(b"".join(b"RCPT TO:<r%d@localhost>\r\n" % i for i in range(n)))
            reader.join(90)
            assert len(got) == n, "%d replies of %d" % (len(got), n)
            rss1 = rss_kb(ringmx.proc.pid)
            codes = [r.code for r in got]
            # The default max_recipients (1000) are accepted, every one after gets 452
            # (RFC 5321 4.5.3.1.10), which is not an error: the session survives.
            assert codes == [250] * 1000 + [452] * (n - 1000)
            assert got[-1].last == "452 4.5.3 Error: too many recipients"
            assert w.cmd("DATA").code == 354
            w.send(b"Subject: many\r\n\r\nto the first thousand\r\n.\r\n")
            qid = qid_of(w.reply())
            assert w.cmd("QUIT").code == 221
    grown = rss1 - rss0
    assert grown < RSS_GROWTH_MAX_KB, "RSS grew by %d KiB over %d RCPT" % (grown, n)
    # Not asserted: each 452 is logged (event=reject), so the log grows with what is sent.
    print("\n100,000 RCPT: RSS +%d KiB, log +%d KiB" % (
        grown, (os.path.getsize(ringmx.logfile) - log0) // 1024))
    others = good.assert_stored(ringmx.spool_records())
    assert [(r["qid"], r["rcpts"]) for r in others] == \
        [(qid, ["r%d@localhost" % i for i in range(1000)])]
    assert_serves(ringmx.port)


def test_endless_data_far_past_max_message_size_gets_552_stores_nothing_and_stays_small(
        ringmx_factory, good_client):
    # test_swaks.py: ~100 KB over a 64 KB limit; test_protocol.py: BDAT over the limit.
    # Here 5 MB against 1M, memory watched, the good client sending throughout.
    srv = ringmx_factory(server={"max_message_size": "1M"})
    good = good_client(srv)
    rss0 = rss_kb(srv.proc.pid)
    line = b"x" * 78 + b"\r\n"
    with good.running():
        with Wire(srv.port, timeout=30) as w:
            ehlo(w)
            w.send(b"MAIL FROM:<big@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
            assert [r.code for r in w.replies(3)] == [250, 250, 354]
            for _ in range(5):
                w.send(line * 13108)  # 1 MiB
                # Nothing is said before the end of the data (RFC 5321 has no way to).
                assert w.quiet(0.05), w.buf
            rss1 = rss_kb(srv.proc.pid)
            w.send(b".\r\n")
            assert w.reply().last == "552 5.3.4 Error: message too big"
            # The session goes on, and a small message is taken on the same connection.
            assert w.cmd("NOOP").last == "250 2.0.0 Ok"
            w.send(b"MAIL FROM:<small@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
            assert [r.code for r in w.replies(3)] == [250, 250, 354]
            w.send(b"Subject: small\r\n\r\nsmall\r\n.\r\n")
            qid = qid_of(w.reply())
    grown = rss1 - rss0
    assert grown < 32 * 1024 or ASAN, "RSS grew by %d KiB over a 5 MB message" % grown
    others = good.assert_stored(srv.spool_records())
    assert [(r["qid"], r["from"]) for r in others] == [(qid, "small@client.test")]
    assert len(rejects(srv, "message_too_big")) == 1
    assert_serves(srv.port)


def test_slow_senders_are_cut_by_timeout_data_and_by_the_session_deadline(ringmx_factory,
                                                                        good_client):
    # timeout_data is the longest wait for the next bytes; a sender that trickles one byte
    # every second never waits that long, so the session deadline (timeout_session) cuts it.
    srv = ringmx_factory(server={"timeout_data": "2", "timeout_command": "4",
                                 "timeout_greeting": "4", "timeout_session": "5"})
    good = good_client(srv)
    t0 = time.monotonic()  # the session deadline counts from the connection
    stalled = Wire(srv.port)
    trickle = Wire(srv.port)
    try:
        for w in (stalled, trickle):
            w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ehlo(w)
            w.send(b"MAIL FROM:<slow@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
            assert [r.code for r in w.replies(3)] == [250, 250, 354]
        stalled.send(b"Subject: stalled\r\n\r\npart")
        trickle.send(b"Subject: trickle\r\n\r\n")
        cut = {}
        body = b"one byte at a time, and never the end"
        i = 0
        while len(cut) < 2 and time.monotonic() - t0 < 15:
            for name, w in (("stalled", stalled), ("trickle", trickle)):
                if name not in cut and not w.quiet(0.01):
                    cut[name] = (time.monotonic() - t0, w.replies_until_close(timeout=3))
            if "trickle" not in cut:
                trickle.send(body[i % len(body):i % len(body) + 1])
                i += 1
            good.send_one()  # takes a little time itself
            # The bytes go at half-second offsets from the connect, so that none is on the
            # wire when the session deadline (a whole number of seconds) fires: see
            # test_a_client_sending_at_the_session_deadline_still_gets_the_421.
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - 0.5) % 1.0))
    finally:
        stalled.close()
        trickle.close()
    assert set(cut) == {"stalled", "trickle"}, cut
    t_stalled, rs = cut["stalled"]
    assert [r.last for r in rs] == ["421 4.4.2 mx.test Error: timeout exceeded"], rs
    assert 1.5 <= t_stalled <= 5, t_stalled
    t_trickle, rs = cut["trickle"]
    assert [r.last for r in rs] == ["421 4.4.2 mx.test Error: session time limit exceeded"], rs
    assert i >= 4, "only %d bytes trickled" % i  # it outlived timeout_data twice over
    assert 4 <= t_trickle <= 9, t_trickle
    assert_only_good(srv, good)
    assert len(rejects(srv, "timeout")) == 1 and len(rejects(srv, "session_timeout")) == 1
    assert_serves(srv.port)


def test_a_client_sending_at_the_session_deadline_still_gets_the_421(ringmx_factory):
    srv = ringmx_factory(server={"timeout_data": "1", "timeout_command": "1",
                                 "timeout_greeting": "1", "timeout_session": "1"})
    conns = []
    try:
        for _ in range(8):
            w = Wire(srv.port)
            ehlo(w)
            w.send(b"MAIL FROM:<busy@client.test>\r\nRCPT TO:<r@localhost>\r\nDATA\r\n")
            assert [r.code for r in w.replies(3)] == [250, 250, 354]
            w.sock.setblocking(False)
            conns.append(w)
        got = [b""] * len(conns)
        open_ = set(range(len(conns)))
        deadline = time.monotonic() + 5
        while open_ and time.monotonic() < deadline:
            for k in list(open_):
                s = conns[k].sock
                try:
                    s.send(b"body bytes, streaming\r\n")
                except BlockingIOError:
                    pass
                except OSError:
                    pass  # closed by the server: the recv below sees how
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    got[k] += chunk
                else:
                    open_.discard(k)
            time.sleep(0.002)
        assert not open_, "still open after the session deadline"
    finally:
        for w in conns:
            w.close()
    want = b"421 4.4.2 mx.test Error: session time limit exceeded\r\n"
    assert got == [want] * len(conns), got
    assert len(rejects(srv, "session_timeout")) == len(conns)


@contextlib.contextmanager
def nofile_at_least(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip("RLIMIT_NOFILE hard limit %d is below %d" % (hard, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_5000_idle_connections_do_not_stop_the_good_client(ringmx_factory, good_client):
    per_ip, nips = 50, 100  # the default max_connections_per_ip, from 100 addresses
    with nofile_at_least(per_ip * nips + 1024):
        srv = ringmx_factory()  # started after the raise: it inherits the limit
        good = good_client(srv)
        rss0 = rss_kb(srv.proc.pid)
        socks = []
        t0 = time.monotonic()
        try:
            for ip in range(nips):
                src = "127.0.1.%d" % (ip + 1)
                for _ in range(per_ip):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(s)
                    s.bind((src, 0))
                    s.settimeout(10)
                    s.connect((srv.host, srv.port))
            opened = time.monotonic() - t0
            # Every one of them is greeted: exactly at the per-IP limit is still inside it.
            for s in socks:
                greeting = b""
                while not greeting.endswith(b"\r\n"):
                    chunk = s.recv(1024)
                    assert chunk, "closed after %r" % greeting
                    greeting += chunk
                assert greeting == b"220 mx.test ESMTP ringmx\r\n", greeting
            # One more from one of those addresses is over the limit.
            with Wire(srv.port, source="127.0.1.1", greet=False) as over:
                assert over.reply().last == \
                    "421 4.7.0 Error: too many connections from your address"
                over.assert_closed()
            rss1 = rss_kb(srv.proc.pid)
            for _ in range(3):
                good.send_one()
            # The idle ones are still there and still served.
            for s in socks[::500]:
                s.sendall(b"NOOP\r\n")
                assert s.recv(1024) == b"250 2.0.0 Ok\r\n"
        finally:
            for s in socks:
                s.close()
        assert len(socks) == per_ip * nips
        assert opened < 30, "opening %d connections took %.1f s" % (len(socks), opened)
        grown = rss1 - rss0
        assert grown < RSS_GROWTH_MAX_KB, "RSS grew by %d KiB for %d idle connections" % (
            grown, len(socks))
        good.send_one()
        assert_only_good(srv, good)
        assert_serves(srv.port)


def test_a_flood_of_connections_from_one_address_gets_421_past_the_limit(ringmx_factory,
                                                                        good_client):
    # test_protocol.py: with a limit of 2, the third gets 421 and the slot comes back. Here a
    # flood of 200 against a limit of 10, while a good client on another address sends.
    srv = ringmx_factory(server={"max_connections_per_ip": "10"})
    good = good_client(srv, source="127.0.0.5")
    conns = []
    try:
        with good.running():
            for _ in range(200):
                conns.append(Wire(srv.port, source="127.0.0.4", greet=False))
            replies = [w.reply() for w in conns]
        codes = [r.code for r in replies]
        assert codes.count(220) == 10 and codes.count(421) == 190, codes
        assert {r.last for r in replies if r.code == 421} == \
            {"421 4.7.0 Error: too many connections from your address"}
        for w, r in zip(conns, replies):
            if r.code == 421:
                w.assert_closed()
        # The ten that got in are served.
        for w, r in zip(conns, replies):
            if r.code == 220:
                assert w.cmd("NOOP").code == 250
    finally:
        for w in conns:
            w.close()
    assert len(rejects(srv, "connections_per_ip")) == 190
    assert_only_good(srv, good)
    assert_serves(srv.port, source="127.0.0.4")


def test_a_whole_transaction_sent_before_the_greeting_is_rejected_and_nothing_stored(
        ringmx_factory, good_client):
    # test_protocol.py: an early EHLO gets 554. Here the early talker pipelines a whole message.
    srv = ringmx_factory(server={"greeting_delay_ms": "500"})
    good = good_client(srv)
    with good.running():
        with Wire(srv.port, greet=False) as w:
            w.send(b"EHLO early.test\r\nMAIL FROM:<spam@client.test>\r\nRCPT TO:<r@localhost>\r\n"
                   b"DATA\r\nSubject: early\r\n\r\nspam\r\n.\r\nQUIT\r\n")
            rs = w.replies_until_close(timeout=5)
    assert [r.last for r in rs] == ["554 5.5.1 Error: SMTP protocol synchronization"], rs
    assert_only_good(srv, good)  # every good message waited out the delay and went through
    assert min(good.latencies) >= 0.4
    assert len(rejects(srv, "early_talker")) == 1
    assert_serves(srv.port)


HTTP_REQUESTS = [
    # The cross-protocol attack: a browser made to POST to port 25 with SMTP in the body.
    b"POST /form HTTP/1.1\r\nHost: mx.test\r\nContent-Type: text/plain\r\nContent-Length: 120"
    b"\r\n\r\nEHLO x\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\n"
    b"Subject: xpro\r\n\r\nvia http\r\n.\r\nQUIT\r\n",
    b"CONNECT mx.test:25 HTTP/1.1\r\nHost: mx.test:25\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"get / HTTP/1.1\r\n\r\n",
]


def test_http_requests_on_port_25_get_554_and_a_close_and_store_nothing(ringmx_factory,
                                                                       good_client):
    # test_protocol.py covers GET as the first line.
    srv = ringmx_factory()
    good = good_client(srv)
    http_close = "554 5.7.0 Error: this is an SMTP server, not HTTP"
    for req in HTTP_REQUESTS:
        with Wire(srv.port) as w:
            w.send(req)
            assert [r.last for r in w.replies_until_close()] == [http_close], req
        good.send_one()
    # Also in the middle of a transaction (a proxy that reuses the connection).
    with Wire(srv.port) as w:
        ehlo(w)
        w.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<r@localhost>\r\nGET / HTTP/1.1\r\n"
               b"DATA\r\n")
        assert [r.last for r in w.replies_until_close()] == \
            ["250 2.1.0 Ok", "250 2.1.5 Ok", http_close]
    assert len(rejects(srv, "http_command")) == len(HTTP_REQUESTS) + 1
    # Methods ringmx does not name are unknown commands: 500, counted toward max_errors.
    strict = ringmx_factory(server={"max_errors": "3"})
    with Wire(strict.port) as w:
        w.send(b"TRACE / HTTP/1.1\r\nDELETE / HTTP/1.1\r\nPATCH / HTTP/1.1\r\n\r\n")
        assert [r.code for r in w.replies_until_close()] == [500, 500, 500, 421]
    assert_only_good(srv, good)
    assert strict.spool_records() == []
    assert_serves(srv.port)
    assert_serves(strict.port)


CONTROL_CASES = [
    # (the line sent after EHLO, what must not have happened)
    (b"NOOP\x01", None),
    (b"\x1b[2JNOOP", None),
    (b"NO\x7fOP", None),
    (b"EHLO a\x08b.test", None),
    (b"MAIL FROM:<a\x0b@client.test>", "mail"),
    (b"MAIL FROM:<a@client.test>\x0c", "mail"),
    (b"MAIL FROM:<a@client.test> SIZE=100\x00", "mail"),
    (b"RCPT TO:<r@localhost>\x00", "rcpt"),
    (b"RCPT TO:<r\x01@localhost>", "rcpt"),
    (b"\x00", None),
    (b"\x00MAIL FROM:<a@client.test>", "mail"),
    (b"MAIL\x00FROM:<a@client.test>", "mail"),
]


def test_nul_and_control_bytes_in_commands_get_500_and_the_command_is_not_run(ringmx,
                                                                             good_client):
    # test_protocol.py covers NUL in NOOP and in MAIL's path, and a bare LF.
    good = good_client(ringmx)
    for line, what in CONTROL_CASES:
        with Wire(ringmx.port) as w:
            ehlo(w)
            if what == "rcpt":
                assert w.cmd("MAIL FROM:<a@client.test>").code == 250
            r = w.cmd(line)
            assert r.last == "500 5.5.2 Error: invalid character in command", (line, r)
            if what == "mail":  # no transaction was opened
                assert w.cmd("RCPT TO:<r@localhost>").code == 503, line
            elif what == "rcpt":  # the recipient was not added
                r = w.cmd("DATA")
                assert r.code in (503, 554) and r.last[4:10] == "5.5.1 ", (line, r)
            assert w.cmd("NOOP").last == "250 2.0.0 Ok"
    # Eight-bit bytes where a verb should be: not a command.
    with Wire(ringmx.port) as w:
        assert w.cmd(b"\xff\xfe\xfd").last == "500 5.5.2 Error: command not recognized"
        assert w.cmd(b"\xc3\x89HLO x").code == 500
    # A stream of control-byte garbage: one 500 per line, then 421 at max_errors, and a close.
    with Wire(ringmx.port) as w:
        w.send(b"".join(bytes([c, c ^ 0x5a, 0]) + b"\r\n"
                        for c in range(1, 32) if c not in (10, 13)))
        rs = w.replies_until_close()
        assert [r.code for r in rs] == [500] * 10 + [421], rs
    good.send_one()
    assert_only_good(ringmx, good)
    assert ringmx.proc.poll() is None
    assert_serves(ringmx.port)


BAD_PARAMS = [
    # MAIL parameters. test_protocol.py covers SIZE=abc, SIZE=, BODY=BINARYMIME, FOO=bar.
    ("MAIL", "SIZE=99999999999999999999", "501 5.5.4 Error: bad parameter syntax"),  # > 2^64
    ("MAIL", "SIZE=18446744073709551616", "501 5.5.4 Error: bad parameter syntax"),  # 2^64
    ("MAIL", "SIZE=9999999999999999999",  # 19 digits: a number, and far too big
     "552 5.3.4 Error: message size exceeds fixed maximum"),
    ("MAIL", "SIZE=-1", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "SIZE=+100", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "SIZE=0x100", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "SIZE=1e6", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "SIZE", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "BODY=7BITX", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "BODY=", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "BODY", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "SMTPUTF8=yes", "501 5.5.4 Error: bad parameter syntax"),
    ("MAIL", "=100", "501 5.5.4 Error: bad parameter syntax"),
    # DSN (RFC 3461) is not offered, so its xtext parameters are unknown ones: 555, whether the
    # xtext is well formed or not.
    ("MAIL", "ENVID=QQ+2Bx", "555 5.5.4 Error: unsupported parameter"),
    ("MAIL", "ENVID=bad+zz", "555 5.5.4 Error: unsupported parameter"),
    ("MAIL", "RET=HDRS", "555 5.5.4 Error: unsupported parameter"),
    ("MAIL", "AUTH=<>", "555 5.5.4 Error: unsupported parameter"),
    ("RCPT", "NOTIFY=NEVER", "555 5.5.4 Error: unsupported parameter"),
    ("RCPT", "ORCPT=rfc822;a+40b@localhost", "555 5.5.4 Error: unsupported parameter"),
    ("RCPT", "SIZE=100", "555 5.5.4 Error: unsupported parameter"),
]


def test_bad_size_body_and_xtext_parameters_are_refused_and_leave_no_state(ringmx,
                                                                          good_client):
    good = good_client(ringmx)
    with Wire(ringmx.port) as w:
        features = ehlo(w).lines
    assert "250-SIZE 26214400" in features and not [f for f in features if "DSN" in f]
    for verb, param, want in BAD_PARAMS:
        with Wire(ringmx.port) as w:
            ehlo(w)
            if verb == "MAIL":
                assert w.cmd("MAIL FROM:<p@client.test> " + param).last == want, param
                assert w.cmd("RCPT TO:<r@localhost>").code == 503, param  # no transaction
            else:
                assert w.cmd("MAIL FROM:<p@client.test>").code == 250
                assert w.cmd("RCPT TO:<r@localhost> " + param).last == want, param
                r = w.cmd("DATA")  # the recipient was not added
                assert r.code in (503, 554) and r.last[4:10] == "5.5.1 ", (param, r)
            assert w.cmd("NOOP").last == "250 2.0.0 Ok"
    good.send_one()
    assert_only_good(ringmx, good)
    assert_serves(ringmx.port)


# ---- AUTH: a brute force is throttled (issue 6 section 2) -------------------------------------

THROTTLED = b"4.7.0 Error: too many failed authentications, try again later"


def brute_force(srv, source, stop_at, attempts_max=40):
    """One attacker: wrong passwords for alice over STARTTLS from `source`, reconnecting when the
    server closes (max_errors), until a reply with code stop_at. Returns the codes, in order."""
    codes, s = [], None
    try:
        while len(codes) < attempts_max:
            if s is None:
                s = smtplib.SMTP(srv.host, srv.sub_port, local_hostname="brute.test",
                                 timeout=60, source_address=(source, 0))
                s.starttls(context=client_ctx(srv.cert))
                s.ehlo()
            try:
                code, text = s.docmd("AUTH", "PLAIN " + plain("alice", "guess%d" % len(codes)))
            except smtplib.SMTPServerDisconnected:
                s = None
                continue
            codes.append(code)
            if code == 421:
                s.close()
                s = None
            elif code == stop_at:
                assert text == THROTTLED, text
                return codes
    finally:
        if s is not None:
            s.close()
    return codes


def test_a_parallel_brute_force_is_throttled_and_the_good_client_keeps_sending(ringmx_factory,
                                                                                good_client,
                                                                                tmp_path):
    """Four connections from one address guess alice's password (a bcrypt hash of about a
    second a check) on a server with one shard. The checks run on [auth] check_threads, so the
    good client's mail on the same shard is not held up; after max_failures wrong passwords the
    address gets 454 4.7.0 on every connection (at most one check per connection was already
    under way past the limit), while another address still logs in."""
    max_failures = 5
    cert, key = make_cert(str(tmp_path))
    users = tmp_path / "users"
    users.write_text("alice:%s\n" % slow_hash(SLOW_PW))
    with reserved_ports(1) as (sub_port,):
        srv = ringmx_factory(server={"shards": "1",
                                     "submission_listen": "127.0.0.1:%d" % sub_port},
                             extra={"tls": {"cert": cert, "key": key},
                                    "auth": {"users": str(users),
                                             "max_failures": str(max_failures)}})
    srv.sub_port, srv.cert = sub_port, cert
    good = good_client(srv)
    results, errors = [[] for _ in range(4)], []

    def attacker(i):
        try:
            results[i] = brute_force(srv, "127.0.0.3", stop_at=454)
        except BaseException as e:  # reported in the test's thread
            errors.append(e)

    with good.running():
        threads = [threading.Thread(target=attacker, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    assert not errors, errors
    assert all(r and r[-1] == 454 for r in results), results
    failed = sum(r.count(535) for r in results)
    assert max_failures <= failed <= max_failures + 3, results
    assert len(rejects(srv, "auth_throttled")) == sum(r.count(454) for r in results)
    assert len([l for l in srv.log_events("auth") if "reason=credentials" in l]) == failed
    # the address stays refused, even with the right password; another one is not affected
    assert brute_force(srv, "127.0.0.3", stop_at=454, attempts_max=1) == [454]
    with smtplib.SMTP(srv.host, sub_port, local_hostname="alice.test", timeout=60,
                      source_address=("127.0.0.4", 0)) as s:
        s.starttls(context=client_ctx(cert))
        s.ehlo()
        assert s.login("alice", SLOW_PW)[0] == 235
        assert s.sendmail("alice@example.test", ["friend@far.test"],
                          b"Subject: after the attack\r\n\r\nhello\r\n") == {}
    others = good.assert_stored(srv.spool_records())
    assert [(r["from"], r["rcpts"]) for r in others] == [("alice@example.test",
                                                          ["friend@far.test"])]
    assert_serves(srv.port)
