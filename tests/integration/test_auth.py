"""Submission and SMTP AUTH (RFC 6409, 4954): submission_listen (STARTTLS) and
submission_listen_tls (implicit TLS), AUTH PLAIN and LOGIN over TLS only, MAIL only after AUTH,
relaying for authenticated users, [auth] sender_policy, the per-address throttle on failures,
and `ringmxctl passwd`, driven by Python's smtplib, ssl and crypt.

The users file holds alice (a yescrypt hash made by `ringmxctl passwd`, so logging in with it
checks that command too), bob@example.test (a SHA-512 hash made by Python's crypt) and slow (a
bcrypt hash of a high cost, about a second of CPU a check: the password checks run on
[auth] check_threads, never on the shard, and the tests below show it by ordering, not timing).
"""
import base64
import contextlib
import os
import pty
import select
import signal
import smtplib
import socket
import struct
import subprocess
import threading
import time
import warnings

import pytest

from conftest import BIN
from test_tls import client_ctx, make_cert

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # deprecated in 3.11, gone in 3.13: only the tests use it

ALICE_PW = "correct horse battery"
BOB_PW = "b0b's s3cret:pass"
SLOW_PW = "slow but sure"
SLOW_COST = 14  # bcrypt: 2^14 rounds, about a second of CPU a check (libxcrypt holds it strong)
MSG = b"From: alice@example.test\r\nTo: friend@far.test\r\nSubject: auth\r\n\r\nsubmitted\r\n"
SPOOL_F_AUTH = 1 << 3


def passwd(user, password):
    """`ringmxctl passwd USER` with the password on stdin (not a terminal): USER:HASH."""
    r = subprocess.run([os.path.join(BIN, "ringmxctl"), "passwd", user],
                       input=password + "\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def plain(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


@pytest.fixture(scope="module")
def users_lines():
    """The users file's lines, made once: ringmxctl passwd (yescrypt) is slow on purpose."""
    bob = "bob@example.test:" + crypt.crypt(BOB_PW, crypt.mksalt(crypt.METHOD_SHA512))
    return ["# test users", passwd("alice", ALICE_PW), bob, "slow:" + slow_hash(SLOW_PW)]


def slow_hash(password):
    """A bcrypt hash of a high cost ($2b$14$): a deliberately slow check."""
    h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << SLOW_COST))
    assert h.startswith("$2b$%d$" % SLOW_COST), h
    return h


