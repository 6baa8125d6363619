"""ringmx-bench and ringmx-sink against each other and against ringmx: the counts agree.

Short runs (a few thousand messages, a few seconds); they check that the harness counts what
the servers really took, not how fast it went.
"""
import json
import os
import signal
import subprocess
import time

from conftest import BIN, free_port, wait_port


def bench(port, *args, timeout=60):
    out = subprocess.run([os.path.join(BIN, "ringmx-bench"), "--server", "127.0.0.1:%d" % port,
                          "--threads", "1", "--json", *args],
                         check=True, capture_output=True, text=True, timeout=timeout).stdout
    return json.loads(out)


class Sink:
    def __init__(self, tmp_path, *args):
        self.port = free_port()
        self.stats = str(tmp_path / "sink.json")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "ringmx-sink"), "--listen", "127.0.0.1:%d" % self.port,
             "--shards", "2", "--stats", self.stats, *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port("127.0.0.1", self.port, proc=self.proc)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        with open(self.stats) as f:
            return json.load(f)


def test_bench_and_sink_agree_on_every_message(tmp_path):
    sink = Sink(tmp_path)
    try:
        r = bench(sink.port, "--connections", "20", "--messages", "3000", "--size", "2k",
                  "--rcpts", "2", "--pipelining")
    finally:
        # The wait_port probe and the bench's connections are all the sink saw.
        stats = sink.stop()
    assert r["sent"] == 3000 and r["errored"] == 0 and r["rejected"] == {}
    assert r["accepted"] == 3000 == stats["messages"]
    assert stats["recipients"] == 2 * 3000
    assert r["connections"] == 20 and stats["connections"] == 21


def test_bench_counts_new_connections_per_message_and_chunking_like_the_sink(tmp_path):
    sink = Sink(tmp_path)
    try:
        r = bench(sink.port, "--connections", "8", "--messages", "400", "--per-conn", "1",
                  "--chunking")
    finally:
        stats = sink.stop()
    assert r["accepted"] == 400 == stats["messages"]
    assert r["connections"] == 400 and stats["connections"] == 401
    assert r["chunking_fallback"] is False


def test_bench_against_ringmx_counts_only_what_the_spool_holds(ringmx_factory):
    srv = ringmx_factory(server={"max_connections_per_ip": "0"})
    r = bench(srv.port, "--connections", "10", "--messages", "1000", "--size", "4k",
              "--to", "user{n}@localhost")
    assert r["accepted"] == 1000 and r["errored"] == 0
    assert srv.stop() == 0
    recs = srv.spool_records()
    assert len(recs) == r["accepted"]
    assert {rec["rcpts"][0] for rec in recs} == {"user%d@localhost" % n for n in range(1000)}


def test_a_server_that_refuses_every_recipient_is_reported_as_rejections_not_throughput(
        ringmx_factory, tmp_path):
    known = tmp_path / "recipients"
    known.write_text("only@localhost\n")
    srv = ringmx_factory(server={"max_connections_per_ip": "0"},
                         accept={"recipients": str(known)})
    r = bench(srv.port, "--connections", "4", "--messages", "200", "--to", "nobody{n}@localhost")
    assert r["accepted"] == 0
    assert r["rejected"] == {"550": 200}
    assert r["msgs_per_s"] == 0
    assert srv.spool_records() == []


def test_sink_failure_rates_reach_the_bench_report(tmp_path):
    sink = Sink(tmp_path, "--tempfail-pct", "30", "--permfail-pct", "20")
    try:
        r = bench(sink.port, "--connections", "4", "--messages", "1000")
    finally:
        stats = sink.stop()
    temp, perm = r["rejected"].get("451", 0), r["rejected"].get("554", 0)
    assert r["accepted"] + temp + perm == 1000
    assert stats["messages"] == r["accepted"] and stats["tempfailed"] == temp
    assert stats["permfailed"] == perm
    # 30 % and 20 % of 1000, give or take chance.
    assert 200 < temp < 400 and 100 < perm < 300


def test_sink_delay_shows_in_the_end_of_data_latency(tmp_path):
    sink = Sink(tmp_path, "--delay-ms", "40")
    try:
        r = bench(sink.port, "--connections", "4", "--messages", "40")
    finally:
        stats = sink.stop()
    assert r["accepted"] == 40 == stats["messages"]
    # Every reply to end-of-data waited 40 ms in the sink; nothing can make it faster.
    assert r["latency_eod_us"]["p50"] >= 40000 * 0.99
