"""[queue] memory_limit: the bodies of waiting mail are bounded in memory. Past the limit the
oldest waiting messages drop their bodies and are read back from the spool for each delivery
attempt; a message in the deferred stream never keeps its body between attempts. Checked with
ringmxctl's body_bytes counter (the bytes of message records in memory) and by delivering
everything byte for byte to a receiver afterwards."""
import json
import os
import subprocess

import pytest

from conftest import BIN
from outbound import (events, loopback_address, make_message, outbound_sections, send,
                      wait_events, wait_until)

SENDER = "sender@localhost"
CTL = os.path.join(BIN, "ringmxctl")


def queue_totals(srv):
    r = subprocess.run([CTL, "-s", os.path.join(srv.spool, "ringmx.ctl"), "--json", "queue"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)["total"]


def strip_received(data):
    head, _, rest = data.partition(b"\r\n")
    assert head.startswith(b"Received:"), data[:200]
    while rest[:1] in (b" ", b"\t"):
        _, _, rest = rest.partition(b"\r\n")
    return rest


def mta(ringmx_factory, addr, queue, shards="2"):
    return ringmx_factory(server={"max_connections_per_ip": "0", "shards": shards},
                          transport={"mem.test": "smtp:[%s]:2525" % addr},
                          **outbound_sections(None, queue=queue))


@pytest.mark.outbound
def test_held_mail_over_the_limit_waits_without_its_body_and_is_delivered_intact(
        ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    limit = 1 << 20
    srv = mta(ringmx_factory, addr, queue={"memory_limit": "1m", "hold": "yes"})
    body = "".join("line %05d of a message that waits for its turn ...........\r\n" % i
                   for i in range(1000))  # about 64 KiB
    sent = {}
    for i in range(48):  # about 3 MiB in all, three times the limit
        data = make_message(subject="held %d" % i, body=body)
        sent[send(srv, SENDER, ["u%d@mem.test" % i], data)] = data
    t = queue_totals(srv)
    assert t["memory_limit"] == limit
    assert t["body_bytes"] <= limit, t
    assert t["spilled"] >= 30, t  # at least the part over the limit
    spills = events(srv, "bodies_spilled")
    assert spills and all(int(e["in_memory"]) <= limit for e in spills), spills
    # release: every message reaches the receiver intact, the spilled ones read back
    r = subprocess.run([CTL, "-s", os.path.join(srv.spool, "ringmx.ctl"), "release"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    rcv.wait_messages(len(sent), timeout=30)
    for qid in sent:
        wait_events(srv, "delivered", qid=qid, timeout=10)
    got = sorted(strip_received(m.data) for m in rcv.messages)
    assert got == sorted(sent.values())
    wait_until(lambda: queue_totals(srv)["body_bytes"] == 0, timeout=10,
               what="no body left in memory once everything is delivered")


@pytest.mark.outbound
def test_without_a_limit_held_mail_keeps_its_body(ringmx_factory, receivers):
    """The counter itself: what is held is counted (so the test above is not vacuous)."""
    addr = loopback_address(2525)
    receivers(addr, 2525)
    srv = mta(ringmx_factory, addr, queue={"memory_limit": "0", "hold": "yes"})
    body = "x" * 70 + "\r\n"
    for i in range(10):
        send(srv, SENDER, ["u%d@mem.test" % i], make_message(subject="k%d" % i,
                                                                body=body * 100))
    t = queue_totals(srv)
    assert t["body_bytes"] >= 10 * 7200 and t["spilled"] == 0 and t["memory_limit"] == 0, t
    assert events(srv, "bodies_spilled") == []


@pytest.mark.outbound
def test_a_deferred_stream_message_does_not_keep_its_body_between_attempts(ringmx_factory,
                                                                           receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    rcv.fail("RCPT", "451 4.3.0 try again later")
    srv = mta(ringmx_factory, addr, queue={"retry": "1s", "memory_limit": "0"}, shards="1")
    qid = send(srv, SENDER, ["u@mem.test"], make_message(subject="dead end",
                                                         body=("z" * 70 + "\r\n") * 800))
    wait_events(srv, "moved_to_deferred", qid=qid, timeout=10)
    # two more attempts, each reading the body back from the deferred stream
    wait_until(lambda: len(events(srv, "deferred", qid=qid)) >= 4, timeout=15,
               what="two attempts after the move")
    wait_until(lambda: queue_totals(srv)["body_bytes"] == 0, timeout=5,
               what="the body freed after the attempt")
    rcv.rules.clear()
    (m,) = rcv.wait_messages(1, timeout=10)
    assert b"dead end" in m.data
