"""dnspython's view of a zone, for bytes_test.go: reads a JSON list of
operations on stdin, runs each against the server, prints one JSON line per
operation. Names and character-strings go both ways as hex of their raw
bytes, so that nothing is escaped or decoded on the way: a label is a list
of hex strings (relative to the zone), a TXT string a hex string.

Operations:
  {"op": "update", "add": [RR...], "delete": [RR...]}  UPDATE, TSIG-signed
  {"op": "query", "name": [...], "type": "TXT"}         a query over UDP (TCP if truncated)
  {"op": "xfr", "type": "AXFR"|"IXFR", "serial": N}     a transfer, TSIG-signed
An RR is {"name": [...], "ttl": N, "type": T, and "strings": [...] for TXT,
"srv": [prio, weight, port, [target labels]] for SRV, "target": [labels] for
PTR, "text" otherwise}.
"""

import json
import sys

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update

cfg = json.load(sys.stdin)
server, port = cfg["server"], cfg["port"]
zone = dns.name.from_text(cfg["zone"])
keyname = dns.name.from_text(cfg["keyname"])
keyring = dns.tsigkeyring.from_text({cfg["keyname"]: cfg["secret"]})


def name_of(labels):
    return dns.name.Name([bytes.fromhex(l) for l in labels] + list(zone.labels))


def labels_of(name):
    return [l.hex() for l in name.relativize(zone).labels]


def rdata_of(rr):
    t = dns.rdatatype.from_text(rr["type"])
    if t == dns.rdatatype.TXT:
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, t, [bytes.fromhex(s) for s in rr["strings"]])
    if t == dns.rdatatype.PTR:
        return dns.rdtypes.ANY.PTR.PTR(dns.rdataclass.IN, t, name_of(rr["target"]))
    if t == dns.rdatatype.SRV:
        p, w, port_, target = rr["srv"]
        return dns.rdata.from_text(dns.rdataclass.IN, t, "%d %d %d %s" % (p, w, port_, name_of(target).to_text()))
    return dns.rdata.from_text(dns.rdataclass.IN, t, rr["text"])


def rr_json(name, ttl, rd):
    out = {"name": labels_of(name), "ttl": ttl, "type": dns.rdatatype.to_text(rd.rdtype)}
    if rd.rdtype == dns.rdatatype.TXT:
        out["strings"] = [s.hex() for s in rd.strings]
    elif rd.rdtype == dns.rdatatype.SRV:
        out["srv"] = [rd.priority, rd.weight, rd.port, labels_of(rd.target)]
    elif rd.rdtype == dns.rdatatype.PTR:
        out["target"] = labels_of(rd.target)
    else:
        out["text"] = rd.to_text()
    return out


def section(rrsets):
    return [rr_json(rrset.name, rrset.ttl, rd) for rrset in rrsets for rd in rrset]


for op in cfg["ops"]:
    if op["op"] == "update":
        u = dns.update.UpdateMessage(zone, keyring=keyring, keyname=keyname, keyalgorithm=dns.tsig.HMAC_SHA256)
        for rr in op.get("add", []):
            u.add(name_of(rr["name"]), rr["ttl"], rdata_of(rr))
        for rr in op.get("delete", []):
            u.delete(name_of(rr["name"]), rdata_of(rr))
        r = dns.query.tcp(u, server, port=port, timeout=5)
        print(json.dumps({"op": "update", "rcode": dns.rcode.to_text(r.rcode())}))
    elif op["op"] == "query":
        q = dns.message.make_query(name_of(op["name"]), op["type"])
        r = dns.query.udp(q, server, port=port, timeout=5)
        if r.flags & dns.flags.TC:
            r = dns.query.tcp(q, server, port=port, timeout=5)
        print(json.dumps({"op": "query", "rcode": dns.rcode.to_text(r.rcode()), "answer": section(r.answer)}))
    elif op["op"] == "xfr":
        rrs = []
        for m in dns.query.xfr(server, zone, rdtype=dns.rdatatype.from_text(op["type"]), serial=op.get("serial", 0),
                               port=port, keyring=keyring, keyname=keyname, keyalgorithm=dns.tsig.HMAC_SHA256,
                               relativize=False, lifetime=10):
            rrs.extend(section(m.answer))
        print(json.dumps({"op": "xfr", "rrs": rrs}))
