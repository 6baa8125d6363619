"""IPv6 listeners: ringmx listens on [::1] beside 127.0.0.1 and records the client as such."""
import smtplib
import socket

import pytest

from conftest import free_port


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_a_message_over_ipv6_is_stored_with_an_ipv6_received_header(ringmx_factory):
    port6 = free_port()
    srv = ringmx_factory(server={"listen": "127.0.0.1:{port} [::1]:%d" % port6})
    s = smtplib.SMTP("::1", port6)
    # ::1/128 is a relay network in the test config, so a remote recipient is taken too.
    assert s.sendmail("a@b.test", ["u@localhost", "x@far.test"], "Subject: v6\r\n\r\nhi\r\n") == {}
    s.quit()
    (rec,) = srv.spool_records()
    assert rec["client"] == "::1" and rec["rcpts"] == ["u@localhost", "x@far.test"]
    assert rec["message"].startswith(b"Received: from [127.0.0.1] ([IPv6:::1])\r\n")
