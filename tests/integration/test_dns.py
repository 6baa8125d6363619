"""bin/ringmx-resolve against a real DNS server: nsd on a loopback port serving
tests/integration/dns/test.zone and other.zone (the PEERS.md recipe). A small UDP relay in front
of nsd counts the queries it sees (cache tests), drops the queries for one name (a server that
never answers delays only that lookup), or cuts answers after a leading CNAME (what an
authoritative server without the target's zone sends, so the resolver must chase it)."""
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import BIN, ROOT

ZONE = os.path.join(ROOT, "tests", "integration", "dns", "test.zone")
OTHER_ZONE = os.path.join(ROOT, "tests", "integration", "dns", "other.zone")
RESOLVE = os.path.join(BIN, "ringmx-resolve")

pytestmark = pytest.mark.skipif(shutil.which("nsd") is None, reason="nsd is not installed")


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    """nsd serving test. and other. (outbound.Nsd: the PEERS.md recipe, without response rate
    limiting, which would truncate and drop the lookup storm's answers)."""
    from outbound import Nsd
    server = Nsd(tmp_path_factory.mktemp("nsd"), zones={"test.": ZONE, "other.": OTHER_ZONE})
    server.start()
    yield server.port
    server.stop()


def skip_name(msg, off):
    """The offset just past the (possibly compressed) domain name at off."""
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += 1 + n


def question(msg):
    """(lower-cased name, type) of a DNS message's first question."""
    off, labels = 12, []
    while msg[off]:
        labels.append(msg[off + 1:off + 1 + msg[off]].decode("ascii").lower())
        off += 1 + msg[off]
    return ".".join(labels), struct.unpack("!H", msg[off + 1:off + 3])[0]


def cut_after_cname(msg):
    """An answer whose first record is a CNAME, cut to that record alone (ANCOUNT 1, nothing
    in the other sections): nsd serves both zones, so it would follow the chain itself."""
    qd, an = struct.unpack("!HH", msg[4:8])
    if qd != 1 or an < 2:
        return msg
    off = skip_name(msg, 12) + 4
    end = skip_name(msg, off)
    rtype, _, _, rdlen = struct.unpack("!HHIH", msg[end:end + 10])
    if rtype != 5:
        return msg
    return msg[:6] + struct.pack("!HHH", 1, 0, 0) + msg[12:end + 10 + rdlen]


def run_relay(nsd_port, drop=b"hang", cut_cnames=False):
    """A UDP relay to nsd: counts every query as (name, type), never answers a name that
    contains `drop`, and with cut_cnames answers a CNAME without its target."""
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
            if drop in data.lower():
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(2)
                up.sendto(data, ("127.0.0.1", nsd_port))
                try:
                    answer = up.recv(4096)
                except socket.timeout:
                    continue
                sock.sendto(cut_after_cname(answer) if cut_cnames else answer, peer)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return sock, stop, t, seen


@pytest.fixture
def dropping_relay(nsd):
    """A UDP relay to nsd that never answers queries whose name contains 'hang'."""
    sock, stop, t, seen = run_relay(nsd)
    yield sock.getsockname()[1], seen
    stop.set()
    t.join()
    sock.close()


@pytest.fixture
def cutting_relay(nsd):
    """A UDP relay to nsd that answers a CNAME without its target."""
    sock, stop, t, seen = run_relay(nsd, cut_cnames=True)
    yield sock.getsockname()[1], seen
    stop.set()
    t.join()
    sock.close()


def count(seen, name, qtype):
    return sum(1 for q in seen if question(q) == (name, qtype))


def resolve(port, *args, timeout_ms=1000):
    cmd = [RESOLVE, "--resolver", "127.0.0.1:%d" % port, "--timeout", str(timeout_ms),
           "--attempts", "1"] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout)


