"""Checks annuaire.py's hand-written DNS against dnspython, the independent
implementation: the query it builds, and how it reads real answers.

    python3 dns_check.py HOST:PORT NAME/TYPE...

For each question, sends annuaire.build_query over UDP (TCP when the
answer is truncated), parses the answer with annuaire.parse and with
dns.message.from_wire, and prints a line per difference. Exit status 1 if
there is any. Run by lab_test.go with a python3 that has dnspython.
"""

import socket
import struct
import sys

import dns.flags
import dns.message
import dns.rdatatype

import annuaire


def raw_answer(server, name, qtype):
    q = annuaire.build_query(name, qtype, 4242)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(server)
        s.send(q)
        data = s.recv(65535)
    if annuaire.parse(data).tc:
        with socket.create_connection(server, timeout=3) as s:
            s.sendall(struct.pack("!H", len(q)) + q)
            n = struct.unpack("!H", recv_exactly(s, 2))[0]
            data = recv_exactly(s, n)
    return data


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("short TCP answer")
        buf += chunk
    return buf


def ours(section):
    return sorted(rr.text() for rr in section)


def theirs(section):
    out = []
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.OPT:
            continue
        for rd in rrset:
            out.append("%s %d IN %s %s" % (rrset.name.to_text(), rrset.ttl,
                                            dns.rdatatype.to_text(rrset.rdtype), rd.to_text()))
    return sorted(out)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    server = (host, int(port))
    bad = 0

    # The query: byte for byte what dnspython builds for the same question
    # (RD set, EDNS(0) with a 1232-byte payload, no options).
    for name, qtype in (("_echo._tcp.svc.internal.", "SRV"), ("vm.svc.internal.", "A")):
        mine = annuaire.build_query(name, dns.rdatatype.from_text(qtype), 4242)
        ref = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
        ref.id = 4242
        if mine != ref.to_wire():
            print("query %s %s: ours %s, dnspython's %s" % (name, qtype, mine.hex(), ref.to_wire().hex()))
            bad += 1

    for arg in sys.argv[2:]:
        name, qtype = arg.rsplit("/", 1)
        data = raw_answer(server, name, dns.rdatatype.from_text(qtype))
        m = annuaire.parse(data)
        ref = dns.message.from_wire(data)
        header = (m.id, m.qr, m.opcode, m.aa, m.tc, m.rd, m.ra, m.rcode, m.edns)
        ref_header = (ref.id, bool(ref.flags & dns.flags.QR), ref.opcode(), bool(ref.flags & dns.flags.AA),
                      bool(ref.flags & dns.flags.TC), bool(ref.flags & dns.flags.RD),
                      bool(ref.flags & dns.flags.RA), ref.rcode(), ref.payload if ref.edns >= 0 else None)
        if header != ref_header:
            print("%s: header %s, dnspython %s" % (arg, header, ref_header))
            bad += 1
        q = [(n, t, c) for n, t, c in m.questions]
        ref_q = [(r.name.to_text(), r.rdtype, r.rdclass) for r in ref.question]
        if q != ref_q:
            print("%s: question %s, dnspython %s" % (arg, q, ref_q))
            bad += 1
        for what, a, b in (("answer", m.answer, ref.answer), ("authority", m.authority, ref.authority),
                           ("additional", m.additional, ref.additional)):
            if ours(a) != theirs(b):
                print("%s: %s section\n  ours:      %s\n  dnspython: %s" % (arg, what, ours(a), theirs(b)))
                bad += 1
        print("%s: %s, %d+%d+%d records, %d bytes" % (arg, m.rcode_text(), len(m.answer), len(m.authority),
                                                      len(m.additional), len(data)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
