"""PROXY protocol v1 and v2 ([server] proxy_protocol = yes): ringmx behind HAProxy.

The tests play HAProxy: they connect from loopback (inside the default proxy_networks), send the
header HAProxy would send, then speak SMTP (or TLS) for the client the header names. The
client's address must be the one used for the Received: header, the logs, relaying and the
per-IP limit; a bad header, a peer outside proxy_networks or a silent proxy is closed with no
reply, and the server goes on serving.
"""
import socket
import ssl
import struct
import time

from conftest import free_port
from smtpwire import Wire, assert_serves, ehlo
from test_tls import client_ctx, make_cert

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
MSG = b"From: a@client.test\r\nTo: b@localhost\r\nSubject: proxied\r\n\r\nhello\r\n"


def v1(src, dst="127.0.0.1", sport=51000, dport=25):
    proto = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src=None, dst=None, sport=51000, dport=25, tlvs=b"", command=0x1):
    """A v2 header; src None: LOCAL with AF_UNSPEC (HAProxy's health checks)."""
    if src is None:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in src:
        fam, af = 0x21, socket.AF_INET6
        dst = dst or "::1"
    else:
        fam, af = 0x11, socket.AF_INET
        dst = dst or "127.0.0.1"
    addrs = (socket.inet_pton(af, src) + socket.inet_pton(af, dst) +
             struct.pack("!HH", sport, dport))
    return (V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(addrs) + len(tlvs)) +
            addrs + tlvs)


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


def proxied(port, header, source=None):
    """A Wire that sends the header first and then reads the greeting."""
    w = Wire(port, source=source, greet=False)
    w.send(header)
    w.greeting = w.reply()
    return w


def deliver(w, rcpt="b@localhost", helo="client.test"):
    ehlo(w, helo)
    assert w.cmd("MAIL FROM:<a@client.test>").code == 250
    assert w.cmd("RCPT TO:<%s>" % rcpt).code == 250
    assert w.cmd("DATA").code == 354
    w.send(MSG + b".\r\n")
    r = w.reply()
    assert r.code == 250, r
    assert w.cmd("QUIT").code == 221
    return r


def proxy_srv(factory, **server):
    server = dict(server)
    server["proxy_protocol"] = "yes"
    return factory(server=server)


# ---- the client's address is the header's -------------------------------------------------