def parse(out):
    """{domain: {"status":..., "code":..., "implicit":..., "cache":..., "ms":..., "mx": [...]}}
    (each mx {"pref", "host", "addrs", and with --tlsa "tlsa": {"status", ..., "rrs"}})
    in printing order (the last route of a domain printed twice), plus "all" (every route in
    order), "summary" and "stats"."""
    routes, cur = {"order": [], "all": []}, None
    for line in out.splitlines():
        kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        if line.startswith("route "):
            cur = dict(kv, mx=[])
            routes[kv["domain"]] = cur
            routes["order"].append(kv["domain"])
            routes["all"].append(cur)
        elif line.startswith("mx "):
            cur["mx"].append({"pref": int(kv["pref"]), "host": kv["host"], "addrs": []})
        elif line.startswith("addr "):
            cur["mx"][-1]["addrs"].append(line.split()[1])
        elif line.startswith("tlsa "):
            cur["mx"][-1]["tlsa"] = dict(kv, rrs=[])
        elif line.startswith("tlsa-rr "):
            usage, selector, mtype, data = line.split()[1:]
            cur["mx"][-1]["tlsa"]["rrs"].append((int(usage), int(selector), int(mtype), data))
        elif line.startswith("stats ") or line.startswith("summary "):
            routes[line.split()[0]] = {k: int(v) for k, v in kv.items()}
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


MX = 15


def test_a_second_lookup_within_the_ttl_sends_no_packet_to_the_server(dropping_relay):
    port, seen = dropping_relay
    r = resolve(port, "--repeat", "3", "multi.test")
    assert [rt["cache"] for rt in r["all"]] == ["no", "yes", "yes"]
    assert count(seen, "multi.test", MX) == 1


def test_an_expired_cache_entry_sends_a_new_query(dropping_relay):
    # ttl1.test has a TTL of 1 s; multi.test 300 s. Two rounds 1.2 s apart in one process.
    port, seen = dropping_relay
    r = resolve(port, "--sequential", "--repeat", "2", "--interval-ms", "1200", "ttl1.test",
                "multi.test")
    by_domain = [(rt["domain"], rt["cache"]) for rt in r["all"]]
    assert by_domain == [("ttl1.test", "no"), ("multi.test", "no"), ("ttl1.test", "no"),
                         ("multi.test", "yes")]
    assert r["ttl1.test"]["mx_ttl"] == "1"
    assert r["ttl1.test"]["mx"][0]["addrs"] == ["192.0.2.77"]
    assert count(seen, "ttl1.test", MX) == 2
    assert count(seen, "multi.test", MX) == 1
    assert r["stats"]["cache_hits"] == 1


def test_a_cname_whose_target_is_not_in_the_answer_is_chased_with_a_second_query(
        cutting_relay):
    port, seen = cutting_relay
    r = resolve(port, "chase.test")
    rt = r["chase.test"]
    assert rt["status"] == "ok", rt
    assert rt["mx"] == [{"pref": 10, "host": "mx.other", "addrs": ["192.0.2.88"]}]
    assert r["stats"]["cname_chases"] == 1
    assert count(seen, "chase.test", MX) == 1 and count(seen, "mail.other", MX) == 1


def test_a_chased_cname_chain_comes_from_the_cache_the_second_time(cutting_relay):
    port, seen = cutting_relay
    r = resolve(port, "--sequential", "chase2.test", "chase2.test")
    first, second = r["all"]
    assert first["status"] == second["status"] == "ok"
    assert [m["host"] for m in second["mx"]] == ["mx1.multi.test", "mx2.multi.test",
                                                 "mx3.multi.test"]
    assert (first["cache"], second["cache"]) == ("no", "yes")
    assert r["stats"]["cname_chases"] == 4  # chase2 -> hop.other -> multi.test, twice
    for name in ("chase2.test", "hop.other", "multi.test"):
        assert count(seen, name, MX) == 1, name