@contextlib.contextmanager
def reserved_ports(n):
    """n distinct free loopback ports, held for the block (bound with SO_REUSEPORT, never
    listening) so that the fixture's own free_port() cannot hand one of them out again, while
    ringmx, which binds with SO_REUSEPORT too, can take them."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", 0))
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def make_sub(ringmx_factory, tmp_path, users_lines):
    """Starts a server with a submission port (.sub_port, STARTTLS) and a submission port with
    implicit TLS (.sub_tls_port); 127.0.0.1 is not in relay_networks. auth= updates [auth]."""

    def make(auth=None, server=None):
        d = tmp_path / ("sub%d" % len(os.listdir(tmp_path)))
        d.mkdir()
        cert, key = make_cert(str(d))
        users = d / "users"
        users.write_text("\n".join(users_lines) + "\n")
        auth_kw = {"users": str(users)}
        auth_kw.update(auth or {})
        with reserved_ports(2) as (sub_port, sub_tls_port):
            srv_kw = {"submission_listen": "127.0.0.1:%d" % sub_port,
                      "submission_listen_tls": "127.0.0.1:%d" % sub_tls_port}
            srv_kw.update(server or {})
            srv = ringmx_factory(server=srv_kw, accept={"relay_networks": "192.0.2.0/24"},
                                 extra={"tls": {"cert": cert, "key": key}, "auth": auth_kw})
        srv.sub_port, srv.sub_tls_port, srv.cert, srv.users = sub_port, sub_tls_port, cert, users
        return srv

    return make


@pytest.fixture
def sub(make_sub):
    return make_sub()


def connect(srv, tls=True, source=None):
    """A client on the submission port, after STARTTLS and EHLO (tls=False: EHLO in the clear)."""
    s = smtplib.SMTP("127.0.0.1", srv.sub_port, local_hostname="client.test", timeout=15,
                     source_address=(source, 0) if source else None)
    s.ehlo()
    if tls:
        assert s.starttls(context=client_ctx(srv.cert))[0] == 220
        s.ehlo()
    return s


def test_auth_is_offered_only_over_tls_and_mail_needs_it(sub):
    with connect(sub, tls=False) as s:
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), s.esmtp_features
        code, text = s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW))
        assert (code, text[:6]) == (538, b"5.7.11"), text
        code, text = s.docmd("MAIL", "FROM:<alice@example.test>")
        assert code == 530 and b"STARTTLS" in text, text
        assert s.starttls(context=client_ctx(sub.cert))[0] == 220
        s.ehlo()
        assert s.esmtp_features.get("auth", "").split() == ["PLAIN", "LOGIN"]
        assert not s.has_extn("starttls")
        code, text = s.docmd("MAIL", "FROM:<alice@example.test>")
        assert (code, text[:5]) == (530, b"5.7.0"), text
        assert s.docmd("RCPT", "TO:<x@localhost>")[0] == 503
    assert any("reason=auth_without_tls" in l for l in sub.log_events("reject"))
    assert not any(l for l in sub.log_events("auth")), "no AUTH ran"


def test_port_25_never_offers_auth_and_does_not_relay_for_an_outsider(sub):
    with smtplib.SMTP("127.0.0.1", sub.port, local_hostname="client.test", timeout=15) as s:
        s.starttls(context=client_ctx(sub.cert))
        s.ehlo()
        assert not s.has_extn("auth"), s.esmtp_features
        assert s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW))[0] == 502
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 250
        code, text = s.docmd("RCPT", "TO:<friend@far.test>")
        assert code == 554 and b"relay" in text, text
        assert s.docmd("RCPT", "TO:<x@localhost>")[0] == 250  # local mail needs no AUTH


def test_plain_login_relays_and_the_mail_is_marked_authenticated(sub):
    with connect(sub) as s:
        code, text = s.login("alice", ALICE_PW)  # smtplib picks PLAIN
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        assert s.sendmail("alice@example.test", ["friend@far.test", "x@localhost"], MSG) == {}
        code, text = s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW))
        assert (code, text[:5]) == (503, b"5.5.1"), "AUTH twice"
    recs = sub.spool_records()
    assert len(recs) == 1
    assert recs[0]["flags"] & SPOOL_F_AUTH, recs[0]
    assert recs[0]["rcpts"] == ["friend@far.test", "x@localhost"], recs[0]
    assert b" with ESMTPSA id " in recs[0]["message"], recs[0]["message"][:300]
    ok = sub.wait_log("auth")
    assert any("user=alice" in l and "mechanism=PLAIN" in l and "result=ok" in l
               and "client=127.0.0.1" in l for l in ok), ok
    assert any("user=alice" in l for l in sub.wait_log("accept"))


def test_login_with_two_prompts_and_with_an_initial_response(sub):
    with connect(sub) as s:
        assert s.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
        assert s.docmd(b64("bob@example.test")) == (334, b"UGFzc3dvcmQ6")
        assert s.docmd(b64(BOB_PW))[0] == 235
        assert s.sendmail("bob@example.test", ["friend@far.test"], MSG) == {}
    with connect(sub) as s:
        s.user, s.password = "bob@example.test", BOB_PW
        # "AUTH LOGIN <user>", then the password prompt
        assert s.auth("LOGIN", s.auth_login, initial_response_ok=True)[0] == 235
    with connect(sub) as s:
        assert s.docmd("AUTH", "PLAIN") == (334, b"")  # PLAIN without an initial response
        assert s.docmd(plain("alice", ALICE_PW))[0] == 235
    assert len(sub.spool_records()) == 1
    assert len([l for l in sub.wait_log("auth", 3) if "result=ok" in l]) == 3


def test_wrong_credentials_get_535_and_are_logged(sub):
    with connect(sub) as s:
        code, text = s.docmd("AUTH", "PLAIN " + plain("alice", "wrong"))
        assert (code, text[:5]) == (535, b"5.7.8"), text
        assert s.docmd("AUTH", "PLAIN " + plain("nobody", ALICE_PW))[0] == 535
        assert s.docmd("AUTH", "PLAIN " + plain("Alice", ALICE_PW))[0] == 535  # case matters
        # an authorization identity other than the user: we act for nobody else
        assert s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW, authzid="bob"))[0] == 535
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 530
        assert s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW, authzid="alice"))[0] == 235
    fails = [l for l in sub.wait_log("auth", 5) if "result=fail" in l]
    assert len(fails) == 4, fails
    assert any("user=nobody" in l for l in fails)


def test_a_failed_mechanism_leaves_nothing_behind_for_the_next(sub):
    with connect(sub) as s:
        assert s.docmd("AUTH", "PLAIN " + plain("alice", "wrong"))[0] == 535
        # LOGIN cancelled after the user name: 501, and that name is forgotten
        assert s.docmd("AUTH", "LOGIN")[0] == 334
        assert s.docmd(b64("alice"))[0] == 334
        code, text = s.docmd("*")
        assert (code, text[:5]) == (501, b"5.0.0"), text
        # a response that is not base64
        assert s.docmd("AUTH", "PLAIN")[0] == 334
        code, text = s.docmd("!!notbase64!!")
        assert (code, text[:5]) == (501, b"5.5.2"), text
        code, text = s.docmd("AUTH", "PLAIN not-base64")
        assert (code, text[:5]) == (501, b"5.5.2"), text
        code, text = s.docmd("AUTH", "CRAM-MD5")
        assert (code, text[:5]) == (504, b"5.5.4"), text
        # a PLAIN message that is not authzid NUL user NUL password
        assert s.docmd("AUTH", "PLAIN " + b64("alice"))[0] == 501
        # LOGIN from the start: the password alone must not complete the cancelled exchange
        assert s.docmd("AUTH", "LOGIN")[0] == 334
        assert s.docmd(b64(ALICE_PW)) == (334, b"UGFzc3dvcmQ6")  # taken as the user name
        assert s.docmd(b64(ALICE_PW))[0] == 535
        assert s.docmd("AUTH", "LOGIN " + b64("alice"))[0] == 334
        assert s.docmd(b64(ALICE_PW))[0] == 235
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 250


def test_a_response_line_over_max_line_length_is_refused_and_the_session_goes_on(sub):
    with connect(sub) as s:
        assert s.docmd("AUTH", "PLAIN")[0] == 334
        code, text = s.docmd("A" * 3000)  # max_line_length is 2048
        assert (code, text[:5]) == (500, b"5.5.6"), text
        assert s.noop()[0] == 250
        assert s.login("alice", ALICE_PW)[0] == 235


def test_auth_in_a_transaction_or_before_ehlo_gets_503(sub):
    with smtplib.SMTP("127.0.0.1", sub.sub_port, timeout=15) as s:
        s.starttls(context=client_ctx(sub.cert))
        assert s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW))[0] == 503  # no EHLO yet
        s.ehlo("client.test")
        assert s.login("alice", ALICE_PW)[0] == 235
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 250
        assert s.docmd("AUTH", "LOGIN")[0] == 503


def test_a_brute_force_is_throttled_per_address_even_with_the_right_password(make_sub):
    srv = make_sub(auth={"max_failures": "3", "failure_window": "1m"})
    with connect(srv) as s:
        for _ in range(3):
            assert s.docmd("AUTH", "PLAIN " + plain("alice", "guess"))[0] == 535
        code, text = s.docmd("AUTH", "PLAIN " + plain("alice", ALICE_PW))
        assert (code, text[:5]) == (454, b"4.7.0"), text
    # a new connection from the same address: still refused, before any prompt
    with connect(srv) as s:
        assert s.docmd("AUTH", "LOGIN")[0] == 454
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 530
    # another address is not affected
    with connect(srv, source="127.0.0.2") as s:
        assert s.login("alice", ALICE_PW)[0] == 235
        assert s.sendmail("alice@example.test", ["friend@far.test"], MSG) == {}
    assert len(srv.spool_records()) == 1
    assert len([l for l in srv.log_events("reject") if "reason=auth_throttled" in l]) == 2
    assert any("client=127.0.0.2" in l and "result=ok" in l for l in srv.log_events("auth"))


def test_sender_policy_own_allows_only_the_users_addresses_and_any_allows_all(sub):
    def senders(user, password, cases):
        with connect(sub) as s:
            assert s.login(user, password)[0] == 235
            for sender, want in cases:
                code, text = s.docmd("MAIL", "FROM:<%s>" % sender)
                assert code == want, (user, sender, code, text)
                if code == 553:
                    assert text.startswith(b"5.7.1"), text
                s.rset()

    senders("alice", ALICE_PW, [("alice@example.test", 250), ("Alice@Localhost", 250),
                                ("", 250), ("bob@example.test", 553), ("alice@far.test", 553),
                                ("alice@[127.0.0.1]", 553), ("alicex@example.test", 553)])
    senders("bob@example.test", BOB_PW, [("bob@example.test", 250), ("BOB@example.TEST", 250),
                                         ("bob@localhost", 553), ("alice@example.test", 553)])
    assert any("reason=sender_not_owned" in l for l in sub.log_events("reject"))
    sub.reload(auth={"sender_policy": "any"})
    sub.wait_log("reloaded")
    senders("alice", ALICE_PW, [("bob@example.test", 250), ("anyone@far.test", 250)])


def test_a_reload_reads_the_users_file_again(sub):
    with open(sub.users, "a") as f:
        f.write(passwd("carol", "carols pw") + "\n")
    with connect(sub) as s:
        assert s.docmd("AUTH", "PLAIN " + plain("carol", "carols pw"))[0] == 535
    sub.reload()
    sub.wait_log("reloaded")
    with connect(sub) as s:
        assert s.login("carol", "carols pw")[0] == 235
    # a users file with an error keeps the running users
    with open(sub.users, "a") as f:
        f.write("dave:$1$saltsalt$9xy1btjgzLYfb7hivXtC//\n")
    sub.reload()
    lines = sub.wait_log("reload_failed")
    assert any("users:6: a weak hash method" in l for l in lines), lines
    with connect(sub) as s:
        assert s.login("carol", "carols pw")[0] == 235


def test_implicit_tls_submission_offers_auth_at_once(sub):
    with smtplib.SMTP_SSL("127.0.0.1", sub.sub_tls_port, local_hostname="client.test",
                          timeout=15, context=client_ctx(sub.cert)) as s:
        s.ehlo()
        assert s.esmtp_features.get("auth", "").split() == ["PLAIN", "LOGIN"]
        assert not s.has_extn("starttls")
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 530
        assert s.login("alice", ALICE_PW)[0] == 235
        assert s.sendmail("alice@example.test", ["friend@far.test"], MSG) == {}
    recs = sub.spool_records()
    assert len(recs) == 1 and recs[0]["flags"] & SPOOL_F_AUTH
    assert b" with ESMTPSA id " in recs[0]["message"]


def test_ringmxctl_passwd_from_a_pipe_prints_a_hash_crypt_verifies(users_lines):
    line = passwd("alice@example.test", "p\u00e4ss w:rd")
    user, _, hashed = line.partition(":")
    assert user == "alice@example.test"
    assert hashed.startswith("$y$"), line  # Debian's libcrypt has yescrypt
    assert crypt.crypt("p\u00e4ss w:rd", hashed) == hashed
    assert crypt.crypt("p\u00e4ss w:rd ", hashed) != hashed
    # without a user, the hash alone; a bad user name is refused
    r = subprocess.run([os.path.join(BIN, "ringmxctl"), "passwd"], input="x\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("$y$") and ":" not in r.stdout
    r = subprocess.run([os.path.join(BIN, "ringmxctl"), "passwd", "a:b"], input="x\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no ':'" in r.stderr
    r = subprocess.run([os.path.join(BIN, "ringmxctl"), "passwd", "a"], input="",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no password" in r.stderr


def tty_passwd(first, second):
    """Runs `ringmxctl passwd tty` on a pseudo-terminal, typing the two passwords at the
    prompts. Returns (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(os.path.join(BIN, "ringmxctl"), ["ringmxctl", "passwd", "tty"])
    out = b""

    def expect(what):
        nonlocal out
        deadline = time.time() + 10
        while what not in out and time.time() < deadline:
            if not select.select([fd], [], [], 0.1)[0]:
                continue  # a read only when there is something: the deadline holds
            try:
                out += os.read(fd, 1024)
            except OSError:
                break
        assert what in out, out

    expect(b"Password: ")
    os.write(fd, first.encode() + b"\n")
    expect(b"Password again: ")
    os.write(fd, second.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_ringmxctl_passwd_on_a_terminal_asks_twice_without_echo():
    rc, out = tty_passwd("s3cret-tty", "s3cret-tty")
    assert rc == 0, out
    assert b"s3cret-tty" not in out, "the password was echoed"
    line = [l for l in out.decode().splitlines() if l.startswith("tty:")]
    assert len(line) == 1, out
    hashed = line[0].partition(":")[2].strip()
    assert crypt.crypt("s3cret-tty", hashed) == hashed
    rc, out = tty_passwd("one", "two")
    assert rc == 1 and b"the two passwords differ" in out, out


# ---- the password checks run off the shard ([auth] check_threads) -----------------------------

class Arrivals:
    """Records the order in which replies arrive on several connections (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.order = []

    def add(self, what):
        with self.lock:
            self.order.append(what)


def test_slow_password_checks_never_hold_up_a_good_client_on_the_same_shard(make_sub):
    """shards = 1: three clients send a wrong password for a user whose hash costs about a
    second each; meanwhile a good client on port 25 runs a whole transaction and a NOOP. Its
    NOOP reply must arrive before any 535: had a check run on the shard's thread, every reply of
    the shard would wait for it. An ordering assertion; the latencies are only printed."""
    srv = make_sub(server={"shards": "1"})
    arrivals, codes = Arrivals(), {}
    attackers = [connect(srv) for _ in range(3)]

    def attack(i, s):
        codes[i] = s.getreply()
        arrivals.add("auth%d" % i)

    for s in attackers:
        s.putcmd("AUTH", "PLAIN " + plain("slow", "a wrong guess"))
    threads = [threading.Thread(target=attack, args=(i, s)) for i, s in enumerate(attackers)]
    for th in threads:
        th.start()
    time.sleep(0.2)  # lets the server read the three AUTH lines first (not an assertion)
    lat = {}
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="good.test", timeout=30) as g:
        lat["connect+greeting"] = time.monotonic() - t0
        for step, call in (("EHLO", lambda: g.ehlo()),
                           ("MAIL", lambda: g.mail("good@client.test")),
                           ("RCPT", lambda: g.rcpt("x@localhost")),
                           ("DATA", lambda: g.data(MSG)),
                           ("NOOP", lambda: g.noop())):
            t = time.monotonic()
            code = call()[0]
            lat[step] = time.monotonic() - t
            assert code == 250, (step, code)
        arrivals.add("noop")
    for th in threads:
        th.join(60)
    for s in attackers:
        s.close()
    print("\ngood client latencies (s) while 3 slow checks ran: " +
          " ".join("%s=%.4f" % kv for kv in lat.items()) + "; arrival order: %r" % arrivals.order)
    assert all(codes[i][0] == 535 for i in range(3)), codes
    assert arrivals.order[0] == "noop", arrivals.order
    fails = [l for l in srv.wait_log("auth", 3) if "result=fail" in l]
    assert len(fails) == 3 and all("reason=credentials" in l for l in fails), fails
    assert len(srv.spool_records()) == 1


def test_input_pipelined_behind_a_slow_auth_waits_for_its_result(make_sub):
    srv = make_sub(server={"shards": "1"})
    with connect(srv) as s:
        # AUTH and MAIL in one write: MAIL is read only once the check has answered
        s.send("AUTH PLAIN %s\r\nMAIL FROM:<slow@example.test>\r\nNOOP\r\n"
               % plain("slow", SLOW_PW))
        assert s.getreply() == (235, b"2.7.0 Authentication successful")
        assert s.getreply()[0] == 250, "MAIL ran after the 235, as authenticated"
        assert s.getreply()[0] == 250
        s.send("RSET\r\nAUTH PLAIN %s\r\nNOOP\r\n" % plain("slow", SLOW_PW))
        assert [s.getreply()[0] for _ in range(3)] == [250, 503, 250]
    with connect(srv) as s:
        s.send("AUTH PLAIN %s\r\nMAIL FROM:<slow@example.test>\r\n" % plain("slow", "wrong"))
        assert s.getreply()[0] == 535
        assert s.getreply()[0] == 530, "MAIL after a failed AUTH: still unauthenticated"


def abort(s):
    """Closes a client connection at once, with an RST (SO_LINGER 0)."""
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # smtplib's: its reply file holds the socket open too


def test_a_client_that_leaves_during_its_check_is_dropped_and_its_failure_still_counts(make_sub):
    """The result of a check whose connection is gone is dropped (no reply, nothing touched in
    a freed or reused connection), but a wrong password is counted and logged all the same."""
    srv = make_sub(server={"shards": "1"}, auth={"max_failures": "2", "failure_window": "1m"})
    # a FIN, then an RST, each right after a wrong password
    for leave in (lambda s: s.close(), abort):
        s = connect(srv)
        s.send("AUTH PLAIN %s\r\n" % plain("slow", "a wrong guess"))
        leave(s)
    fails = srv.wait_log("auth", 2, timeout=30)
    assert all("result=fail" in l and "reason=credentials" in l for l in fails), fails
    # both connections were gone (released) before their results came back
    events = [l.split(" event=")[1].split()[0] for l in srv.log().splitlines() if " event=" in l]
    assert events.index("auth") > [i for i, e in enumerate(events) if e == "disconnect"][1], events
    # both counted: this address is throttled now, even with the right password
    with connect(srv) as s:
        assert s.docmd("AUTH", "PLAIN " + plain("slow", SLOW_PW))[0] == 454
    # a right password from a client that leaves logs nobody in, and counts nothing
    s = connect(srv, source="127.0.0.2")
    s.send("AUTH PLAIN %s\r\n" % plain("slow", SLOW_PW))
    abort(s)
    lines = srv.wait_log("auth", 3, timeout=30)
    assert any("client=127.0.0.2" in l and "reason=client_gone" in l for l in lines), lines
    # connection slots are reused meanwhile, and the server still serves
    for _ in range(5):
        with connect(srv, source="127.0.0.2") as s:
            assert s.noop()[0] == 250
    with connect(srv, source="127.0.0.2") as s:
        assert s.login("slow", SLOW_PW)[0] == 235
        assert s.sendmail("slow@example.test", ["friend@far.test"], MSG) == {}
    assert len(srv.spool_records()) == 1
    assert srv.stop() == 0


def test_sigterm_during_a_check_waits_for_it_then_says_421_and_exits_cleanly(make_sub):
    """Graceful shutdown with a check in flight: the shard waits for its result, the session
    gets its answer and the 421, the check threads are joined (the sanitizer build checks that
    nothing leaks) and ringmx exits 0."""
    srv = make_sub(server={"shards": "1"})
    s = connect(srv)
    s.send("AUTH PLAIN %s\r\n" % plain("slow", SLOW_PW))
    time.sleep(0.3)  # lets the server take the AUTH line first (not an assertion)
    srv.proc.send_signal(signal.SIGTERM)
    codes = []
    while True:
        code = s.getreply()[0]
        codes.append(code)
        if code == 421 or len(codes) > 3:
            break
    s.close()
    assert codes[-1] == 421 and codes[:-1] in ([235], []), codes
    assert srv.stop() == 0
    assert "event=stopped" in srv.log()
