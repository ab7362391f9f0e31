"""annuaire.py: what the lab's programs share to find annuaire and talk to it.

- Where annuaire is: the options --dns, --zone, --web, --token, --data,
  then the environment (ANNUAIRE_SERVER, ANNUAIRE_ZONE, ANNUAIRE_WEB,
  ANNUAIRE_TOKEN), then the defaults, as the annuaire command finds it.
- Its HTTP API: register a service, send its heartbeats, deregister it.
- DNS by hand: a query packed with struct, sent over UDP (again over TCP
  when the answer is truncated), and the answer read back field by field,
  each field named after RFC 1035 section 4.1. This is what dig sends and
  reads.
- The chain a client follows, name -> SRV -> host -> address -> port,
  printed the way "annuaire dial --trace" prints it.

Standard library only: Python 3.8 or later, on Linux, macOS and Windows.
"""

import argparse
import ipaddress
import json
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_DNS = "127.0.0.1:1053"
DEFAULT_ZONE = "svc.internal"
DEFAULT_WEB = "127.0.0.1:8080"

# A service registered by a lab program carries a ttl check: annuaire keeps
# it in DNS while heartbeats come within CHECK_INTERVAL seconds, so that a
# server killed without a chance to deregister (kill -9, a crash, a laptop
# closed) leaves DNS on its own. Heartbeats go three times per interval: one
# lost on the way costs nothing.
CHECK_INTERVAL = 10.0


# ---------------------------------------------------------------------------
# Where annuaire is
# ---------------------------------------------------------------------------

def add_options(parser):
    """Adds the options that say where annuaire is to an argparse parser."""
    g = parser.add_argument_group("where annuaire is (as for the annuaire command)")
    g.add_argument("--dns", "--server", metavar="HOST:PORT",
                   help="annuaire's DNS server (default $ANNUAIRE_SERVER, else %s)" % DEFAULT_DNS)
    g.add_argument("--zone", metavar="ZONE",
                   help="the zone service names live in (default $ANNUAIRE_ZONE, else %s)" % DEFAULT_ZONE)
    g.add_argument("--web", metavar="HOST:PORT",
                   help="annuaire's web API (default $ANNUAIRE_WEB, else %s)" % DEFAULT_WEB)
    g.add_argument("--token", metavar="TOKEN",
                   help="API token for registering (default $ANNUAIRE_TOKEN, else the token file in --data)")
    g.add_argument("--data", metavar="DIR",
                   help="annuaire's state directory, where its token file is (default: the annuaire command's, %s)"
                   % default_data_dir())


def default_data_dir(environ=os.environ):
    """The annuaire command's default --data: $XDG_STATE_HOME/annuaire, else
    ~/.local/state/annuaire, else annuaire in the temporary directory (as
    defaultDataDir in cmd/annuaire/serve.go)."""
    if environ.get("XDG_STATE_HOME"):
        return os.path.join(environ["XDG_STATE_HOME"], "annuaire")
    if environ.get("HOME"):
        return os.path.join(environ["HOME"], ".local", "state", "annuaire")
    return os.path.join(tempfile.gettempdir(), "annuaire")


class Config:
    """Where annuaire is, from the options, the environment and the defaults."""

    def __init__(self, args, environ=os.environ):
        dns = args.dns or environ.get("ANNUAIRE_SERVER") or DEFAULT_DNS
        self.dns = split_hostport(dns, 53)
        zone = args.zone or environ.get("ANNUAIRE_ZONE") or DEFAULT_ZONE
        self.zone = zone.strip(".").lower() + "."
        web = args.web or environ.get("ANNUAIRE_WEB") or DEFAULT_WEB
        if "://" not in web:
            web = "http://" + web
        self.web = web.rstrip("/")
        self._token = args.token or environ.get("ANNUAIRE_TOKEN") or ""
        self._data = args.data or default_data_dir(environ)

    def token(self):
        """The API token: --token, $ANNUAIRE_TOKEN, or the token file that
        "annuaire serve" wrote in its data directory."""
        if self._token:
            return self._token
        path = os.path.join(self._data, "token")
        try:
            with open(path, encoding="utf-8") as f:
                tok = f.read().strip()
        except OSError as e:
            raise AnnuaireError("no API token: pass --token, set ANNUAIRE_TOKEN, or point --data at "
                                "the server's state directory (%s: %s)" % (path, strerror(e))) from None
        if not tok:
            raise AnnuaireError("no API token: %s is empty" % path)
        self._token = tok
        return tok

    def web_hostport(self):
        """The web API's host and port, as a socket address."""
        rest = self.web.split("://", 1)[1].split("/", 1)[0]
        return split_hostport(rest, 443 if self.web.startswith("https:") else 80)


def split_hostport(s, default_port):
    """"127.0.0.1:1053" -> ("127.0.0.1", 1053); "[::1]:53" -> ("::1", 53)."""
    host, port = s, default_port
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    try:
        port = int(port)
    except ValueError:
        raise AnnuaireError("%r: the port is not a number" % s) from None
    if not 0 < port < 65536:
        raise AnnuaireError("%r: the port must be 1-65535" % s)
    return host, port


def hostport(addr, port):
    """An address and a port as one string: 127.0.0.1:7007, [::1]:7007."""
    return "[%s]:%d" % (addr, port) if ":" in addr else "%s:%d" % (addr, port)


class AnnuaireError(Exception):
    """Something the user can fix: the message says what."""


# ---------------------------------------------------------------------------
# The HTTP API: register, heartbeat, deregister
# ---------------------------------------------------------------------------

