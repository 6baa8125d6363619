"""Inbound TLS: STARTTLS (RFC 3207) and implicit TLS, driven by swaks, smtplib and Python's ssl.

Each test makes its own self-signed certificate with the openssl command-line tool. The
STARTTLS injection test checks DESIGN.md invariant 4: what the client pipelines behind
STARTTLS in the clear is never answered, and the session restarts from EHLO after the
handshake.
"""
import hashlib
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BIN, free_port, wait_port
from smtpwire import Wire, assert_serves

MSG = b"From: a@client.test\r\nTo: b@localhost\r\nSubject: tls\r\n\r\nover TLS\r\n"


def make_cert(d, name="mx"):
    """A self-signed RSA certificate for mx.test: (cert path, key path)."""
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=mx.test", "-days", "1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def fingerprint_of_file(cert):
    with open(cert) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def client_ctx(cert):
    """A client context that trusts exactly this self-signed certificate (its name is mx.test,
    we connect to 127.0.0.1, so the name is not checked)."""
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    return ctx


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    return make_cert(str(d))


@pytest.fixture
def tls_srv(ringmx_factory, certs):
    """A server with STARTTLS on its listen port and implicit TLS on .tls_port."""
    cert, key = certs
    tls_port = free_port()
    srv = ringmx_factory(server={"listen_tls": "127.0.0.1:%d" % tls_port},
                         extra={"tls": {"cert": cert, "key": key}})
    srv.tls_port = tls_port
    srv.cert = cert
    return srv


def starttls_client(srv, name="smtplib.test"):
    s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname=name, timeout=5)
    s.ehlo()
    assert s.has_extn("starttls")
    code, _ = s.starttls(context=client_ctx(srv.cert))
    assert code == 220
    return s


def recv_line(sock):
    """Reads exactly one CRLF-ended line, byte by byte (so nothing after it is consumed)."""
    line = b""
    while not line.endswith(b"\r\n"):
        b = sock.recv(1)
        assert b, "closed after %r" % line
        line += b
    return line


def read_reply(sock):
    """One complete (possibly multi-line) reply, read line by line."""
    lines = []
    while True:
        line = recv_line(sock)
        lines.append(line)
        if line[3:4] != b"-":
            return lines


