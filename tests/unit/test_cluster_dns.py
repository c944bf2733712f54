"""The local cluster's resolver (scripts/cluster_dns.py): its packet logic, on hand-made and stdlib-built packets."""

from __future__ import annotations

import importlib.util
import struct
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.unit

_spec = importlib.util.spec_from_file_location("cluster_dns", ROOT / "scripts/cluster_dns.py")
assert _spec and _spec.loader
dns = importlib.util.module_from_spec(_spec)
sys.modules["cluster_dns"] = dns  # dataclasses resolve the module by name
_spec.loader.exec_module(dns)

DOMAIN = "cluster.local"
RECORDS = dns.records_from_services(
    {("default", "kubernetes"): "10.0.0.1", ("ns1", "web"): "10.0.0.42", ("ns1", "headless"): "None"}, DOMAIN
)


def query(name: str, qtype: int = dns.TYPE_A, flags: int = 0x0100, qid: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def header(reply: bytes) -> tuple[int, int, int, int]:
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    return qid, flags, qd, an


def test_service_name_gets_its_cluster_ip():
    reply = dns.answer(query("web.ns1.svc.cluster.local"), RECORDS, DOMAIN)
    qid, flags, qd, an = header(reply)
    assert qid == 0x1234 and qd == 1 and an == 1
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x0100  # response, authoritative, RD echoed
    assert dns.parse_a_records(reply) == (0, ["10.0.0.42"])


def test_lookup_is_case_insensitive_and_echoes_the_question():
    q = query("WEB.Ns1.svc.Cluster.Local")
    reply = dns.answer(q, RECORDS, DOMAIN)
    assert dns.parse_a_records(reply) == (0, ["10.0.0.42"])
    assert reply[12 : len(q)] == q[12:]  # the question as asked, capitals included


def test_unknown_cluster_names_are_nxdomain():
    # what a pod's search list produces before the right name: <name>.<ns>.svc.cluster.local and friends
    for name in ("web.ns1.svc.cluster.local.ns1.svc.cluster.local", "nope.ns1.svc.cluster.local", "cluster.local"):
        rcode, ips = dns.parse_a_records(dns.answer(query(name), RECORDS, DOMAIN))
        assert (rcode, ips) == (dns.RCODE_NXDOMAIN, []), name


def test_headless_service_has_no_record():
    assert "headless.ns1.svc.cluster.local" not in RECORDS
    assert dns.parse_a_records(dns.answer(query("headless.ns1.svc.cluster.local"), RECORDS, DOMAIN))[0] == 3


def test_aaaa_for_an_existing_name_is_nodata_not_nxdomain():
    reply = dns.answer(query("kubernetes.default.svc.cluster.local", qtype=28), RECORDS, DOMAIN)
    _, flags, _, an = header(reply)
    assert flags & 0xF == dns.RCODE_OK and an == 0


def test_names_outside_the_cluster_domain_are_forwarded():
    assert dns.answer(query("deb.debian.org"), RECORDS, DOMAIN) is None
    assert dns.answer(query("notcluster.local"), RECORDS, DOMAIN) is None


@pytest.mark.parametrize(
    "packet",
    [
        b"\x12\x34\x01\x00\x00\x01",  # shorter than a header: dropped
        query("web.ns1.svc.cluster.local", flags=0x8180),  # a response: never answered (no reflection loops)
    ],
)
def test_unreadable_or_response_packets_are_dropped_not_forwarded(packet):
    assert dns.answer(packet, RECORDS, DOMAIN) == b""  # None would mean "forward upstream"


@pytest.mark.parametrize(
    "packet",
    [
        query("web.ns1.svc.cluster.local")[:-3],  # truncated type/class
        query("web.ns1.svc.cluster.local")[:20],  # name runs past the end
        struct.pack("!HHHHHH", 7, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2,  # two questions
        struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer loop in a question
        struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # > 255
    ],
)
def test_malformed_queries_get_formerr(packet):
    with pytest.raises(dns.PacketError):
        dns.parse_query(packet)
    reply = dns.answer(packet, RECORDS, DOMAIN)
    assert reply is not None and struct.unpack("!H", reply[:2])[0] == struct.unpack("!H", packet[:2])[0]
    assert reply[3] & 0xF == dns.RCODE_FORMERR and header(reply)[2:] == (0, 0)


def test_other_opcodes_are_notimp():
    reply = dns.answer(query("web.ns1.svc.cluster.local", flags=0x2800), RECORDS, DOMAIN)  # opcode 5 (UPDATE)
    assert reply[3] & 0xF == dns.RCODE_NOTIMP


def test_service_events_update_the_table():
    table = dns.ServiceTable(DOMAIN)
    table.replace({("a", "one"): "10.0.0.5"})
    table.apply("ADDED", {"metadata": {"namespace": "b", "name": "two"}, "spec": {"clusterIP": "10.0.0.6"}})
    table.apply("DELETED", {"metadata": {"namespace": "a", "name": "one"}, "spec": {"clusterIP": "10.0.0.5"}})
    table.apply("MODIFIED", {"metadata": {"namespace": "b", "name": "three"}, "spec": {"clusterIP": "None"}})
    assert table.records == {"two.b.svc.cluster.local": "10.0.0.6"}


def test_build_query_round_trips_through_the_parser():
    q = dns.parse_query(dns.build_query("kubernetes.default.svc.cluster.local."))
    assert (q.name, q.qtype, q.qclass) == ("kubernetes.default.svc.cluster.local", dns.TYPE_A, dns.CLASS_IN)


def test_upstream_comes_from_resolv_conf(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("search example\nnameserver fe80::1\nnameserver 10.255.255.53\n")
    assert dns.upstream_from_resolv_conf(str(f)) == "10.255.255.53"