# No proxy: annuaire is on this machine or on the lab's network, never
# behind a proxy that $http_proxy may name.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def api(cfg, method, path, body=None, timeout=5.0):
    """Sends one request to annuaire's API and returns the decoded JSON
    answer (None when there is none). Writes carry the token."""
    data = None
    headers = {"Authorization": "Bearer " + cfg.token()}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(cfg.web + path, data=data, method=method, headers=headers)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        # The API explains its refusals in {"error": "..."}.
        try:
            msg = json.loads(e.read().decode())["error"]
        except (ValueError, KeyError, TypeError, OSError):
            msg = e.reason
        raise ApiError(method, path, e.code, msg) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise AnnuaireError("cannot reach annuaire's API at %s (is \"annuaire serve\" running? "
                            "--web or ANNUAIRE_WEB says where): %s" % (cfg.web, reason)) from None
    return json.loads(raw.decode()) if raw else None


class ApiError(AnnuaireError):
    """An answer of the API with an error status."""

    def __init__(self, method, path, status, message):
        super().__init__("%s %s: %s (HTTP %d)" % (method, path, message, status))
        self.status = status


def register(cfg, name, address, port, program, interval=CHECK_INTERVAL):
    """Registers service NAME at address:port, with a ttl check of that
    interval (seconds), and returns its Registration. The SRV record's
    target is a host named after the address (h-127-0-0-2 for 127.0.0.2),
    as the API chooses."""
    body = {
        "name": name,
        "proto": "tcp",
        "port": port,
        "addresses": [address],
        "check": {"type": "ttl", "interval": "%gs" % interval},
        "txt": {"served-by": program, "pid": str(os.getpid())},
    }
    view = api(cfg, "POST", "/api/services", body)
    return Registration(cfg, view, interval)


class Registration:
    """A registered service: its id, its SRV record, its heartbeats."""

    def __init__(self, cfg, view, interval):
        self.cfg = cfg
        self.id = view["id"]
        self.name = view["name"]
        chain = view.get("chain") or {}
        self.srv = chain.get("srv", "")
        self.endpoints = chain.get("endpoints") or []
        self.every = interval / 3
        self._next = time.monotonic() + self.every
        self._stop = threading.Event()
        self._thread = None
        self._warned = False

    def _path(self):
        return "/api/services/" + urllib.parse.quote(self.id, safe="")

    def heartbeat(self):
        """Tells annuaire the service is alive (PUT .../heartbeat). A failure
        is printed once and the next heartbeat tries again: annuaire may
        be restarting."""
        self._next = time.monotonic() + self.every
        try:
            api(self.cfg, "PUT", self._path() + "/heartbeat", timeout=self.every)
        except AnnuaireError as e:
            if not self._warned:
                print("heartbeat: %s" % e, file=sys.stderr, flush=True)
                self._warned = True
            return
        if self._warned:
            print("heartbeat: annuaire answers again", file=sys.stderr, flush=True)
            self._warned = False

    def heartbeat_if_due(self):
        """Sends a heartbeat if one is due: for a loop that wakes up at
        least every self.every seconds."""
        if time.monotonic() >= self._next:
            self.heartbeat()

    def start_heartbeats(self):
        """Sends heartbeats from a thread until deregister(): for a loop
        that may block longer than a heartbeat period. Not for a program
        that forks (see serveur_concurrent.py)."""
        def run():
            while not self._stop.wait(max(0.0, self._next - time.monotonic())):
                self.heartbeat()
        self._thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        self._thread.start()

    def deregister(self):
        """Stops the heartbeats and removes the service from annuaire
        (DELETE /api/services/ID): the name leaves DNS at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every)
        try:
            api(self.cfg, "DELETE", self._path())
        except ApiError as e:
            if e.status != 404:  # 404: already gone, which is what we want
                raise


def published_address(bind, cfg):
    """The IPv4 address to register for a server bound to `bind`: that
    address itself, or for all interfaces ("" or 0.0.0.0, as the course's
    bind(("", port))) the address of the interface that leads to
    annuaire's web API. That is the address annuaire sees this machine by,
    so it is the one the machines around annuaire can reach."""
    if bind not in ("", "0.0.0.0"):
        return bind
    host, port = cfg.web_hostport()
    try:
        addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            # connect() on a UDP socket sends nothing: the system only picks
            # the route, and with it the source address that getsockname shows.
            s.connect(addr)
            return s.getsockname()[0]
    except OSError as e:
        raise AnnuaireError("no IPv4 route to annuaire's API at %s (%s): say which address to "
                            "publish with --advertise or --bind" % (cfg.web, strerror(e))) from None


# ---------------------------------------------------------------------------
# DNS by hand (RFC 1035 section 4.1)
# ---------------------------------------------------------------------------

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX = 1, 2, 5, 6, 12, 15
TYPE_TXT, TYPE_AAAA, TYPE_SRV, TYPE_OPT = 16, 28, 33, 41
TYPE_NAMES = {TYPE_A: "A", TYPE_NS: "NS", TYPE_CNAME: "CNAME", TYPE_SOA: "SOA", TYPE_PTR: "PTR",
              TYPE_MX: "MX", TYPE_TXT: "TXT", TYPE_AAAA: "AAAA", TYPE_SRV: "SRV", TYPE_OPT: "OPT"}
CLASS_IN = 1
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
               9: "NOTAUTH", 16: "BADVERS"}

# The UDP payload size we announce with EDNS(0): DNS Flag Day 2020's, that
# fits in any path's MTU without IP fragmentation.
EDNS_UDP_SIZE = 1232


class DNSFormatError(ValueError):
    """A DNS message that does not follow RFC 1035's format."""


