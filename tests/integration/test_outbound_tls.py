"""Outbound STARTTLS (RFC 3207): opportunistic by default, `[domain] tls = required` for
encrypted-or-nothing, and the client side of STARTTLS injection: bytes a server sends after
its 220 to STARTTLS are discarded, never read as replies. Receivers: ringmx-sink --starttls,
and a small Python server with ssl for the injection case."""
import os
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import BIN, free_port, wait_port
from outbound import (events, loopback_address, make_message, outbound_sections, send,
                      wait_events)

SENDER = "sender@localhost"


def make_cert(d):
    cert, key = str(d / "rcv.crt"), str(d / "rcv.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=rcv.test", "-days", "1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def mta(ringmx_factory, hop, **sections):
    return ringmx_factory(server={"max_connections_per_ip": "0"}, transport={"tls.test": hop},
                          **outbound_sections(None, **sections))


@pytest.fixture
def tls_sink(tmp_path):
    cert, key = make_cert(tmp_path)
    port = free_port()
    p = subprocess.Popen([os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:%d" % port,
                          "--shards", "1", "--starttls", "--tls-cert", cert, "--tls-key", key],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, proc=p)
    yield port
    p.terminate()
    p.wait(timeout=10)


@pytest.mark.outbound
def test_starttls_is_used_when_offered(ringmx_factory, tls_sink):
    srv = mta(ringmx_factory, "smtp:[127.0.0.1]:%d" % tls_sink)
    qid = send(srv, SENDER, ["u@tls.test"], make_message(subject="over tls"))
    wait_events(srv, "delivered", qid=qid)
    (t,) = events(srv, "smtp_out_tls")[:1]
    assert t["tls"].startswith("TLSv1."), t
    assert t["verified"] == "no"  # self-signed: opportunistic TLS goes on, and says so


@pytest.mark.outbound
def test_tls_required_is_met_by_a_server_that_offers_starttls(ringmx_factory, tls_sink):
    srv = mta(ringmx_factory, "smtp:[127.0.0.1]:%d" % tls_sink,
              extra={"domain tls.test": {"tls": "required"}})
    qids = [send(srv, SENDER, ["u%d@tls.test" % i], make_message(subject="r%d" % i))
            for i in range(5)]
    for q in qids:
        wait_events(srv, "delivered", qid=q)
    assert events(srv, "deferred") == []


class InjectingServer:
    """SMTP over a socket; after STARTTLS it answers `220` and, in the same write, a forged
    `250` that a careless client would take as the reply to its next EHLO; then TLS."""

    def __init__(self, host, port, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.messages, self.errors = [], []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                self.session(c)
            except Exception as e:  # a broken session is a test failure, recorded
                self.errors.append(repr(e))
            finally:
                c.close()

    def session(self, c):
        c.settimeout(10)
        f = c.makefile("rb")
        c.sendall(b"220 inject.test ESMTP\r\n")
        tls = False
        data = None
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if data is not None:
                if line == b".\r\n":
                    self.messages.append((tls, b"".join(data)))
                    data = None
                    c.sendall(b"250 2.0.0 stored\r\n")
                else:
                    data.append(line)
                continue
            if verb == b"EHLO":
                c.sendall(b"250-inject.test\r\n" + (b"" if tls else b"250-STARTTLS\r\n") +
                          b"250 8BITMIME\r\n")
            elif verb == b"STAR":
                c.sendall(b"220 2.0.0 go ahead\r\n250 2.0.0 forged: not over TLS\r\n")
                c = self.ctx.wrap_socket(c, server_side=True)
                f = c.makefile("rb")
                tls = True
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                c.sendall(b"250 2.0.0 ok\r\n")
            elif verb == b"DATA":
                data = []
                c.sendall(b"354 go\r\n")
            elif verb == b"QUIT":
                c.sendall(b"221 bye\r\n")
                return
            else:
                c.sendall(b"502 5.5.2 what\r\n")

    def close(self):
        self.sock.close()


@pytest.mark.outbound
def test_bytes_after_the_220_to_starttls_are_never_read_as_replies(ringmx_factory, tmp_path):
    cert, key = make_cert(tmp_path)
    addr = loopback_address(2525)
    srv_in = InjectingServer(addr, 2525, cert, key)
    try:
        srv = mta(ringmx_factory, "smtp:[%s]:2525" % addr)
        qid = send(srv, SENDER, ["u@tls.test"], make_message(subject="injection"))
        wait_events(srv, "delivered", qid=qid)
        assert srv_in.errors == []
        assert [tls for tls, _ in srv_in.messages] == [True]
        (inj,) = events(srv, "smtp_out_tls_injection")
        assert int(inj["discarded"]) == len(b"250 2.0.0 forged: not over TLS\r\n")
    finally:
        srv_in.close()


def make_ip_pki(d, ip):
    """A throw-away CA, and a certificate it signs for the address IP only (SAN IP:...)."""
    ca, ca_key = str(d / "ip-ca.crt"), str(d / "ip-ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=ip test CA", "-days", "1", "-keyout", ca_key, "-out", ca],
                   check=True, capture_output=True)
    csr, cert, key = str(d / "ip.csr"), str(d / "ip.crt"), str(d / "ip.key")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=not-a-name",
                    "-keyout", key, "-out", csr], check=True, capture_output=True)
    ext = d / "ip.ext"
    ext.write_text("subjectAltName = IP:%s\n" % ip)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", cert],
                   check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.outbound
@pytest.mark.parametrize("cert_ip, ok", [("127.0.0.1", True), ("127.0.0.2", False)])
def test_verify_checks_an_address_literal_hop_against_the_certificates_ip(
        ringmx_factory, tmp_path, cert_ip, ok):
    """tls = verify with a hop written as an address ([127.0.0.1]:port): the certificate must
    name that address (an iPAddress SAN, RFC 5280 4.2.1.6), not a DNS name spelled like it."""
    ca, cert, key = make_ip_pki(tmp_path, cert_ip)
    port = free_port()
    p = subprocess.Popen([os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:%d" % port,
                          "--shards", "1", "--starttls", "--tls-cert", cert, "--tls-key", key],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port, proc=p)
        srv = mta(ringmx_factory, "smtp:[127.0.0.1]:%d" % port,
                  deliver={"tls_ca_file": ca}, extra={"domain tls.test": {"tls": "verify"}})
        qid = send(srv, SENDER, ["u@tls.test"], make_message(subject="ip verify"))
        if ok:
            wait_events(srv, "delivered", qid=qid, timeout=10)
            (t,) = events(srv, "smtp_out_tls")[:1]
            assert t["verified"] == "yes" and t["policy"] == "verify", t
        else:
            (d,) = wait_events(srv, "deferred", qid=qid, timeout=10)[:1]
            assert d["dsn"] == "4.7.5", d
            assert events(srv, "delivered") == []
    finally:
        p.terminate()
        p.wait(timeout=10)
