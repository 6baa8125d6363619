"""bin/ringmx-resolve against a real DNS server: nsd on a loopback port serving
tests/integration/dns/test.zone (the PEERS.md recipe). A small UDP relay in front of nsd drops
the queries for one name, to show that a server that never answers delays only that lookup."""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, ROOT, free_port

ZONE = os.path.join(ROOT, "tests", "integration", "dns", "test.zone")
RESOLVE = os.path.join(BIN, "ringmx-resolve")

pytestmark = pytest.mark.skipif(shutil.which("nsd") is None, reason="nsd is not installed")


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    d = tmp_path_factory.mktemp("nsd")
    port = free_port()
    shutil.copy(ZONE, d / "test.zone")
    conf = d / "nsd.conf"
    conf.write_text(f"""server:
  ip-address: 127.0.0.1
  port: {port}
  username: ""
  chroot: ""
  zonesdir: "{d}"
  pidfile: "{d}/nsd.pid"
  database: ""
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  logfile: "{d}/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: "test."
  zonefile: "test.zone"
""")
    proc = subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Ready once it logs that it started and answers a query (drill is from ldnsutils).
    log = d / "nsd.log"
    deadline = time.time() + 15
    while time.time() < deadline:
        if log.exists() and "nsd started" in log.read_text():
            try:
                r = subprocess.run(["drill", "-p", str(port), "SOA", "test.", "@127.0.0.1"],
                                   capture_output=True, text=True, timeout=3)
                if "NOERROR" in r.stdout:
                    break
            except subprocess.TimeoutExpired:
                pass
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("nsd did not answer: %s" % (d / "nsd.log").read_text())
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def dropping_relay(nsd):
    """A UDP relay to nsd that never answers queries whose name contains 'hang'."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()
    seen = []

    def run():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            seen.append(data)
            if b"hang" in data.lower():
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(2)
                up.sendto(data, ("127.0.0.1", nsd))
                try:
                    sock.sendto(up.recv(4096), peer)
                except socket.timeout:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield sock.getsockname()[1], seen
    stop.set()
    t.join()
    sock.close()


def resolve(port, *args, timeout_ms=1000):
    cmd = [RESOLVE, "--resolver", "127.0.0.1:%d" % port, "--timeout", str(timeout_ms),
           "--attempts", "1"] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout)


def parse(out):
    """{domain: {"status":..., "code":..., "implicit":..., "cache":..., "ms":..., "mx": [...]}}
    in printing order, plus "stats"."""
    routes, cur = {"order": []}, None
    for line in out.splitlines():
        kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        if line.startswith("route "):
            cur = dict(kv, mx=[])
            routes[kv["domain"]] = cur
            routes["order"].append(kv["domain"])
        elif line.startswith("mx "):
            cur["mx"].append({"pref": int(kv["pref"]), "host": kv["host"], "addrs": []})
        elif line.startswith("addr "):
            cur["mx"][-1]["addrs"].append(line.split()[1])
        elif line.startswith("stats "):
            routes["stats"] = {k: int(v) for k, v in kv.items()}
    return routes


def test_mx_hosts_come_in_preference_order_with_all_their_addresses(nsd):
    r = resolve(nsd, "--allow-loopback", "multi.test")
    rt = r["multi.test"]
    assert rt["status"] == "ok" and rt["implicit"] == "no"
    assert [(m["pref"], m["host"]) for m in rt["mx"]] == [
        (10, "mx1.multi.test"), (20, "mx2.multi.test"), (30, "mx3.multi.test")]
    assert rt["mx"][0]["addrs"] == ["192.0.2.11", "192.0.2.12", "2001:db8::11", "2001:db8::12"]
    assert rt["mx"][1]["addrs"] == ["192.0.2.21"]
    assert rt["mx"][2]["addrs"] == ["2001:db8::31"]
    assert rt["mx_ttl"] == "300"


def test_prefer_ipv6_puts_ipv6_addresses_first(nsd):
    rt = resolve(nsd, "--prefer", "ipv6", "multi.test")["multi.test"]
    assert rt["mx"][0]["addrs"] == ["2001:db8::11", "2001:db8::12", "192.0.2.11", "192.0.2.12"]


def test_mx_host_addresses_missing_from_the_additional_section_are_queried(nsd):
    rt = resolve(nsd, "ext.test")["ext.test"]
    assert rt["status"] == "ok"
    assert rt["mx"] == [{"pref": 10, "host": "mx.other.test", "addrs": ["192.0.2.99"]}]


def test_null_mx_is_a_permanent_failure_5_1_10(nsd):
    rt = resolve(nsd, "nullmx.test")["nullmx.test"]
    assert (rt["status"], rt["code"]) == ("permfail", "5.1.10")


def test_a_domain_without_mx_uses_its_own_address_as_the_implicit_mx(nsd):
    rt = resolve(nsd, "amx.test")["amx.test"]
    assert rt["status"] == "ok" and rt["implicit"] == "yes"
    assert rt["mx"] == [{"pref": 0, "host": "amx.test", "addrs": ["192.0.2.40"]}]


def test_a_domain_without_mx_or_address_is_a_permanent_failure(nsd):
    rt = resolve(nsd, "empty.test")["empty.test"]
    assert (rt["status"], rt["code"], rt["implicit"]) == ("permfail", "5.1.2", "yes")


def test_a_cname_to_a_domain_with_mx_gives_that_domains_route(nsd):
    rt = resolve(nsd, "alias.test")["alias.test"]
    assert rt["status"] == "ok"
    assert [m["host"] for m in rt["mx"]] == ["mx1.multi.test", "mx2.multi.test",
                                             "mx3.multi.test"]


def test_nxdomain_is_a_permanent_failure_5_1_2(nsd):
    rt = resolve(nsd, "no-such-domain.test")["no-such-domain.test"]
    assert (rt["status"], rt["code"]) == ("permfail", "5.1.2")


def test_mx_hosts_only_on_loopback_are_a_mail_loop_unless_allowed(nsd):
    rt = resolve(nsd, "loop.test")["loop.test"]
    assert (rt["status"], rt["code"]) == ("permfail", "5.4.6")
    rt = resolve(nsd, "--allow-loopback", "loop.test")["loop.test"]
    assert rt["status"] == "ok" and rt["mx"][0]["addrs"] == ["127.0.0.1"]


def test_a_truncated_udp_answer_is_asked_again_over_tcp(nsd):
    r = resolve(nsd, "big.test")
    rt = r["big.test"]
    assert r["stats"]["tcp_fallbacks"] == 1
    assert rt["status"] == "ok"
    assert len(rt["mx"]) == 16  # DNS_ROUTE_HOSTS_MAX of the 60
    assert all(m["pref"] == 10 and m["addrs"] == ["192.0.2.50"] for m in rt["mx"])


def test_a_second_lookup_within_the_ttl_comes_from_the_cache_without_a_packet(nsd):
    once = resolve(nsd, "multi.test")["stats"]["queries_sent"]
    r = resolve(nsd, "--sequential", "multi.test", "multi.test")
    assert r["stats"]["queries_sent"] == once
    assert r["stats"]["cache_hits"] >= 1
    # both routes print under the same domain: the last one is the cached one
    assert r["multi.test"]["cache"] == "yes"


def test_a_server_that_never_answers_times_out_without_delaying_other_lookups(
        dropping_relay):
    port, seen = dropping_relay
    t0 = time.time()
    r = resolve(port, "hang.test", "multi.test", "nullmx.test", timeout_ms=1500)
    elapsed = time.time() - t0
    assert r["order"][-1] == "hang.test"
    assert (r["hang.test"]["status"], r["hang.test"]["code"]) == ("tempfail", "4.4.3")
    assert 'timeout' in r["hang.test"]["reason"]
    assert int(r["hang.test"]["ms"]) >= 1400
    assert r["multi.test"]["status"] == "ok" and int(r["multi.test"]["ms"]) < 1000
    assert r["nullmx.test"]["code"] == "5.1.10" and int(r["nullmx.test"]["ms"]) < 1000
    assert r["stats"]["timeouts"] == 1
    assert elapsed < 10
    assert any(b"hang" in q for q in seen)


def test_a_bad_resolver_address_is_refused_at_start():
    r = subprocess.run([RESOLVE, "--resolver", "not-an-address", "x.test"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "bad resolver address" in r.stderr