class DNSServerError(OSError):
    """The DNS server could not be asked: no answer, or a refusal."""


class DNSBadAnswer(DNSServerError):
    """The DNS server answered, with something that cannot be believed."""


def type_name(t):
    return TYPE_NAMES.get(t, "TYPE%d" % t)  # RFC 3597 section 5 for the others


def encode_name(name):
    """A domain name as it travels (RFC 1035 section 3.1 and 4.1.2): each
    label as a length byte then its bytes, the root as a zero byte.
    "echo.svc.internal." -> b"\\x04echo\\x03svc\\x08internal\\x00"."""
    out = b""
    length = 1
    for label in name.strip(".").split("."):
        if not label:
            if name.strip("."):
                raise ValueError("%r: empty label" % name)
            continue
        raw = label.encode("ascii")
        if len(raw) > 63:
            raise ValueError("%r: a label is at most 63 bytes" % name)
        out += bytes([len(raw)]) + raw
        length += len(raw) + 1
    if length > 255:
        raise ValueError("%r: a name is at most 255 bytes" % name)
    return out + b"\x00"


def build_query(name, qtype, qid):
    """One question, packed as RFC 1035 section 4.1 lays it out."""
    # 4.1.1 Header, six 16-bit fields in network byte order ("!"):
    #   ID       chosen at random; the answer must carry the same
    #   flags    QR=0 (a query), OPCODE=0 (QUERY), AA=0, TC=0, RD=1, RA=0,
    #            Z=0, RCODE=0: only RD (bit 8, 0x0100) is set. annuaire is
    #            an authority and ignores RD; a recursive resolver needs it.
    #   QDCOUNT  1 question
    #   ANCOUNT  0, NSCOUNT 0: a query carries no answers
    #   ARCOUNT  1: the OPT record below
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1)
    # 4.1.2 Question: QNAME as labels, then QTYPE and QCLASS (IN = 1).
    question = encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)
    # The OPT pseudo-record of EDNS(0) (RFC 6891 section 6.1.2), which dig
    # sends too: NAME is the root (one zero byte), TYPE 41, CLASS the UDP
    # payload size we accept, TTL the extended RCODE, version and flags
    # (all 0), RDLENGTH 0.
    opt = b"\x00" + struct.pack("!HHIH", TYPE_OPT, EDNS_UDP_SIZE, 0, 0)
    return header + question + opt


class Record:
    """One resource record (RFC 1035 section 4.1.3)."""

    def __init__(self, name, rtype, rclass, ttl, data):
        self.name = name      # the owner, as text: "vm.svc.internal."
        self.type = rtype     # 1 for A, 33 for SRV...
        self.rclass = rclass  # 1 for IN
        self.ttl = ttl
        self.data = data      # see read_rdata

    def rdata_text(self):
        """The record's data as a zone file writes it."""
        d, t = self.data, self.type
        if t in (TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_CNAME, TYPE_PTR):
            return d
        if t == TYPE_SRV:
            return "%d %d %d %s" % d
        if t == TYPE_MX:
            return "%d %s" % d
        if t == TYPE_SOA:
            return "%s %s %d %d %d %d %d" % d
        if t == TYPE_TXT:
            return " ".join(quote_string(s) for s in d)
        return "\\# %d %s" % (len(d), d.hex()) if d else "\\# 0"  # RFC 3597 section 5

    def text(self):
        """The record on one line, as dig prints it (with spaces for its
        tabs): "vm.svc.internal. 10 IN A 127.0.0.1"."""
        cls = "IN" if self.rclass == CLASS_IN else "CLASS%d" % self.rclass
        return "%s %d %s %s %s" % (self.name, self.ttl, cls, type_name(self.type), self.rdata_text())


class Message:
    """A DNS message, read by parse()."""

    def __init__(self):
        self.id = 0
        self.qr = self.aa = self.tc = self.rd = self.ra = False
        self.opcode = 0
        self.rcode = 0
        self.questions = []   # (name, type, class)
        self.answer = []      # Records, in the order of the message
        self.authority = []
        self.additional = []  # without the OPT pseudo-record
        self.edns = None      # the OPT record's UDP payload size, if any

    def rcode_text(self):
        return RCODE_NAMES.get(self.rcode, "RCODE%d" % self.rcode)


def parse(msg):
    """Reads a DNS message as RFC 1035 section 4.1 lays it out. Anything
    that does not fit (a count larger than the message, a name running
    past the end, a pointer that loops) raises DNSFormatError."""
    if len(msg) < 12:
        raise DNSFormatError("%d bytes: shorter than the 12-byte header" % len(msg))
    m = Message()
    # 4.1.1 Header.
    m.id, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHHH", msg, 0)
    m.qr = bool(flags & 0x8000)       # QR: 1 in an answer
    m.opcode = (flags >> 11) & 0xF    # OPCODE: 0 for QUERY
    m.aa = bool(flags & 0x0400)       # AA: the server is an authority for the name
    m.tc = bool(flags & 0x0200)       # TC: truncated, ask again over TCP
    m.rd = bool(flags & 0x0100)       # RD: recursion desired (copied from the query)
    m.ra = bool(flags & 0x0080)       # RA: recursion available
    m.rcode = flags & 0xF             # RCODE: 0 NOERROR, 3 NXDOMAIN...
    off = 12
    # 4.1.2 Question section: QDCOUNT times QNAME, QTYPE, QCLASS.
    for _ in range(qdcount):
        name, off = read_name(msg, off)
        if off + 4 > len(msg):
            raise DNSFormatError("question at %d: QTYPE and QCLASS run past the end" % off)
        qtype, qclass = struct.unpack_from("!HH", msg, off)
        off += 4
        m.questions.append((name, qtype, qclass))
    # 4.1.3 Answer, authority and additional sections: resource records.
    for section, count in ((m.answer, ancount), (m.authority, nscount), (m.additional, arcount)):
        for _ in range(count):
            rr, off = read_record(msg, off)
            if rr.type == TYPE_OPT and section is m.additional:
                # RFC 6891 section 6.1.3: the OPT record's CLASS is the
                # sender's UDP payload size, its TTL's top byte the upper
                # 8 bits of a 12-bit RCODE.
                m.edns = rr.rclass
                m.rcode |= (rr.ttl >> 24) << 4
                continue
            section.append(rr)
    if off != len(msg):
        raise DNSFormatError("%d bytes after the last record" % (len(msg) - off))
    return m