def test_a_cname_loop_across_answers_is_a_temporary_failure(cutting_relay):
    port, seen = cutting_relay
    r = resolve(port, "cloop.test")
    assert (r["cloop.test"]["status"], r["cloop.test"]["code"]) == ("tempfail", "4.4.3")
    assert count(seen, "cloop.test", MX) == 1 and count(seen, "cloop.other", MX) == 1


def test_a_cname_chain_needing_too_many_queries_is_cut_off(cutting_relay, nsd):
    # long0.test -> long1.other -> ... -> long6.test (MX 10 mx.other.): six links.
    port, seen = cutting_relay
    rt = resolve(port, "long0.test")["long0.test"]
    assert (rt["status"], rt["code"]) == ("tempfail", "4.4.3")
    assert len([q for q in seen if question(q)[1] == MX]) == 5  # the first + 4 chased
    # in one answer (nsd follows it itself) the same six links are within the bound
    rt = resolve(nsd, "long0.test")["long0.test"]
    assert rt["status"] == "ok" and rt["mx"][0]["host"] == "mx.other"


def test_a_lookup_storm_of_2000_distinct_names_all_resolve_in_bounded_memory(nsd, tmp_path):
    names = tmp_path / "names"
    names.write_text("".join("h%d.storm.test\n" % i for i in range(2000)))
    t0 = time.time()
    r = resolve(nsd, "--summary", "--concurrency", "64", "--file", str(names), timeout_ms=2000)
    elapsed = time.time() - t0
    s = r["summary"]
    assert (s["routes"], s["ok"]) == (2000, 2000), s
    assert r["stats"]["queries_sent"] == 2000 and r["stats"]["timeouts"] == 0
    assert r["stats"]["cache_entries"] == 2000
    # about 11 MB here; a sanitizer build (make check-asan) needs several times more
    asan = "asan" in BIN
    assert s["maxrss_kb"] < (400 if asan else 64) * 1024, s
    assert elapsed < 30


TLSA = 52
MX1_TLSA = [(3, 1, 1, "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"),
            (2, 0, 1, "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf")]


def test_tlsa_records_of_each_mx_host_come_with_the_route(nsd):
    rt = resolve(nsd, "--tlsa", "25", "multi.test")["multi.test"]
    assert rt["status"] == "ok"
    mx1, mx2, mx3 = rt["mx"]
    assert mx1["tlsa"]["name"] == "_25._tcp.mx1.multi.test"
    assert (mx1["tlsa"]["status"], mx1["tlsa"]["ttl"], mx1["tlsa"]["cache"]) == (
        "found", "300", "no")
    assert mx1["tlsa"]["rrs"] == MX1_TLSA
    # nsd validates nothing: the AD bit is clear, so DANE must not use these
    assert mx1["tlsa"]["secure"] == "no"
    # no TLSA is not an error: NODATA (a TXT at the name) and NXDOMAIN, with the SOA's
    # negative TTL (min(300, MINIMUM 60))
    assert (mx2["tlsa"]["status"], mx2["tlsa"]["ttl"], mx2["tlsa"]["rrs"]) == ("none", "60", [])
    assert (mx3["tlsa"]["status"], mx3["tlsa"]["ttl"], mx3["tlsa"]["rrs"]) == ("none", "60", [])


def test_tlsa_of_a_given_host_and_another_port(nsd):
    # a host without MX is its own implicit MX: its TLSA are looked up the same way
    r = resolve(nsd, "--tlsa", "25", "mx1.multi.test")
    host = r["mx1.multi.test"]["mx"][0]
    assert host["host"] == "mx1.multi.test" and host["tlsa"]["rrs"] == MX1_TLSA
    r = resolve(nsd, "--tlsa", "465", "mx1.multi.test")
    tlsa = r["mx1.multi.test"]["mx"][0]["tlsa"]
    assert (tlsa["name"], tlsa["status"]) == ("_465._tcp.mx1.multi.test", "none")


