"""Prints annuaire.query's answers the way `dig +noall +answer +authority
+additional` prints them, one record a line, for lab_test.go to compare
with dig's (standard library only).

    python3 dns_query.py HOST:PORT NAME/TYPE...
"""

import sys

import annuaire


def main():
    server = annuaire.split_hostport(sys.argv[1], 53)
    for arg in sys.argv[2:]:
        name, qtype = arg.rsplit("/", 1)
        t = {v: k for k, v in annuaire.TYPE_NAMES.items()}[qtype]
        m = annuaire.query(server, name, t)
        print(";; %s %s tc=%s" % (arg, m.rcode_text(), m.tc))
        for rr in m.answer + m.authority + m.additional:
            print(rr.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