def read_record(msg, off):
    """One resource record at off (4.1.3): NAME, TYPE, CLASS, TTL,
    RDLENGTH, RDATA. Returns the Record and the offset after it."""
    name, off = read_name(msg, off)
    if off + 10 > len(msg):
        raise DNSFormatError("record %s: TYPE, CLASS, TTL and RDLENGTH run past the end" % name)
    rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", msg, off)
    off += 10
    end = off + rdlength
    if end > len(msg):
        raise DNSFormatError("record %s: RDLENGTH %d runs past the end" % (name, rdlength))
    return Record(name, rtype, rclass, ttl, read_rdata(msg, off, end, rtype)), end


def read_rdata(msg, off, end, rtype):
    """The data of a record, msg[off:end], by type (RFC 1035 section 3.3
    and 3.4, RFC 3596 for AAAA, RFC 2782 for SRV). Names inside may be
    compressed; they must end inside the record."""
    def name_at(o):
        n, o = read_name(msg, o)
        if o > end:
            raise DNSFormatError("a name runs past the end of its record's data")
        return n, o

    def exactly(o, what):
        if o != end:
            raise DNSFormatError("%s: %d bytes of data where %d were read" % (what, end - off, o - off))

    if rtype == TYPE_A:
        exactly(off + 4, "A")                # 32 bits
        return str(ipaddress.IPv4Address(msg[off:end]))
    if rtype == TYPE_AAAA:
        exactly(off + 16, "AAAA")            # 128 bits
        return str(ipaddress.IPv6Address(msg[off:end]))
    if rtype in (TYPE_NS, TYPE_CNAME, TYPE_PTR):
        n, o = name_at(off)
        exactly(o, type_name(rtype))
        return n
    if rtype == TYPE_MX:                     # PREFERENCE, EXCHANGE
        if off + 2 > end:
            raise DNSFormatError("MX: shorter than its PREFERENCE")
        n, o = name_at(off + 2)
        exactly(o, "MX")
        return struct.unpack_from("!H", msg, off)[0], n
    if rtype == TYPE_SRV:                    # PRIORITY, WEIGHT, PORT, TARGET
        if off + 6 > end:
            raise DNSFormatError("SRV: shorter than PRIORITY, WEIGHT and PORT")
        n, o = name_at(off + 6)
        exactly(o, "SRV")
        return struct.unpack_from("!HHH", msg, off) + (n,)
    if rtype == TYPE_SOA:                    # MNAME, RNAME, then five 32-bit numbers
        mname, o = name_at(off)
        rname, o = name_at(o)
        exactly(o + 20, "SOA")
        return (mname, rname) + struct.unpack_from("!IIIII", msg, o)
    if rtype == TYPE_TXT:                    # one or more <character-string>s
        strings, o = [], off
        while o < end:
            n = msg[o]
            if o + 1 + n > end:
                raise DNSFormatError("TXT: a string runs past the end of the record")
            strings.append(msg[o + 1:o + 1 + n])
            o += 1 + n
        if not strings:
            raise DNSFormatError("TXT: no string")
        return strings
    return msg[off:end]


# Names come to at most 255 bytes on the wire (RFC 1035 section 2.3.4).
MAX_NAME = 255


def read_name(msg, off):
    """Reads the domain name at off (RFC 1035 section 4.1.2 and 4.1.4).
    Returns it as text, "vm.svc.internal.", and the offset right after
    the name where it was written.

    A name is a sequence of labels, each a length byte (0 to 63: its two
    top bits are 00) followed by that many bytes, ending with the zero
    byte of the root. To save room, a name may end with a pointer instead
    (section 4.1.4): two bytes whose top bits are 11, the other 14 the
    offset, from the start of the message, where the rest of the name is.
        +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
        | 1  1|                OFFSET                   |
        +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
    A pointer must point to a prior occurrence of the name, so each one
    must go backwards; with the 255-byte limit on names, that ensures a
    malicious message cannot make this loop forever."""
    labels = []
    wire = 1      # the name's length on the wire, counting the root's zero
    after = None  # where the name ends in place: after its first pointer
    pos = off
    while True:
        if pos >= len(msg):
            raise DNSFormatError("name at %d runs past the end of the message" % off)
        n = msg[pos]
        top = n & 0xC0
        if top == 0xC0:                          # 11: a pointer
            if pos + 1 >= len(msg):
                raise DNSFormatError("name at %d: pointer cut short" % off)
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if after is None:
                after = pos + 2
            if target >= pos:
                raise DNSFormatError("name at %d: pointer at %d to %d does not point backwards" % (off, pos, target))
            pos = target
            continue
        if top:                                  # 01 and 10 are reserved
            raise DNSFormatError("name at %d: unknown label type 0x%02x" % (off, n))
        if n == 0:                               # the root: the name ends
            pos += 1
            break
        if pos + 1 + n > len(msg):
            raise DNSFormatError("name at %d: label runs past the end of the message" % off)
        wire += 1 + n
        if wire > MAX_NAME:
            raise DNSFormatError("name at %d: longer than %d bytes" % (off, MAX_NAME))
        labels.append(msg[pos + 1:pos + 1 + n])
        pos += 1 + n
    if after is None:
        after = pos
    return "".join(escape_label(l) + "." for l in labels) or ".", after