def test_tlsa_answers_are_cached_like_other_answers(dropping_relay):
    port, seen = dropping_relay
    r = resolve(port, "--tlsa", "25", "--sequential", "multi.test", "multi.test")
    first, second = r["all"]
    assert [m["tlsa"]["cache"] for m in first["mx"]] == ["no", "no", "no"]
    assert [m["tlsa"]["cache"] for m in second["mx"]] == ["yes", "yes", "yes"]
    assert second["mx"][0]["tlsa"]["rrs"] == MX1_TLSA
    assert [m["tlsa"]["status"] for m in second["mx"]] == ["found", "none", "none"]
    for host in ("mx1", "mx2", "mx3"):
        assert count(seen, "_25._tcp.%s.multi.test" % host, TLSA) == 1, host


def test_a_tlsa_lookup_that_times_out_is_a_temporary_failure_of_that_host_only(
        dropping_relay):
    port, seen = dropping_relay
    r = resolve(port, "--tlsa", "25", "slowdane.test", "multi.test", timeout_ms=800)
    slow = r["slowdane.test"]
    assert slow["status"] == "ok"  # the route itself is fine
    tlsa = slow["mx"][0]["tlsa"]
    assert (tlsa["status"], tlsa["reason"]) == ("tempfail", '"DNS timeout"')
    assert r["order"] == ["multi.test", "slowdane.test"]
    assert r["multi.test"]["mx"][0]["tlsa"]["status"] == "found"
    assert count(seen, "_25._tcp.hang.slowdane.test", TLSA) == 1


def test_an_mx_that_is_one_of_our_own_addresses_is_a_mail_loop(nsd):
    rt = resolve(nsd, "self.test")["self.test"]
    assert rt["status"] == "ok" and rt["mx"][0]["addrs"] == ["192.0.2.9"]
    for local in ("192.0.2.9", "::ffff:192.0.2.9"):
        rt = resolve(nsd, "--local-addr", "2001:db8::99", "--local-addr", local,
                     "self.test")["self.test"]
        assert (rt["status"], rt["code"], rt["self_pref"]) == ("permfail", "5.4.6", "10"), local
        assert "loops back to myself" in rt["reason"]


def test_we_as_the_best_mx_are_a_loop_even_with_other_mx_hosts(nsd):
    # RFC 5321 5.1: discard every MX with a preference >= our own; nothing is left
    rt = resolve(nsd, "--local-addr", "192.0.2.9", "selfbest.test")["selfbest.test"]
    assert (rt["status"], rt["code"], rt["self_pref"]) == ("permfail", "5.4.6", "10")


def test_a_local_mx_host_and_the_less_preferred_ones_are_dropped_from_the_route(nsd):
    r = resolve(nsd, "--local-addr", "192.0.2.9", "selfbackup.test", "selfmid.test")
    for domain in ("selfbackup.test", "selfmid.test"):
        rt = r[domain]
        assert (rt["status"], rt["self_pref"]) == ("ok", "20"), domain
        assert rt["mx"] == [{"pref": 10, "host": "mx2.multi.test", "addrs": ["192.0.2.21"]}]
    # without our address among them, all of them are in the route
    rt = resolve(nsd, "selfmid.test")["selfmid.test"]
    assert [m["host"] for m in rt["mx"]] == ["mx2.multi.test", "mx.self.test", "mx3.multi.test"]
    assert rt["self_pref"] == "-"


def test_a_declared_local_loopback_address_is_a_loop_even_with_allow_loopback(nsd):
    rt = resolve(nsd, "--allow-loopback", "--local-addr", "127.0.0.1", "loop.test")["loop.test"]
    assert (rt["status"], rt["code"]) == ("permfail", "5.4.6")
    assert "loops back to myself" in rt["reason"]


def test_a_bad_local_address_is_a_usage_error():
    r = subprocess.run([RESOLVE, "--local-addr", "not-an-address", "x.test"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "usage" in r.stderr