def read_until_close(sock, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk


# ---- STARTTLS ---------------------------------------------------------------------------------


def test_swaks_starttls_delivers_and_the_received_header_says_esmtps(tls_srv):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % tls_srv.port, "--tls",
                        "--helo", "swaks.test", "--from", "a@client.test",
                        "--to", "b@localhost"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "=== TLS started with cipher" in r.stdout, r.stdout
    assert "250 2.0.0 Ok: queued as" in r.stdout, r.stdout
    recs = tls_srv.spool_records()
    assert len(recs) == 1
    msg = recs[0]["message"]
    assert msg.startswith(b"Received: from swaks.test ([127.0.0.1])\r\n\t(using TLSv1."), msg
    assert b" with cipher " in msg.split(b"\r\n")[1]
    assert b"by mx.test (ringmx) with ESMTPS id " in msg
    tls_srv.wait_log("tls")


def test_smtplib_starttls_delivers_then_starttls_is_gone_and_a_second_one_gets_503(tls_srv):
    with starttls_client(tls_srv) as s:
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.ehlo()
        assert not s.has_extn("starttls"), s.esmtp_features
        assert s.has_extn("pipelining") and s.has_extn("chunking")
        assert s.docmd("STARTTLS")[0] == 503
        assert s.sendmail("a@client.test", ["b@localhost"], MSG) == {}
    recs = tls_srv.spool_records()
    assert len(recs) == 1
    assert recs[0]["helo"] == "smtplib.test"
    assert b" with ESMTPS id " in recs[0]["message"]


def test_after_starttls_the_session_restarts_so_mail_before_ehlo_gets_503(tls_srv):
    with starttls_client(tls_srv) as s:
        # smtplib forgets its EHLO after starttls(); the server must have forgotten it too
        code, text = s.docmd("MAIL FROM:<a@client.test>")
        assert code == 503, text
        s.ehlo("again.test")
        assert s.docmd("MAIL FROM:<a@client.test>")[0] == 250
        assert s.docmd("RCPT TO:<b@localhost>")[0] == 250
        assert s.data(MSG)[0] == 250
    recs = tls_srv.spool_records()
    assert recs[0]["helo"] == "again.test"  # the helo given in the clear is forgotten


def test_starttls_injection_the_pipelined_rset_is_never_answered(tls_srv):
    sock = socket.create_connection(("127.0.0.1", tls_srv.port), timeout=5)
    try:
        assert read_reply(sock)[0].startswith(b"220 ")
        sock.sendall(b"EHLO inject.test\r\n")
        assert b"250-STARTTLS\r\n" in read_reply(sock)
        sock.sendall(b"STARTTLS\r\nRSET\r\n")  # one write, one read on the server
        assert recv_line(sock) == b"220 2.0.0 Ready to start TLS\r\n"
        tls = client_ctx(tls_srv.cert).wrap_socket(sock)
        sock = tls
        tls.sendall(b"EHLO after.test\r\n")
        # the first thing over TLS is the answer to EHLO: no stray 250 for the RSET
        ehlo = read_reply(tls)
        assert ehlo[0] == b"250-mx.test\r\n", ehlo
        assert b"250-STARTTLS\r\n" not in ehlo
        tls.sendall(b"QUIT\r\n")
        rest = read_until_close(tls)
        assert rest == b"221 2.0.0 mx.test Bye\r\n", rest
    finally:
        sock.close()
    lines = tls_srv.wait_log("reject")
    assert any("reason=starttls_pipelined" in l and "discarded=6" in l for l in lines), lines


def test_starttls_injection_after_a_pipelined_transaction_is_discarded_too(tls_srv):
    """STARTTLS and the injected command wait in the input buffer behind a message being
    committed: they are read from there, not from a fresh recv, and still discarded."""
    sock = socket.create_connection(("127.0.0.1", tls_srv.port), timeout=5)
    try:
        assert read_reply(sock)[0].startswith(b"220 ")
        sock.sendall(b"EHLO inject.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@localhost>\r\n"
                     b"DATA\r\n" + MSG + b".\r\nSTARTTLS\r\nMAIL FROM:<evil@client.test>\r\n")
        replies = [read_reply(sock) for _ in range(6)]
        assert replies[4][0].startswith(b"250 2.0.0 Ok: queued as"), replies
        assert replies[5] == [b"220 2.0.0 Ready to start TLS\r\n"], replies
        tls = client_ctx(tls_srv.cert).wrap_socket(sock)
        sock = tls
        tls.sendall(b"NOOP\r\n")
        assert read_reply(tls) == [b"250 2.0.0 Ok\r\n"]
        tls.sendall(b"RCPT TO:<b@localhost>\r\n")  # no MAIL survived the handshake
        assert read_reply(tls)[0].startswith(b"503 ")
    finally:
        sock.close()
    assert len(tls_srv.spool_records()) == 1


def test_starttls_refusals_arguments_501_in_a_transaction_503(tls_srv):
    with Wire(tls_srv.port) as w:
        w.cmd("EHLO a.test")
        assert w.cmd("STARTTLS now").code == 501
        assert w.cmd("MAIL FROM:<a@client.test>").code == 250
        assert w.cmd("STARTTLS").code == 503
        assert w.cmd("RSET").code == 250
        assert w.cmd("STARTTLS").code == 220


def test_without_tls_configured_starttls_is_not_offered_and_gets_502(ringmx):
    with Wire(ringmx.port) as w:
        r = w.cmd("EHLO a.test")
        assert "STARTTLS" not in r.text
        assert w.cmd("STARTTLS").code == 502
        assert w.cmd("NOOP").code == 250


def test_server_tls_none_keeps_starttls_off_even_with_a_certificate(ringmx_factory, certs):
    cert, key = certs
    srv = ringmx_factory(server={"tls": "none"}, extra={"tls": {"cert": cert, "key": key}})
    with Wire(srv.port) as w:
        assert "STARTTLS" not in w.cmd("EHLO a.test").text
        assert w.cmd("STARTTLS").code == 502


def test_min_version_1_3_refuses_a_tls_1_2_client(ringmx_factory, certs):
    cert, key = certs
    srv = ringmx_factory(extra={"tls": {"cert": cert, "key": key, "min_version": "1.3"}})
    srv.cert = cert
    ctx = client_ctx(cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=5)
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        s.starttls(context=ctx)
        s.noop()
    s.close()
    srv.wait_log("tls_error")
    with starttls_client(srv) as ok:
        assert ok.sock.version() == "TLSv1.3"


# ---- implicit TLS -----------------------------------------------------------------------------


def test_implicit_tls_greets_over_tls_and_delivers(tls_srv):
    with smtplib.SMTP_SSL("127.0.0.1", tls_srv.tls_port, local_hostname="implicit.test",
                          timeout=5, context=client_ctx(tls_srv.cert)) as s:
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.docmd("STARTTLS")[0] == 503
        assert s.sendmail("a@client.test", ["b@localhost"], MSG) == {}
    rec = tls_srv.spool_records()[0]
    assert b"(using TLSv1." in rec["message"] and b" with ESMTPS id " in rec["message"]


def test_implicit_tls_from_the_first_byte_with_a_wrapped_socket(tls_srv):
    raw = socket.create_connection(("127.0.0.1", tls_srv.tls_port), timeout=5)
    with client_ctx(tls_srv.cert).wrap_socket(raw) as s:
        assert read_reply(s) == [b"220 mx.test ESMTP ringmx\r\n"]
        s.sendall(b"QUIT\r\n")
        assert read_reply(s) == [b"221 2.0.0 mx.test Bye\r\n"]


def test_a_plaintext_client_on_the_implicit_port_is_closed_and_the_server_goes_on(tls_srv):
    sock = socket.create_connection(("127.0.0.1", tls_srv.tls_port), timeout=5)
    sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        sock.recv(100)  # no greeting in the clear: the server waits for a ClientHello
    sock.sendall(b"EHLO plain.test\r\n")
    data = read_until_close(sock)
    sock.close()
    assert b"220" not in data and b"250" not in data, data  # at most a TLS alert
    lines = tls_srv.wait_log("tls_error")
    assert "phase=handshake" in lines[0]
    assert_serves(tls_srv.port)
    raw = socket.create_connection(("127.0.0.1", tls_srv.tls_port), timeout=5)
    with client_ctx(tls_srv.cert).wrap_socket(raw) as s:
        assert read_reply(s)[0].startswith(b"220 ")


def test_a_garbage_client_hello_closes_only_that_connection(tls_srv):
    good = starttls_client(tls_srv, "good.test")  # a TLS session already going
    try:
        with Wire(tls_srv.port) as w:
            w.cmd("EHLO bad.test")
            assert w.cmd("STARTTLS").code == 220
            # a TLS handshake record header, then garbage
            w.send(b"\x16\x03\x01\x00\x40" + os.urandom(64))
            data = read_until_close(w.sock)
            assert b"250" not in data
        bad = socket.create_connection(("127.0.0.1", tls_srv.tls_port), timeout=5)
        bad.sendall(b"\x16\x03\x03\x00\x10" + b"\xff" * 16)
        read_until_close(bad)
        bad.close()
        assert len(tls_srv.wait_log("tls_error", count=2)) >= 2
        good.ehlo()
        assert good.sendmail("a@client.test", ["b@localhost"], MSG) == {}
    finally:
        good.close()
    assert len(tls_srv.spool_records()) == 1


def test_a_stalled_handshake_is_cut_by_the_command_timeout(ringmx_factory, certs):
    cert, key = certs
    tls_port = free_port()
    srv = ringmx_factory(server={"listen_tls": "127.0.0.1:%d" % tls_port,
                                 "timeout_command": "1"},
                         extra={"tls": {"cert": cert, "key": key}})
    sock = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    start = time.monotonic()
    assert read_until_close(sock) == b""
    assert time.monotonic() - start < 4
    sock.close()
    lines = srv.wait_log("tls_error")
    assert "reason=timeout" in lines[0]


# ---- SIGHUP -----------------------------------------------------------------------------------


def test_sighup_loads_a_new_certificate_for_new_connections_and_old_sessions_go_on(
        tls_srv, tmp_path):
    old_fp = fingerprint_of_file(tls_srv.cert)
    old = starttls_client(tls_srv, "old.test")
    try:
        assert hashlib.sha256(old.sock.getpeercert(binary_form=True)).hexdigest() == old_fp
        d = tmp_path / "new-certs"
        d.mkdir()
        cert2, key2 = make_cert(str(d), "mx2")
        new_fp = fingerprint_of_file(cert2)
        assert new_fp != old_fp
        tls_srv.reload(tls={"cert": cert2, "key": key2})
        tls_srv.wait_log("reloaded")
        # STARTTLS on the listen port and implicit TLS both present the new certificate
        with smtplib.SMTP("127.0.0.1", tls_srv.port, timeout=5) as s:
            s.starttls(context=client_ctx(cert2))
            assert hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest() == new_fp
        raw = socket.create_connection(("127.0.0.1", tls_srv.tls_port), timeout=5)
        with client_ctx(cert2).wrap_socket(raw) as s:
            assert hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest() == new_fp
            assert read_reply(s)[0].startswith(b"220 ")
        # the session made under the old certificate still works
        old.ehlo()
        assert old.sendmail("a@client.test", ["b@localhost"], MSG) == {}
    finally:
        old.close()
    assert len(tls_srv.spool_records()) == 1


def test_sighup_with_a_broken_certificate_keeps_the_running_one(tls_srv, tmp_path):
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate\n")
    tls_srv.reload(tls={"cert": str(bad)})
    lines = tls_srv.wait_log("reload_failed")
    assert "[tls] cert" in lines[0]
    with starttls_client(tls_srv) as s:
        assert s.noop()[0] == 250


# ---- config errors ----------------------------------------------------------------------------


def check(tmp_path, text):
    conf = tmp_path / "c.conf"
    conf.write_text(text)
    r = subprocess.run([os.path.join(BIN, "ringmx"),
                        "--check", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


def test_check_reports_a_missing_certificate_and_a_mismatched_key_with_file_and_line(
        tmp_path, certs):
    cert, key = certs
    d = tmp_path / "other"
    d.mkdir()
    _, key2 = make_cert(str(d), "other")
    head = "[server]\nlisten = 127.0.0.1:2525\nhostname = mx.test\n[tls]\n"
    rc, out = check(tmp_path, head + "cert = %s/nope.crt\nkey = %s\n" % (tmp_path, key))
    assert rc == 1 and "c.conf:5: [tls] cert: cannot open" in out, out
    rc, out = check(tmp_path, head + "cert = %s\nkey = %s\n" % (cert, key2))
    assert rc == 1 and "c.conf:6: [tls] key: " in out and "not the private key" in out, out
    rc, out = check(tmp_path, head + "cert = %s\nkey = %s\n" % (cert, key))
    assert rc == 0, out


# ---- ringmx-sink --starttls -------------------------------------------------------------------


def test_ringmx_sink_offers_starttls_with_its_certificate(certs):
    cert, key = certs
    port = free_port()
    sink = subprocess.Popen([os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:%d" % port,
                             "--shards", "1", "--starttls", "--tls-cert", cert, "--tls-key", key],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, proc=sink)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            s.starttls(context=client_ctx(cert))
            s.ehlo()
            assert not s.has_extn("starttls")
            assert s.sendmail("a@client.test", ["b@sink.test"], MSG) == {}
    finally:
        sink.send_signal(signal.SIGTERM)
        _, err = sink.communicate(timeout=20)
    assert sink.returncode == 0, err
    assert b" messages=1 " in err, err
    bad = subprocess.run([os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:1",
                          "--starttls"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "go together" in bad.stderr
