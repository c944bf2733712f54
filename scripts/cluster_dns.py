#!/usr/bin/env python3
"""The local cluster's DNS (CoreDNS is not in Debian): a small resolver for the real node's pods.

It answers A records for every Service with a cluster IP, ``<service>.<namespace>.svc.<domain>`` (pods reach the
shorter ``<service>.<namespace>`` and ``<service>`` through the search domains kubelet writes into their resolv.conf),
answers NXDOMAIN for any other name under the cluster domain, and forwards every other query, unchanged, to the
host's resolver. Services come from the API server: one list, then a watch (re-listed when the watch expires).
Headless Services (clusterIP None) have no record here. Standard library only, so the system python3 runs it.

The packet logic (parse, answer) is pure and unit-tested (tests/unit/test_cluster_dns.py); the I/O around it is the
UDP and TCP servers, the upstream forwarder and the Service watch.

  cluster_dns.py serve --listen IP --port 53 --server https://IP:PORT --cacert F --token-file F [--upstream IP]
  cluster_dns.py query NAME --at IP [--port 53]     (prints the A records; exit 1 on NXDOMAIN or no answer)
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

TYPE_A = 1
CLASS_IN = 1
RCODE_OK, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 2, 3, 4
TTL = 5  # seconds: a Service deleted and re-created with a new IP is seen within that
MAX_LABEL, MAX_NAME = 63, 255


class PacketError(ValueError):
    """The bytes are not a DNS query this resolver can read."""


@dataclass(frozen=True)
class Question:
    id: int
    flags: int  # the query's header flags (RD is echoed)
    name: str  # lower-cased, without the trailing dot
    qtype: int
    qclass: int
    end: int  # offset of the first byte after the question section


def parse_query(data: bytes) -> Question:
    """The one question of a standard query; PacketError for anything else (the caller answers FORMERR/NOTIMP)."""
    if len(data) < 12:
        raise PacketError("shorter than a DNS header")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000:
        raise PacketError("a response, not a query")
    if qdcount != 1:
        raise PacketError(f"{qdcount} questions (exactly one is supported)")
    labels: list[str] = []
    pos, total = 12, 0
    while True:
        if pos >= len(data):
            raise PacketError("name runs past the end of the packet")
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            raise PacketError("compressed or extended label in a question")
        if n > MAX_LABEL or pos + n > len(data):
            raise PacketError("label too long or truncated")
        total += n + 1
        if total > MAX_NAME:
            raise PacketError("name longer than 255 bytes")
        labels.append(data[pos : pos + n].decode("ascii", "replace").lower())
        pos += n
    if pos + 4 > len(data):
        raise PacketError("question truncated before type and class")
    qtype, qclass = struct.unpack("!HH", data[pos : pos + 4])
    return Question(qid, flags, ".".join(labels), qtype, qclass, pos + 4)


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply with this rcode, or None when not even a header can be read (the packet is dropped)."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    if flags & 0x8000:
        return None  # never answer a response (reflection loops)
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | rcode, 0, 0, 0, 0)


def in_domain(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def answer(data: bytes, records: Mapping[str, str], domain: str) -> bytes | None:
    """The reply to a query for a name under the cluster domain, b"" when the packet is to be dropped (unreadable, or
    a response), or None when the query is to be forwarded. ``records`` maps ``<service>.<namespace>.svc.<domain>``
    to the Service's cluster IP.
    """
    try:
        q = parse_query(data)
    except PacketError:
        return error_response(data, RCODE_FORMERR) or b""
    opcode = (q.flags >> 11) & 0xF
    if opcode != 0:
        return error_response(data, RCODE_NOTIMP)
    if not in_domain(q.name, domain):
        return None
    question = data[12 : q.end]
    ip = records.get(q.name)
    # AA (authoritative) + RA; RD echoed. A name that exists answers NOERROR even for AAAA (no data), so resolvers do
    # not take "no IPv6 record" for "no such name".
    rcode = RCODE_OK if ip is not None else RCODE_NXDOMAIN
    flags = 0x8000 | 0x0400 | 0x0080 | (q.flags & 0x0100) | rcode
    answers = b""
    if ip is not None and q.qtype in (TYPE_A, 255) and q.qclass in (CLASS_IN, 255):
        # the answer's name points at the question's (offset 12)
        answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(ip)
    header = struct.pack("!HHHHHH", q.id, flags, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


def records_from_services(services: Mapping[tuple[str, str], str], domain: str) -> dict[str, str]:
    """``{(namespace, name): cluster IP}`` -> the A-record table (headless Services have no cluster IP)."""
    return {f"{name}.{ns}.svc.{domain}": ip for (ns, name), ip in services.items() if ip and ip != "None"}


def cluster_ip(service: Mapping[str, object]) -> str:
    spec = service.get("spec")
    ip = spec.get("clusterIP") if isinstance(spec, dict) else None
    return ip if isinstance(ip, str) and ip != "None" else ""


def build_query(name: str, qid: int = 0x4B57) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".") if p)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", TYPE_A, CLASS_IN)


def parse_a_records(reply: bytes) -> tuple[int, list[str]]:
    """(rcode, A-record addresses) of a reply to build_query (answers with a compressed or plain name)."""
    rcode = struct.unpack("!H", reply[2:4])[0] & 0xF
    ancount = struct.unpack("!H", reply[6:8])[0]
    q = parse_query(bytes([reply[0], reply[1], 0, 0]) + reply[4:])
    pos, ips = q.end, []
    for _ in range(ancount):
        if reply[pos] & 0xC0:
            pos += 2
        else:
            while reply[pos]:
                pos += reply[pos] + 1
            pos += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", reply[pos : pos + 10])
        pos += 10
        if rtype == TYPE_A and rdlen == 4:
            ips.append(socket.inet_ntoa(reply[pos : pos + 4]))
        pos += rdlen
    return rcode, ips


# --- I/O: the Service table, kept current by a watch ------------------------------------------------------------


class ServiceTable:
    def __init__(self, domain: str) -> None:
        self.domain = domain
        self._services: dict[tuple[str, str], str] = {}
        self.records: dict[str, str] = {}
        self.synced = threading.Event()
        self._lock = threading.Lock()

    def replace(self, services: dict[tuple[str, str], str]) -> None:
        with self._lock:
            self._services = dict(services)
            self.records = records_from_services(self._services, self.domain)

    def apply(self, event: str, service: Mapping[str, object]) -> None:
        meta = service.get("metadata")
        if not isinstance(meta, dict):
            return
        key = (str(meta.get("namespace")), str(meta.get("name")))
        with self._lock:
            if event == "DELETED":
                self._services.pop(key, None)
            else:
                self._services[key] = cluster_ip(service)
            self.records = records_from_services(self._services, self.domain)


class ApiClient:
    def __init__(self, server: str, cacert: str, token: str) -> None:
        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.ctx = ssl.create_default_context(cafile=cacert)
        self.token = token

    def stream(self, path: str, timeout: float) -> Iterator[bytes]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise OSError(f"GET {path}: HTTP {resp.status} {resp.read(500)!r}")
            yield from resp
        finally:
            conn.close()


def watch_services(api: ApiClient, table: ServiceTable) -> None:
    while True:
        try:
            body = json.loads(b"".join(api.stream("/api/v1/services", timeout=30)))
            table.replace(
                {(s["metadata"]["namespace"], s["metadata"]["name"]): cluster_ip(s) for s in body.get("items", [])}
            )
            table.synced.set()
            rv = body["metadata"]["resourceVersion"]
            for line in api.stream(f"/api/v1/services?watch=1&resourceVersion={rv}&timeoutSeconds=300", timeout=330):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    break  # e.g. 410 Gone: the resourceVersion expired, list again
                table.apply(event["type"], event["object"])
        except (OSError, ValueError, KeyError) as e:
            print(f"cluster_dns: service watch: {e}; retrying", file=sys.stderr, flush=True)
            time.sleep(1)


# --- I/O: the servers ----------------------------------------------------------------------------------------------


def forward(data: bytes, upstream: tuple[str, int], tcp: bool) -> bytes | None:
    try:
        if tcp:
            with socket.create_connection(upstream, timeout=4) as s:
                s.sendall(struct.pack("!H", len(data)) + data)
                n = struct.unpack("!H", recv_exact(s, 2))[0]
                return recv_exact(s, n)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(4)
            s.sendto(data, upstream)
            return s.recv(65535)
    except OSError:
        return error_response(data, RCODE_SERVFAIL)


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def resolve(data: bytes, table: ServiceTable, upstream: tuple[str, int], tcp: bool) -> bytes | None:
    reply = answer(data, table.records, table.domain)
    if reply is None:
        return forward(data, upstream, tcp)
    return reply or None


def serve(args: argparse.Namespace) -> None:
    with open(args.token_file) as f:
        token = f.read().strip()
    table = ServiceTable(args.domain)
    upstream = (args.upstream, 53)
    threading.Thread(
        target=watch_services, args=(ApiClient(args.server, args.cacert, token), table), daemon=True
    ).start()

    class Udp(socketserver.ThreadingUDPServer):
        daemon_threads = True

    class UdpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            reply = resolve(data, table, upstream, tcp=False)
            if reply is not None:
                sock.sendto(reply, self.client_address)

    class Tcp(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    class TcpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            s: socket.socket = self.request
            s.settimeout(10)
            try:
                while True:
                    n = struct.unpack("!H", recv_exact(s, 2))[0]
                    reply = resolve(recv_exact(s, n), table, upstream, tcp=True)
                    if reply is None:
                        return
                    s.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

    udp, tcp = Udp((args.listen, args.port), UdpHandler), Tcp((args.listen, args.port), TcpHandler)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    table.synced.wait()
    print(f"cluster_dns: serving {args.domain} on {args.listen}:{args.port}, forwarding to {args.upstream}", flush=True)
    udp.serve_forever()


def query(args: argparse.Namespace) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(build_query(args.name), (args.at, args.port))
        rcode, ips = parse_a_records(s.recv(65535))
    print("\n".join(ips) if ips else f"rcode {rcode}, no A record")
    return 0 if ips else 1


def upstream_from_resolv_conf(path: str = "/etc/resolv.conf") -> str:
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                    return parts[1]
    except OSError:
        pass
    return "127.0.0.1"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", required=True)
    s.add_argument("--port", type=int, default=53)
    s.add_argument("--server", required=True)
    s.add_argument("--cacert", required=True)
    s.add_argument("--token-file", required=True)
    s.add_argument("--domain", default="cluster.local")
    s.add_argument("--upstream", default=None, help="default: the first IPv4 nameserver of /etc/resolv.conf")
    q = sub.add_parser("query")
    q.add_argument("name")
    q.add_argument("--at", required=True)
    q.add_argument("--port", type=int, default=53)
    args = p.parse_args()
    if args.cmd == "serve":
        args.domain = args.domain.strip(".").lower()
        args.upstream = args.upstream or upstream_from_resolv_conf()
        serve(args)
        return 0
    return query(args)


if __name__ == "__main__":
    sys.exit(main())