def escape_label(label):
    """A label as text, escaped as dig and zone files do (RFC 1035 section
    5.1): \\. for a dot inside a label, \\DDD for a byte that is not
    printable."""
    out = []
    for b in label:
        if b in b'.\\"();@$':
            out.append("\\" + chr(b))
        elif 0x20 < b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03d" % b)
    return "".join(out)


def quote_string(s):
    """A <character-string> in quotes, as dig prints TXT data."""
    out = ['"']
    for b in s:
        if b in b'"\\':
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03d" % b)
    out.append('"')
    return "".join(out)


def query(server, name, qtype, timeout=2.0):
    """Asks server (host, port) one question over UDP, and again over TCP
    if the answer is truncated (RFC 1035 section 4.2.1, RFC 7766 section
    5). Returns the answer as a Message. Answers whose ID or question do
    not match are ignored, as a resolver must (RFC 5452 section 9.1)."""
    host, port = server
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
    except socket.gaierror as e:
        raise DNSServerError("%s: %s" % (hostport(host, port), strerror(e))) from None
    qid = random.SystemRandom().getrandbits(16)
    q = build_query(name, qtype, qid)
    where = hostport(host, port)
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(addr)  # only the server's datagrams reach this socket now
            s.send(q)
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                data = s.recv(65535)
                if len(data) >= 2 and struct.unpack_from("!H", data)[0] != qid:
                    continue  # not the answer to our query
                m = parse(data)
                if m.qr and _same_question(m, name, qtype):
                    break
        if m.tc:
            m = _query_tcp(addr, family, q, deadline)
    except socket.timeout:
        raise DNSServerError("%s: no answer within %gs" % (where, timeout)) from None
    except DNSFormatError as e:
        raise DNSBadAnswer("bad answer from %s: %s" % (where, e)) from None
    except OSError as e:
        raise DNSServerError("%s: %s" % (where, strerror(e))) from None
    return m


