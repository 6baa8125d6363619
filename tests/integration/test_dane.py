"""Outbound TLS that authenticates the server: `tls = dane` (RFC 7672) and `tls = verify`.

DANE needs DNSSEC, so the DNS here is the real thing: a zone signed with ldns-signzone, served
by nsd, and asked through unbound as a validating resolver that trusts the zone's key (so the
AD bit ringmx sees means what it means on the Internet). A child zone delegated without a DS
record is the "insecure" case. The receivers are ringmx-sink with STARTTLS and certificates
made here with openssl (a throw-away CA for DANE-TA and `verify`, a self-signed one for
DANE-EE), and a plain receiver without STARTTLS for the downgrade cases.
"""
import hashlib
import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import BIN, free_port, wait_port
from outbound import (Nsd, events, loopback_address, make_message, outbound_sections, send,
                      wait_events, wait_until)

SENDER = "sender@localhost"
ZONE = "dane.test"
CHILD = "ins.dane.test"  # delegated without DS: insecure

pytestmark = [
    pytest.mark.outbound,
    pytest.mark.skipif(not shutil.which("unbound") and not os.path.exists("/usr/sbin/unbound"),
                       reason="unbound is not installed (scripts/install-deps.sh --test)"),
]

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

# The MX hosts, each on its own loopback address with its own receiver.
HOSTS = ["ee", "bad", "ta", "unusable", "nostarttls", "plain", "ins", "wrongname"]


def run(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, **kw)


def der_sha256(pem, pubkey=False):
    """SHA-256 of a certificate's DER (selector 0) or of its SubjectPublicKeyInfo (selector 1)."""
    if pubkey:
        spki = run("openssl", "x509", "-in", pem, "-noout", "-pubkey").stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki,
                             check=True, capture_output=True).stdout
    else:
        der = run("openssl", "x509", "-in", pem, "-outform", "DER").stdout
    return hashlib.sha256(der).hexdigest()