def test_v1_header_names_the_client_in_received_and_in_the_logs(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    with proxied(srv.port, v1("203.0.113.7")) as w:
        assert w.greeting.code == 220, w.greeting
        deliver(w)
    recs = srv.spool_records()
    assert len(recs) == 1
    assert recs[0]["message"].startswith(b"Received: from client.test ([203.0.113.7])\r\n")
    line = srv.wait_log("proxy")[-1]
    assert "client=203.0.113.7" in line and "port=51000" in line
    assert "proxy=127.0.0.1" in line and "version=1" in line
    connects = srv.wait_log("connect")
    assert any("client=203.0.113.7" in l and "port=51000" in l for l in connects), connects
    accepts = srv.wait_log("accept")
    assert len(accepts) == 1 and "client=203.0.113.7" in accepts[0], accepts
    srv.wait_log("disconnect")
    assert any("client=203.0.113.7" in l for l in srv.log_events("disconnect"))


def test_v2_ipv4_and_ipv6_headers_with_tlvs_name_the_client(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    tlvs = tlv(0x01, b"smtp") + tlv(0x02, b"mx.example") + tlv(0x04, b"")
    with proxied(srv.port, v2("203.0.113.9", sport=40000)) as w:
        deliver(w, helo="four.test")
    with proxied(srv.port, v2("2001:db8::7", tlvs=tlvs)) as w:
        deliver(w, helo="six.test")
    msgs = sorted(r["message"] for r in srv.spool_records())
    assert msgs[0].startswith(b"Received: from four.test ([203.0.113.9])\r\n"), msgs[0]
    assert msgs[1].startswith(b"Received: from six.test ([IPv6:2001:db8::7])\r\n"), msgs[1]
    lines = srv.wait_log("proxy", 2)
    assert any("client=203.0.113.9" in l and "port=40000" in l and "version=2" in l
               for l in lines), lines
    assert any("client=2001:db8::7" in l for l in lines), lines


def test_v2_local_and_v1_unknown_keep_the_proxy_as_the_client(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    for header in (v2(None), v2(None, tlvs=tlv(0x04, b"pad")), b"PROXY UNKNOWN\r\n"):
        with proxied(srv.port, header) as w:
            assert w.greeting.code == 220
            deliver(w, rcpt="x@elsewhere.test")  # 127.0.0.1 is in relay_networks
    lines = srv.wait_log("proxy", 3)
    assert all("client=127.0.0.1" in l and "command=local" in l for l in lines), lines


def test_relay_policy_uses_the_real_client_address(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    # the peer is 127.0.0.1, a relay client; the client it speaks for is not
    with proxied(srv.port, v1("203.0.113.7")) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<a@client.test>").code == 250
        r = w.cmd("RCPT TO:<x@elsewhere.test>")
        assert r.last == "554 5.7.1 Error: relay access denied", r
        assert w.cmd("RCPT TO:<b@localhost>").code == 250  # local mail is still fine
    with proxied(srv.port, v2("127.0.0.1")) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<a@client.test>").code == 250
        assert w.cmd("RCPT TO:<x@elsewhere.test>").code == 250
    denied = [l for l in srv.log_events("reject") if "reason=relay_denied" in l]
    assert len(denied) == 1 and "client=203.0.113.7" in denied[0], denied


def test_the_per_ip_limit_counts_the_real_client_not_the_proxy(ringmx_factory):
    srv = proxy_srv(ringmx_factory, max_connections_per_ip="2")
    a = proxied(srv.port, v1("203.0.113.7", sport=1001))
    b = proxied(srv.port, v2("203.0.113.7", sport=1002))
    try:
        assert a.greeting.code == 220 and b.greeting.code == 220
        with proxied(srv.port, v1("203.0.113.7", sport=1003)) as c:
            assert c.greeting.last == "421 4.7.0 Error: too many connections from your address"
            c.assert_closed()
        # another client through the same proxy is fine, and so are more of them
        with proxied(srv.port, v1("203.0.113.8")) as d, proxied(srv.port, v1("203.0.113.9")) as e:
            assert d.greeting.code == 220 and e.greeting.code == 220
            assert d.cmd("NOOP").code == 250
        assert a.cmd("NOOP").code == 250 and b.cmd("NOOP").code == 250
        # once one closes, the client's place is free again
        assert a.cmd("QUIT").code == 221
        a.assert_closed()
        deadline = time.monotonic() + 3
        while True:
            with proxied(srv.port, v1("203.0.113.7", sport=1004)) as f:
                if f.greeting.code == 220:
                    break
            assert time.monotonic() < deadline, "the client's slot was never given back"
            time.sleep(0.05)
    finally:
        a.close()
        b.close()
    lines = [l for l in srv.log_events("reject") if "reason=connections_per_ip" in l]
    assert lines and all("client=203.0.113.7" in l for l in lines), lines


# ---- how the header arrives ------------------------------------------------------------------


def test_nothing_is_said_before_the_header_and_a_header_in_pieces_is_read_whole(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    header = v2("203.0.113.7", tlvs=tlv(0x02, b"mx.example"))
    with Wire(srv.port, greet=False) as w:
        assert w.quiet(0.3), "a greeting before the PROXY header"
        for piece in (header[:5], header[5:14], header[14:30], header[30:]):
            w.send(piece)
            time.sleep(0.05)
        assert w.reply().code == 220
        deliver(w)
    with Wire(srv.port, greet=False) as w:
        header = v1("203.0.113.8")
        w.send(header[:10])
        assert w.quiet(0.2)
        w.send(header[10:])
        assert w.reply().code == 220
        assert w.cmd("QUIT").code == 221
    lines = srv.wait_log("proxy", 2)
    assert "client=203.0.113.7" in lines[0] and "client=203.0.113.8" in lines[1], lines


def test_smtp_in_the_same_write_as_the_header_goes_to_the_session(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    with Wire(srv.port, greet=False) as w:
        w.send(v1("203.0.113.7") + b"EHLO same.test\r\nNOOP\r\n")
        greeting, ehlo_r, noop = w.replies(3)
        assert greeting.code == 220 and ehlo_r.code == 250 and noop.code == 250
        assert w.cmd("QUIT").code == 221


# ---- what is refused -------------------------------------------------------------------------


def test_malformed_headers_are_closed_without_a_greeting_and_the_server_goes_on(ringmx_factory):
    srv = proxy_srv(ringmx_factory)
    bad = [
        b"EHLO client.test\r\n",                              # SMTP first
        b"PROXY TCP4 203.0.113.256 127.0.0.1 51000 25\r\n",  # bad address
        b"PROXY TCP4 203.0.113.7 127.0.0.1 65536 25\r\n",    # bad port
        b"PROXY TCP6 203.0.113.7 127.0.0.1 51000 25\r\n",    # family mismatch
        b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\n",      # no CR
        b"PROXY TCP4 " + b"1" * 120 + b"\r\n",               # too long
        V2_SIG + bytes([0x31, 0x11]) + struct.pack("!H", 12) + b"\0" * 12,  # version 3
        V2_SIG + bytes([0x21, 0x12]) + struct.pack("!H", 12) + b"\0" * 12,  # UDP
        V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", 8) + b"\0" * 8,    # too short
        V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", 60000),            # too long
        v2("203.0.113.7", tlvs=tlv(0x04, b"abc")[:-1]),  # a TLV past the announced end
    ]
    for data in bad:
        with Wire(srv.port, greet=False) as w:
            try:
                w.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            w.assert_closed()
        assert_serves_proxied(srv)
    errors = srv.wait_log("proxy_error", len(bad))
    assert all("client=127.0.0.1" in l for l in errors), errors
    # no session was started for any of them
    assert all("client=203.0.113.7" in l for l in srv.log_events("connect"))


def assert_serves_proxied(srv):
    with proxied(srv.port, v1("203.0.113.7")) as w:
        assert w.greeting.code == 220
        ehlo(w)
        assert w.cmd("QUIT").code == 221
        w.assert_closed()


def test_a_peer_outside_proxy_networks_is_closed_unread(ringmx_factory):
    srv = proxy_srv(ringmx_factory, proxy_networks="127.0.0.1/32")
    with Wire(srv.port, source="127.0.0.2", greet=False) as w:
        w.assert_closed()
    line = srv.wait_log("proxy_error")[-1]
    assert "client=127.0.0.2" in line and "reason=not_in_proxy_networks" in line, line
    with proxied(srv.port, v1("203.0.113.7")) as w:  # from 127.0.0.1: believed
        assert w.greeting.code == 220


def test_a_proxy_that_sends_no_header_is_cut_off_by_the_header_timeout(ringmx_factory):
    srv = proxy_srv(ringmx_factory, timeout_greeting="1")
    with Wire(srv.port, greet=False) as w:
        start = time.monotonic()
        w.assert_closed(timeout=4)
        assert 0.8 <= time.monotonic() - start <= 3.5
    line = srv.wait_log("proxy_error")[-1]
    assert "reason=timeout" in line, line
    assert_serves_proxied(srv)


def test_a_listener_without_proxy_protocol_is_unchanged(ringmx):
    # the greeting comes at once, and a PROXY line is just an unknown command from 127.0.0.1
    with Wire(ringmx.port) as w:
        assert w.greeting.code == 220
        r = w.cmd(v1("203.0.113.7").rstrip(b"\r\n"))
        assert r.code == 500, r
        ehlo(w)
        assert w.cmd("QUIT").code == 221
    assert ringmx.log_events("proxy") == []
    assert all("client=127.0.0.1" in l for l in ringmx.log_events("connect"))
    assert_serves(ringmx.port)


# ---- implicit TLS behind a proxy --------------------------------------------------------------


def test_implicit_tls_reads_the_header_first_then_the_handshake(ringmx_factory, tmp_path):
    cert, key = make_cert(str(tmp_path))
    tls_port = free_port()
    srv = ringmx_factory(server={"proxy_protocol": "yes",
                                 "listen_tls": "127.0.0.1:%d" % tls_port},
                         extra={"tls": {"cert": cert, "key": key}})
    # the header and the ClientHello in one write: what follows the header is TLS
    ctx = client_ctx(cert)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    sock = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    try:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        sock.sendall(v2("203.0.113.7") + outgoing.read())
        while True:
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = outgoing.read()
                if pending:
                    sock.sendall(pending)
        sock.sendall(outgoing.read())
        buf = b""
        while not buf.endswith(b"\r\n"):
            try:
                buf += tls.read(4096)
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                assert data, "closed before the greeting"
                incoming.write(data)
        assert buf.startswith(b"220 "), buf
    finally:
        sock.close()
    line = srv.wait_log("tls")[-1]
    assert "client=203.0.113.7" in line, line
    # and with a wrapped socket after a header sent on its own
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
        raw.sendall(v1("203.0.113.8"))
        with ctx.wrap_socket(raw) as s:
            assert s.recv(4096).startswith(b"220 ")
            s.sendall(b"EHLO tls.test\r\n")
            assert b"250 " in s.recv(4096)
    assert any("client=203.0.113.8" in l for l in srv.wait_log("tls", 2))
