"""Feeds annuaire.parse real answers cut short, with bytes changed at
random, and hand-made traps (pointer loops, forward pointers, reserved
label types, names over 255 bytes, counts larger than the message). It
must either read each one or raise DNSFormatError: never another
exception, never a loop.

    python3 dns_mutate.py HOST:PORT NAME/TYPE...

Standard library only; the seed is fixed, so a failure can be replayed.
"""

import random
import socket
import struct
import sys

import annuaire

MUTATIONS = 3000


def raw_answer(server, name, qtype):
    q = annuaire.build_query(name, qtype, 7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(server)
        s.send(q)
        return s.recv(65535)


def check(data, what, must_fail=False):
    """Returns "" if parse behaved, else what went wrong."""
    try:
        annuaire.parse(data)
    except annuaire.DNSFormatError:
        return ""
    except Exception as e:  # anything else is a bug in the parser
        return "%s: %s: %r (message %s)" % (what, type(e).__name__, e, data.hex())
    return "%s: read as a valid message (%s)" % (what, data.hex()) if must_fail else ""


def traps():
    header = struct.pack("!HHHHHH", 1, 0x8400, 1, 1, 0, 0)
    question = b"\x04echo\x00" + struct.pack("!HH", 1, 1)
    rr_tail = struct.pack("!HHIH", 1, 1, 10, 4) + b"\x7f\x00\x00\x01"
    yield "pointer to itself", header + question + b"\xc0\x16" + rr_tail
    yield "forward pointer", header + question + b"\xc0\x30" + rr_tail + b"\x00" * 40
    yield "pointer loop via a label", header + b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1)
    yield "reserved label type 01", header + b"\x41" + b"a" * 10
    yield "reserved label type 10", header + b"\x81" + b"a" * 10
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"
    yield "name over 255 bytes", header + long_name + struct.pack("!HH", 1, 1)
    yield "counts over the message", struct.pack("!HHHHHH", 1, 0x8400, 65535, 65535, 65535, 65535)
    yield "rdlength over the message", header + question + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 10, 400)
    yield "A of 5 bytes", header + question + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 10, 5) + b"\x7f\x00\x00\x01\x00"
    srv = struct.pack("!HHH", 0, 0, 7) + b"\x04echo\x00"
    yield "SRV name past its rdata", header + question + b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 10, 8) + srv
    yield "TXT string past its rdata", header + question + b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 10, 3) + b"\x05ab"
    yield "empty", b""
    yield "header only, cut", header[:11]


def main():
    server = annuaire.split_hostport(sys.argv[1], 53)
    names = {v: k for k, v in annuaire.TYPE_NAMES.items()}
    rng = random.Random(1035)
    problems = []
    for what, data in traps():
        problems.append(check(data, what, must_fail=True))
    count = 0
    for arg in sys.argv[2:]:
        name, qtype = arg.rsplit("/", 1)
        data = raw_answer(server, name, names[qtype])
        annuaire.parse(data)  # the real answer itself must parse
        for n in range(len(data)):
            problems.append(check(data[:n], "%s cut at %d" % (arg, n)))
            count += 1
        for i in range(MUTATIONS):
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            problems.append(check(bytes(b), "%s mutation %d" % (arg, i)))
            count += 1
    problems = [p for p in problems if p]
    for p in problems[:20]:
        print(p)
    print("%d messages, %d problems" % (count, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