class Pki:
    """A CA, leaf certificates signed by it (with the CA in the chain file), self-signed ones."""

    def __init__(self, d):
        self.d = str(d)
        self.ca_key, self.ca = self.p("ca.key"), self.p("ca.crt")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=ringmx test CA", "-days", "2", "-keyout", self.ca_key,
            "-out", self.ca, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def p(self, name):
        return os.path.join(self.d, name)

    def leaf(self, name, san):
        """A certificate for DNS name `san`, signed by the CA; the cert file holds leaf + CA."""
        key, csr, crt = self.p(name + ".key"), self.p(name + ".csr"), self.p(name + ".crt")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=" + san, "-keyout", key, "-out", csr)
        ext = self.p(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        leaf_only = self.p(name + ".leaf.crt")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", leaf_only)
        with open(crt, "w") as f:
            f.write(open(leaf_only).read() + open(self.ca).read())
        return crt, key, leaf_only

    def self_signed(self, name, cn):
        key, crt = self.p(name + ".key"), self.p(name + ".crt")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=" + cn, "-days", "2", "-keyout", key, "-out", crt)
        return crt, key


class Unbound:
    """unbound on a free loopback port: validating, trusting `anchor`, with stub zones at nsd."""

    def __init__(self, d, anchor, nsd_port, zones):
        self.d, self.port = str(d), free_port()
        stubs = "".join('stub-zone:\n  name: "%s"\n  stub-addr: 127.0.0.1@%d\n' % (z, nsd_port)
                        for z in zones)
        self.conf = os.path.join(self.d, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write(textwrap.dedent(f"""\
                server:
                  interface: 127.0.0.1
                  port: {self.port}
                  username: ""
                  chroot: ""
                  directory: "{self.d}"
                  pidfile: "{self.d}/unbound.pid"
                  use-syslog: no
                  logfile: "{self.d}/unbound.log"
                  verbosity: 1
                  val-log-level: 2
                  do-not-query-localhost: no
                  do-ip6: no
                  module-config: "validator iterator"
                  trust-anchor-file: "{anchor}"
                  local-zone: "test." nodefault
                  cache-max-ttl: 5
                remote-control:
                  control-enable: no
                """) + stubs)
        self.proc = None

    def start(self):
        run("unbound-checkconf", self.conf)
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: " ad " in self.drill("SOA", ZONE) or " ad;" in self.drill("SOA", ZONE),
                   15, lambda: "unbound does not validate %s:\n%s\n%s"
                   % (ZONE, self.drill("SOA", ZONE), self.log()))
        return self

    def drill(self, qtype, name):
        try:
            return subprocess.run(["drill", "-D", "-p", str(self.port), qtype, name,
                                   "@127.0.0.1"], capture_output=True, text=True,
                                  timeout=5).stdout
        except subprocess.TimeoutExpired:
            return ""

    def log(self):
        p = os.path.join(self.d, "unbound.log")
        return open(p).read()[-3000:] if os.path.exists(p) else "(no log)"

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def dane_world(tmp_path_factory):
    """Addresses, certificates, the signed zone, nsd and unbound; .resolver_port for ringmx."""
    d = tmp_path_factory.mktemp("dane")
    pki = Pki(d)
    addr = {h: loopback_address(25) for h in HOSTS}
    certs = {
        # DANE-EE: a self-signed certificate whose name is nobody's: only its key matters
        "ee": pki.self_signed("ee", "not-the-mx.example"),
        # a certificate the TLSA record does not match
        "bad": pki.self_signed("bad", "mx.bad.%s" % ZONE),
        # DANE-TA: the CA is published; the leaf names the MX host
        "ta": pki.leaf("ta", "mx.ta.%s" % ZONE)[:2],
        "unusable": pki.self_signed("unusable", "mx.unusable.%s" % ZONE),
        "ins": pki.self_signed("ins", "mx.%s" % CHILD),
        # signed by the CA, but for another name (tls = verify must refuse it)
        "wrongname": pki.leaf("wrongname", "someone-else.%s" % ZONE)[:2],
    }
    ee_spki = der_sha256(certs["ee"][0], pubkey=True)
    ca_cert = der_sha256(pki.ca)
    zone = textwrap.dedent(f"""\
        $ORIGIN {ZONE}.
        $TTL 300
        @ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60
        @ IN NS ns.{ZONE}.
        ns IN A 127.0.0.1
        ins IN NS ns.{ZONE}.
        """)
    for h in HOSTS:
        if h == "ins":
            zone += "ins-domain IN MX 10 mx.%s.\n" % CHILD
            continue
        zone += "%s IN MX 10 mx.%s.%s.\n" % (h, h, ZONE)
        zone += "mx.%s IN A %s\n" % (h, addr[h])
    zone += "_25._tcp.mx.ee IN TLSA 3 1 1 %s\n" % ee_spki
    zone += "_25._tcp.mx.bad IN TLSA 3 1 1 %s\n" % ("00" * 32)
    zone += "_25._tcp.mx.ta IN TLSA 2 0 1 %s\n" % ca_cert
    zone += "_25._tcp.mx.unusable IN TLSA 1 1 1 %s\n" % ("11" * 32)  # PKIX-EE: not for SMTP
    zone += "_25._tcp.mx.nostarttls IN TLSA 3 1 1 %s\n" % ee_spki
    zone += "_25._tcp.mx.wrongname IN TLSA 3 1 1 %s\n" % ("22" * 32)
    # the verify domains: MX hosts of the DANE ones, under tls = verify ([domain v-*])
    zone += "v-ta IN MX 10 mx.ta.%s.\n" % ZONE
    zone += "v-ee IN MX 10 mx.ee.%s.\n" % ZONE
    zone += "v-wrongname IN MX 10 mx.wrongname.%s.\n" % ZONE
    child = textwrap.dedent(f"""\
        $ORIGIN {CHILD}.
        $TTL 300
        @ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60
        @ IN NS ns.{ZONE}.
        mx IN A {addr["ins"]}
        _25._tcp.mx IN TLSA 3 1 1 {"33" * 32}
        """)
    zfile, cfile = str(d / ("%s.zone" % ZONE)), str(d / ("%s.zone" % CHILD))
    open(zfile, "w").write(zone)
    open(cfile, "w").write(child)
    ksk = run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", ZONE, cwd=str(d)).stdout.decode().strip()
    zsk = run("ldns-keygen", "-a", "ECDSAP256SHA256", ZONE, cwd=str(d)).stdout.decode().strip()
    run("ldns-signzone", "-f", zfile + ".signed", zfile, ksk, zsk, cwd=str(d))
    anchor = str(d / (ksk + ".ds"))
    (d / "nsd").mkdir()
    nsd = Nsd(d / "nsd", zones={ZONE: zfile + ".signed", CHILD: cfile}).start()
    ub = Unbound(d, anchor, nsd.port, [ZONE]).start()
    world = type("World", (), {})()
    world.addr, world.certs, world.pki, world.resolver_port = addr, certs, pki, ub.port
    world.unbound = ub
    yield world
    ub.stop()
    nsd.stop()


def tls_sink(world, host, tmp_path):
    """ringmx-sink with STARTTLS on host's address:25, with host's certificate."""
    cert, key = world.certs[host]
    stats = str(tmp_path / ("%s.stats.json" % host))
    p = subprocess.Popen([os.path.join(BIN, "ringmx-sink"), "--listen", "%s:25" % world.addr[host],
                          "--shards", "1", "--starttls", "--tls-cert", cert, "--tls-key", key,
                          "--stats", stats],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(world.addr[host], 25, proc=p)
    return p, stats


def sink_messages(p, stats):
    """Stops the sink and returns how many messages it accepted (its --stats JSON)."""
    import json
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    return json.load(open(stats))["messages"]


@pytest.fixture
def sinks(dane_world, tmp_path):
    made = []

    def make(host):
        s = tls_sink(dane_world, host, tmp_path)
        made.append(s)
        return s

    yield make
    for p, _ in made:
        if p.poll() is None:
            p.kill()
            p.wait()


def mta(ringmx_factory, world, tmp_path, tls="dane", extra=None):
    sections = outbound_sections(None, deliver={"tls": tls, "tls_ca_file": world.pki.ca},
                                 dns={"resolvers": "127.0.0.1:%d" % world.resolver_port,
                                      "timeout": "2000"},
                                 queue={"retry": "2s"})
    sections["extra"] = extra or {}
    return ringmx_factory(server={"max_connections_per_ip": "0"}, **sections)


def test_dns_is_validated_and_the_child_zone_is_insecure(dane_world):
    """The set-up itself: unbound sets AD for the signed zone's TLSA, not for the child's."""
    ub = dane_world.unbound
    signed = ub.drill("TLSA", "_25._tcp.mx.ee.%s" % ZONE)
    assert "NOERROR" in signed and " ad " in signed.split("\n", 2)[1] + " ", signed
    insecure = ub.drill("TLSA", "_25._tcp.mx.%s" % CHILD)
    assert "NOERROR" in insecure and " ad " not in insecure.split("\n", 2)[1] + " ", insecure


def test_dane_ee_match_delivers_and_says_so(ringmx_factory, dane_world, sinks, tmp_path):
    p, stats = sinks("ee")
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@ee.%s" % ZONE], make_message(subject="dane-ee"))
    wait_events(srv, "delivered", qid=qid, timeout=10)
    (t,) = events(srv, "smtp_out_tls")
    # DANE-EE: the certificate's name (not-the-mx.example) is not checked (RFC 7672 3.1.1)
    assert t["verified"] == "dane-ee" and t["policy"] == "dane", t
    assert sink_messages(p, stats) == 1


def test_dane_ta_match_delivers(ringmx_factory, dane_world, sinks, tmp_path):
    p, stats = sinks("ta")
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@ta.%s" % ZONE], make_message(subject="dane-ta"))
    wait_events(srv, "delivered", qid=qid, timeout=10)
    (t,) = events(srv, "smtp_out_tls")
    assert t["verified"] == "dane-ta", t
    assert sink_messages(p, stats) == 1


def test_a_tlsa_mismatch_defers_and_sends_nothing(ringmx_factory, dane_world, sinks, tmp_path):
    p, stats = sinks("bad")
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@bad.%s" % ZONE], make_message(subject="mismatch"))
    (d,) = wait_events(srv, "deferred", qid=qid, timeout=10)[:1]
    assert d["dsn"] == "4.7.5", d
    assert "DANE" in srv.log() and "certificate not accepted" in srv.log()
    assert events(srv, "delivered") == []
    assert sink_messages(p, stats) == 0


def test_secure_tlsa_and_no_starttls_is_not_downgraded(ringmx_factory, dane_world, receivers,
                                                       tmp_path):
    """The point of DANE: an attacker who strips STARTTLS gets nothing, not cleartext."""
    rcv = receivers(dane_world.addr["nostarttls"])  # plain SMTP, no STARTTLS offered
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@nostarttls.%s" % ZONE], make_message(subject="strip"))
    (d,) = wait_events(srv, "deferred", qid=qid, timeout=10)[:1]
    assert d["dsn"] == "4.7.5", d
    assert "does not offer STARTTLS" in srv.log()
    time.sleep(0.5)
    assert rcv.messages == []


def test_only_unusable_tlsa_records_mean_encrypted_but_not_authenticated(
        ringmx_factory, dane_world, sinks, tmp_path):
    p, stats = sinks("unusable")
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@unusable.%s" % ZONE], make_message(subject="unusable"))
    wait_events(srv, "delivered", qid=qid, timeout=10)
    (t,) = events(srv, "smtp_out_tls")
    assert t["verified"] == "no" and "unusable" in t.get("dane", ""), t
    assert sink_messages(p, stats) == 1


def test_no_tlsa_is_opportunistic(ringmx_factory, dane_world, receivers, tmp_path):
    rcv = receivers(dane_world.addr["plain"])
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@plain.%s" % ZONE], make_message(subject="no tlsa"))
    wait_events(srv, "delivered", qid=qid, timeout=10)
    assert len(rcv.messages) == 1 and events(srv, "smtp_out_tls") == []


def test_insecure_tlsa_records_are_ignored(ringmx_factory, dane_world, receivers, tmp_path):
    """TLSA records in a zone without DNSSEC prove nothing (RFC 7672 2.2): opportunistic."""
    rcv = receivers(dane_world.addr["ins"])
    srv = mta(ringmx_factory, dane_world, tmp_path)
    qid = send(srv, SENDER, ["u@ins-domain.%s" % ZONE], make_message(subject="insecure"))
    wait_events(srv, "delivered", qid=qid, timeout=10)
    assert len(rcv.messages) == 1
    assert events(srv, "smtp_out_tlsa_insecure"), srv.log()[-2000:]


def test_a_dane_domain_does_not_share_connections_with_an_optional_one(
        ringmx_factory, dane_world, sinks, tmp_path):
    """Two domains, one MX host: under different TLS policies they are different sites."""
    p, stats = sinks("ee")
    srv = mta(ringmx_factory, dane_world, tmp_path, tls="optional",
              extra={"domain ee.%s" % ZONE: {"tls": "dane"}})
    qa = send(srv, SENDER, ["u@ee.%s" % ZONE], make_message(subject="dane"))
    qb = send(srv, SENDER, ["u@v-ee.%s" % ZONE], make_message(subject="optional"))
    wait_events(srv, "delivered", qid=qa, timeout=10)
    wait_events(srv, "delivered", qid=qb, timeout=10)
    verified = sorted(t["verified"] for t in events(srv, "smtp_out_tls"))
    assert verified == ["dane-ee", "no"], events(srv, "smtp_out_tls")


def test_verify_accepts_a_valid_chain_and_name(ringmx_factory, dane_world, sinks, tmp_path):
    p, stats = sinks("ta")
    srv = mta(ringmx_factory, dane_world, tmp_path, tls="verify")
    qid = send(srv, SENDER, ["u@v-ta.%s" % ZONE], make_message(subject="verify"))
    wait_events(srv, "delivered", qid=qid, timeout=10)
    (t,) = events(srv, "smtp_out_tls")
    assert t["verified"] == "yes" and t["policy"] == "verify", t
    assert sink_messages(p, stats) == 1


@pytest.mark.parametrize("host,why", [("ee", "self-signed"), ("wrongname", "mismatch")])
def test_verify_refuses_an_untrusted_or_misnamed_certificate(ringmx_factory, dane_world, sinks,
                                                             tmp_path, host, why):
    p, stats = sinks(host)
    srv = mta(ringmx_factory, dane_world, tmp_path, tls="verify")
    qid = send(srv, SENDER, ["u@v-%s.%s" % (host, ZONE)], make_message(subject=why))
    (d,) = wait_events(srv, "deferred", qid=qid, timeout=10)[:1]
    assert d["dsn"] == "4.7.5", d
    assert "certificate not accepted (verify)" in srv.log(), srv.log()[-2000:]
    assert sink_messages(p, stats) == 0


def test_tls_ca_file_without_certificates_is_a_config_error(tmp_path):
    bad = tmp_path / "empty.pem"
    bad.write_text("not a certificate\n")
    conf = tmp_path / "r.conf"
    conf.write_text("[deliver]\ntls_ca_file = %s\n" % bad)
    r = subprocess.run([os.path.join(BIN, "ringmx"), "-c", str(conf), "--check"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "%s:2:" % conf in r.stderr and "tls_ca_file" in r.stderr, r.stderr


def test_unknown_tls_policy_is_a_config_error(tmp_path):
    conf = tmp_path / "r.conf"
    conf.write_text("[deliver]\ntls = dnssec\n")
    r = subprocess.run([os.path.join(BIN, "ringmx"), "-c", str(conf), "--check"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "none, optional, required, verify or dane" in r.stderr, r.stderr