def _query_tcp(addr, family, q, deadline):
    """The same query over TCP, each message after its 2-byte length
    (RFC 1035 section 4.2.2)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(max(0.001, deadline - time.monotonic()))
        s.connect(addr)
        s.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", _recv_exactly(s, 2))[0]
        return parse(_recv_exactly(s, n))


def _recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise DNSFormatError("the TCP connection closed in the middle of a message")
        buf += chunk
    return buf


def _same_question(m, name, qtype):
    # Names compare without regard to case (RFC 4343).
    return (len(m.questions) == 1 and m.questions[0][1] == qtype
            and m.questions[0][0].lower() == (name.strip(".") + ".").lower())


def strerror(e):
    """An OSError in a few lowercase words, as Go says them: "connection refused"."""
    msg = e.strerror or str(e)
    return msg[:1].lower() + msg[1:]


# ---------------------------------------------------------------------------
# The chain: name -> SRV -> host -> address -> port
# ---------------------------------------------------------------------------

class Step:
    """One step of the chain, as resolver.Step in Go: a DNS question and
    what came back, a look-up in the services file, or a connection."""

    def __init__(self, step, question, answers=(), server="", rcode="", duration_us=0, skipped="", error=""):
        self.step = step          # normalize, srv, address, well-known, skip, connect
        self.question = question  # "_echo._tcp.svc.internal. SRV", "127.0.0.1:7007"...
        self.answers = list(answers)  # records as text, or what the step concluded
        self.server = server
        self.rcode = rcode
        self.duration_us = duration_us
        self.start_us = 0         # when it began, from the start of the chain
        self.skipped = skipped    # why no query was sent, when none was
        self.error = error

    def outcome(self):
        if self.error:
            return self.error
        if not self.answers and not self.rcode and self.skipped:
            return self.skipped
        if self.rcode and self.rcode != "NOERROR":
            return self.rcode
        if not self.answers and self.rcode == "NOERROR":
            return "NODATA"
        return ", ".join(_rdata(a) for a in self.answers)


def _rdata(text):
    f = text.split(" ", 4)
    return f[4] if len(f) == 5 else text


class Candidate:
    """An address and port to connect to, in the order they are tried."""

    def __init__(self, host, address, port):
        self.host, self.address, self.port = host, address, port

    def hostport(self):
        return hostport(self.address, self.port)


class Chain:
    """What a lookup did and found, printed as "annuaire dial --trace" does."""

    def __init__(self, name, zone):
        self.name = name
        self.zone = zone
        self.steps = []
        self.candidates = []
        self.error = ""
        self.start = time.monotonic()

    def add(self, step):
        """Appends a step, which began its duration ago."""
        step.start_us = max(_since_us(self.start) - step.duration_us, 0)
        self.steps.append(step)

    def text(self):
        """The chain for a reader of the course: one line per step, then the
        whole chain on one line, ending with the address:port connected to
        (or tried first)."""
        lines = []
        # A dial's trace says when each step began.
        dialed = any(s.step == "connect" for s in self.steps)
        for s in self.steps:
            if s.step == "normalize":
                lines.append("%s: %s" % (self.name, "; ".join(s.answers)))
                continue
            outcome = s.outcome()
            line = "  %-10s %s → %s" % (s.step, s.question, outcome)
            notes = []
            if dialed:
                notes.append("at +" + offset(s.start_us))
            if s.answers and not s.error and s.step in ("srv", "address"):
                notes.append("ttl " + s.answers[0].split(" ")[1])
            if s.skipped == outcome:
                if s.duration_us:
                    notes.append("waited " + duration(s.duration_us))
            elif s.skipped:
                notes.append(s.skipped)
            elif s.server:
                notes += [s.server, duration(s.duration_us)]
            elif s.step == "connect":
                notes.append(duration(s.duration_us))
            if notes:
                line += "   (" + ", ".join(notes) + ")"
            lines.append(line)
        if len(self.candidates) > 1:
            lines.append("  candidates, in the order a dial tries them: " +
                         " ".join(c.hostport() for c in self.candidates))
        if self.error:
            # The steps above say what failed on the way: only the
            # conclusion, the error's last part, is left to say.
            lines.append("%s → failed: %s" % (self.name, self.error[self.error.rfind("; ") + 1:].strip()))
        else:
            lines.append(self.summary())
        return "\n".join(lines) + "\n"

    def summary(self):
        """name → SRV record → address record → address:port."""
        if not self.candidates:
            return self.name + " → ?"
        first = self.candidates[0]
        for s in self.steps:
            if s.step == "connect" and not s.error:
                first = next((c for c in self.candidates if c.hostport() == s.question), first)
        parts = [self.name]
        seen = set()
        for s in self.steps:
            if s.error:
                continue
            for a in s.answers:
                f = a.split(" ", 4)
                if len(f) < 5 and s.step != "well-known":
                    continue
                if s.step == "srv" and "srv" not in seen:
                    d = f[4].split(" ")
                    if d[-1].lower() == first.host.lower() and d[2] == str(first.port):
                        seen.add("srv")
                        parts.append("%s %s %s" % (f[0], f[3], f[4]))
                elif s.step == "address" and "address" not in seen:
                    if f[0].lower() == first.host.lower() and f[4] == first.address:
                        seen.add("address")
                        parts.append("%s %s %s" % (f[0], f[3], f[4]))
                elif s.step == "well-known" and "port" not in seen:
                    seen.add("port")
                    parts.append("port " + a)
        parts.append(first.hostport())
        return " → ".join(parts)

    def connecting(self, candidate, start, sock=None, err=None):
        """Records a connection attempt to candidate, begun at start
        (time.monotonic()), with the socket it gave or its error."""
        s = Step("connect", candidate.hostport(), duration_us=_since_us(start))
        if err is not None:
            s.error = "connect %s: %s" % (candidate.hostport(), strerror(err))
        else:
            s.answers = ["%s → %s" % (hostport(*sock.getsockname()[:2]), hostport(*sock.getpeername()[:2]))]
        self.add(s)


class DialTrace:
    """The lines "annuaire dial --trace" prints on stderr after the chain:
    the connection, the server's first byte, a wait, the end."""

    QUIET = 1.0  # seconds without a byte before saying that the client waits

    def __init__(self, start, sock):
        self.start = start  # time.monotonic() when the lookup began
        self.remote = hostport(*sock.getpeername()[:2])
        self.local = hostport(*sock.getsockname()[:2])
        self.connected_at = time.monotonic()
        self.first = True
        self.warned = False

    def _print(self, line):
        print(line, file=sys.stderr, flush=True)

    def connected(self):
        self._print("connected: local %s → remote %s after %s" % (self.local, self.remote, duration(_since_us(self.start))))

    def received(self):
        """Call when bytes came: the first time, says after how long."""
        if self.first:
            self.first = False
            self._print("first byte from %s after %s" % (self.remote, duration(_since_us(self.start))))

    def quiet_left(self):
        """Seconds left before a wait for the first byte is worth a word;
        None once it is not (the first byte came, or it was said)."""
        if not self.first or self.warned:
            return None
        return max(0.0, self.connected_at + self.QUIET - time.monotonic())

    def waiting(self, sent):
        self.warned = True
        self._print("waiting: connected, no byte from %s yet after %s (sent %d bytes): the server may be serving another "
                    "client;\n  if so, the kernel completed the handshake and queued this connection (the listen "
                    "backlog), where it waits until the server accepts it"
                    % (self.remote, duration((_since_us(self.start) + 500) // 1000 * 1000), sent))

    def closed(self, sent, received):
        self._print("closed after %s: sent %d bytes, received %d bytes" % (duration(_since_us(self.start)), sent, received))


class ChainError(AnnuaireError):
    """A lookup or a connection that failed; .chain says how far it went."""

    def __init__(self, chain):
        super().__init__("%s: %s" % (chain.name, chain.error))
        self.chain = chain


def _since_us(start):
    return int((time.monotonic() - start) * 1e6)


def duration(us):
    """Microseconds as Go prints a time.Duration: 774µs, 1.385ms, 2.5s, 1m5s."""
    if us == 0:
        return "0s"
    if us < 1000:
        return "%dµs" % us
    if us < 1000000:
        return _trim("%d.%03d" % divmod(us, 1000)) + "ms"
    minutes, us = divmod(us, 60000000)
    hours, minutes = divmod(minutes, 60)
    s = _trim("%d.%06d" % divmod(us, 1000000)) + "s"
    if hours:
        return "%dh%dm%s" % (hours, minutes, s)
    return ("%dm" % minutes if minutes else "") + s


def offset(us):
    """When a step began, as the Go trace says it: to 100µs from 1ms on."""
    if us >= 1000:
        us = (us + 50) // 100 * 100
    return duration(us)


def _trim(s):
    return s.rstrip("0").rstrip(".")


def service_label(s):
    """Whether s can be the _Service label of an SRV name: letters, digits
    and hyphens (RFC 6335 section 5.1; up to 63 where it says 15, as
    annuaire does)."""
    return (0 < len(s) <= 63 and s[0] != "-" and s[-1] != "-"
            and all(c.isascii() and (c.isalnum() and not c.isupper() or c == "-") for c in s))


def lookup(name, cfg, rand=random):
    """Resolves a service name through the chain, as the Go resolver does:

      1. SRV _NAME._tcp.ZONE: a port, and the host that serves it
         (RFC 2782); several records are put in the RFC's order;
      2. the host's address: from the SRV answer's additional section when
         the server put it there, else by asking A and AAAA;
      3. without an SRV record, the address of NAME.ZONE with the
         well-known port of NAME, from the system's services file
         (/etc/services: echo 7, telnet 23, smtp 25, http 80).

    Returns the Chain, whose candidates are the address:port to try in
    order; raises ChainError with the chain when nothing was found."""
    chain = Chain(name, cfg.zone)

    def fail(msg):
        chain.error = msg
        raise ChainError(chain)

    rel = name.lower().rstrip(".")
    if rel.endswith("." + cfg.zone.rstrip(".")):
        rel = rel[:-len(cfg.zone)]
    if not service_label(rel):
        chain.add(Step("normalize", name, ["not a service name"], skipped="no query: the name is read as typed"))
        fail("%s is not a service name: letters, digits and hyphens, as echo or echo-alice" % name)
    chain.add(Step("normalize", name, ["service %s over tcp in zone %s" % (rel, cfg.zone)],
                   skipped="no query: the name is read as typed"))

    # 1. SRV.
    step, m = _ask(cfg, "srv", "_%s._tcp.%s" % (rel, cfg.zone), TYPE_SRV)
    chain.add(step)
    if m is None:
        fail(step.error)
    srvs = [rr for rr in m.answer if rr.type == TYPE_SRV]
    if srvs:
        # RFC 2782: a target of "." means the service is decidedly not
        # available here.
        srvs = [rr for rr in srvs if rr.data[3] != "."]
        if not srvs:
            fail('target ".": the service is decidedly not available (RFC 2782)')
        known = {}
        for rr in order_srv(srvs, rand):
            prio, weight, port, target = rr.data
            if port == 0:
                # Port 0 is reserved (RFC 6335 section 6): no process listens on it.
                chain.add(Step("skip", rr.text(), skipped="port 0 cannot be dialled: target skipped"))
                continue
            if target.lower() not in known:
                known[target.lower()] = _addresses(cfg, chain, target, m.additional)
            for addr in known[target.lower()]:
                chain.candidates.append(Candidate(target, addr, port))
        if not chain.candidates:
            if not known:
                fail("every SRV target has port 0: no such service")
            fail("SRV names its targets, but they have no address")
        return chain

    # 2. and 3. No SRV record: the name's address and a well-known port.
    target = rel + "." + cfg.zone
    addrs = _addresses(cfg, chain, target, [])
    try:
        port = socket.getservbyname(rel, "tcp")
    except OSError:
        port = 0
    if port:
        chain.add(Step("well-known", "%s/tcp in the services file" % rel, ["%d/tcp" % port],
                       skipped="no query: getservbyname reads the system's services file"))
    if not addrs:
        if port:
            fail("well-known port %d/tcp, but no address for %s" % (port, target))
        fail("not a well-known service either: no such service")
    if not port:
        fail("%s has an address but no port: no SRV record and not a well-known service" % target)
    chain.candidates = [Candidate(target, a, port) for a in addrs]
    return chain


def _ask(cfg, kind, name, qtype):
    """One question as a step of the chain; the Message, or None when the
    server could not be asked (the step says why)."""
    where = hostport(*cfg.dns)
    start = time.monotonic()
    try:
        m = query(cfg.dns, name, qtype)
    except DNSServerError as e:
        why = str(e) if isinstance(e, DNSBadAnswer) else "DNS server unreachable: %s" % e
        return Step(kind, "%s %s" % (name, type_name(qtype)), server=where, duration_us=_since_us(start),
                    error=why), None
    step = Step(kind, "%s %s" % (name, type_name(qtype)), [rr.text() for rr in m.answer], server=where,
                rcode=m.rcode_text(), duration_us=_since_us(start))
    if m.rcode not in (0, 3):  # neither NOERROR nor NXDOMAIN: the server could not answer
        step.error = "%s answered %s" % (where, m.rcode_text())
        return step, None
    # Trust only what answers the question: records of the name asked, or
    # of the names its CNAMEs lead to (a recursive resolver follows them).
    names = [name.lower()]
    for rr in m.answer:
        if rr.type == TYPE_CNAME and rr.name.lower() == names[-1] and rr.data.lower() not in names:
            names.append(rr.data.lower())
    for rr in m.answer:
        if rr.name.lower() not in names:
            step.error = "bad answer from %s: records of another name (%s %s)" % (where, rr.name, type_name(rr.type))
            return step, None
    m.answer = [rr for rr in m.answer if rr.type == qtype]
    return step, m


def _addresses(cfg, chain, host, additional):
    """host's addresses, IPv6 first then IPv4 (as RFC 8305 section 4
    sorts them), from the additional section when the server put them
    there, else by asking AAAA and A."""
    found = {TYPE_A: [], TYPE_AAAA: []}
    for rr in additional:
        if rr.type in found and rr.name.lower() == host.lower() and rr.data not in [x.data for x in found[rr.type]]:
            found[rr.type].append(rr)
    if (found[TYPE_A] or found[TYPE_AAAA]) and not below(chain.zone, host):
        # RFC 2181 section 5.4.1: a server vouches only for names of its
        # own zone; addresses of others in an additional section are where
        # a lying server would put them.
        for rr in found[TYPE_AAAA] + found[TYPE_A]:
            chain.add(Step("skip", rr.text(), skipped="additional data outside %s (RFC 2181 section 5.4.1): "
                                                      "not used, the host is asked for" % chain.zone))
        found = {TYPE_A: [], TYPE_AAAA: []}
    if found[TYPE_A] or found[TYPE_AAAA]:
        why = "no query: the address came in the answer's additional section"
        for t in (TYPE_AAAA, TYPE_A):
            if found[t]:
                chain.add(Step("address", "%s %s" % (host, type_name(t)),
                               [rr.text() for rr in found[t]], rcode="NOERROR", skipped=why))
        return [rr.data for rr in found[TYPE_AAAA] + found[TYPE_A]]
    step4, m4 = _ask(cfg, "address", host, TYPE_A)
    chain.add(step4)
    step6, m6 = _ask(cfg, "address", host, TYPE_AAAA)
    if m6 is None or m6.answer:  # a NODATA AAAA is noise for the reader
        chain.add(step6)
    addrs = [rr.data for m, t in ((m6, TYPE_AAAA), (m4, TYPE_A)) if m for rr in m.answer if rr.type == t]
    if not addrs and (m4 is None or m6 is None):
        chain.error = (step4 if m4 is None else step6).error
        raise ChainError(chain)
    return addrs


def below(zone, name):
    """Whether name is zone or a name inside it, without regard to case."""
    zone, name = zone.lower().rstrip("."), name.lower().rstrip(".")
    return name == zone or name.endswith("." + zone)


def order_srv(srvs, rand=random):
    """SRV records in the order RFC 2782 says to try them: by priority,
    lowest first; among equal priorities, at random in proportion to the
    weights (records of weight 0 have a small chance)."""
    out = []
    for prio in sorted({rr.data[0] for rr in srvs}):
        group = sorted((rr for rr in srvs if rr.data[0] == prio), key=lambda rr: rr.data[1])
        while group:
            total = sum(rr.data[1] for rr in group)
            pick = rand.randint(0, total)
            running = 0
            for i, rr in enumerate(group):
                running += rr.data[1]
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


def setup_output():
    """Line-buffered stdout, so that each line shows at once, also when a
    program's output goes to a pipe or a file; and characters the console
    cannot show (→ in a Windows code page) become "?" rather than an
    error."""
    for f in (sys.stdout, sys.stderr):
        if hasattr(f, "reconfigure"):
            f.reconfigure(line_buffering=True, errors="replace")


# ---------------------------------------------------------------------------
# What the servers and clients share besides annuaire
# ---------------------------------------------------------------------------

def server_arguments(parser):
    """NAME PORT [--bind ADDR] [--advertise ADDR] [--check-interval S] and
    where annuaire is."""
    parser.add_argument("name", metavar="NAME", help="the service name to register, such as echo-alice")
    parser.add_argument("port", metavar="PORT", type=_port,
                        help="the port to listen on; 0 lets the system choose one, which is registered")
    parser.add_argument("--bind", metavar="ADDR", default="",
                        help='the IPv4 address to listen on (default "": every interface, as bind(("", port)))')
    parser.add_argument("--advertise", metavar="ADDR",
                        help="the address to register (default: the --bind address; for every interface, "
                             "the address of the interface that leads to annuaire's web API)")
    parser.add_argument("--check-interval", metavar="SECONDS", type=float, default=CHECK_INTERVAL,
                        help="annuaire removes the service from DNS when no heartbeat came for that long "
                             "(default %g; heartbeats go three times as often)" % CHECK_INTERVAL)
    add_options(parser)


def _port(s):
    try:
        p = int(s)
    except ValueError:
        p = -1
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError("%r is not a port number (0 to 65535)" % s)
    return p


def check_ipv4(parser, flag, value):
    """The course's sockets are AF_INET: an address given must be IPv4."""
    if value:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            parser.error("%s %r: an IPv4 address such as 127.0.0.2, as the course's AF_INET sockets take" % (flag, value))


def stop_on_signals():
    """Ctrl-C (SIGINT), SIGTERM (kill's default) and, on Windows,
    Ctrl-Break raise KeyboardInterrupt, so that the program's `finally`
    deregisters it. SIGINT too is set explicitly: a program started in
    the background by a script inherits it ignored, and Python then
    leaves it so (annuaire serve, in Go, does the same)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, signal.default_int_handler)


def ignore_signals():
    """Lets a program finish deregistering even if Ctrl-C is pressed again."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def fail(program, msg, code=1):
    print("%s: %s" % (program, msg), file=sys.stderr, flush=True)
    sys.exit(code)
