#!/usr/bin/env python3
"""client.py: the course's client, which finds its server by name.

    python3 client.py NAME [--source ADDR]

The name goes through the chain: SRV record _NAME._tcp.ZONE (a port and a
host), the host's address, then socket() and connect(), each step printed
on stderr as "annuaire dial --trace" prints it. Then client_prog sends each
line of stdin and prints the server's answer on stdout: an echo client,
which waits after each line for as many bytes as it sent. At the end of
stdin it closes its side of the connection, prints what the server still
sends, and closes.

Runs on Linux, macOS and Windows.
"""

import argparse
import socket
import sys
import time

import annuaire

PROGRAM = "client.py"


def connect_by_name(name, cfg, source=None):
    """Resolves name through annuaire and connects to the first address
    that answers; prints the chain on stderr. Returns the connected socket
    and its annuaire.DialTrace. Exits when nothing answers."""
    # 1. Le nom symbolique devient une adresse IP et un numéro de port.
    start = time.monotonic()
    try:
        chaine = annuaire.lookup(name, cfg)
    except annuaire.ChainError as e:
        sys.stderr.write(e.chain.text())
        sys.exit(1)

    # 2. Établir une connexion : socket, puis connect vers (adresse, port).
    # An SRV answer may give several; each is tried in turn.
    for candidate in chaine.candidates:
        famille = socket.AF_INET6 if ":" in candidate.address else socket.AF_INET
        if source and (":" in source) != (famille == socket.AF_INET6):
            continue  # an IPv4 source cannot reach an IPv6 address, nor the reverse
        clisock = socket.socket(famille, socket.SOCK_STREAM, 0)
        if source:
            # Choose the client's address; the port stays the system's to
            # choose (0), as always for a client.
            try:
                clisock.bind((source, 0))
            except OSError as e:
                raise annuaire.AnnuaireError("--source %s: %s" % (source, annuaire.strerror(e))) from None
        clisock.settimeout(3.0)  # a candidate that does not answer costs 3 s at most
        t = time.monotonic()
        try:
            clisock.connect((candidate.address, candidate.port))
        except OSError as e:
            chaine.connecting(candidate, t, err=e)
            clisock.close()
            continue
        clisock.settimeout(None)
        chaine.connecting(candidate, t, sock=clisock)
        break
    else:
        if not any(s.step == "connect" for s in chaine.steps):
            chaine.error = "no address of the family of --source %s" % source
        else:
            chaine.error = "; ".join(s.error for s in chaine.steps if s.step == "connect")
        sys.stderr.write(chaine.text())
        sys.exit(1)

    sys.stderr.write(chaine.text())
    trace = annuaire.DialTrace(start, clisock)
    trace.connected()
    return clisock, trace


def receive(clisock, trace, sent):
    """clisock.recv(1000), which blocks until bytes come. While the first
    byte is awaited, a wait of more than a second is explained: connect()
    succeeds as soon as the server's kernel has queued the connection
    (the listen backlog), and an iterative server busy with another
    client reads it only when it comes to accept() it."""
    left = trace.quiet_left()
    if left is not None:
        clisock.settimeout(max(left, 0.001))
        try:
            msg = clisock.recv(1000)
            clisock.settimeout(None)
            trace.received()
            return msg
        except socket.timeout:
            trace.waiting(sent)
        clisock.settimeout(None)
    msg = clisock.recv(1000)
    if msg:
        trace.received()
    return msg


def client_prog(clisock, trace):
    """Envoyer requêtes et recevoir réponses avec clisock, en utilisant recv
    et send: each line of stdin, then its echo. Returns the bytes sent and
    received."""
    out = sys.stdout.buffer
    sent = received = 0
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            break
        clisock.sendall(line)
        sent += len(line)
        # TCP carries a stream of bytes, not messages ("flots d'octets"):
        # the echo may come back in several pieces. Wait for all of it.
        got = 0
        while got < len(line):
            msg = receive(clisock, trace, sent)
            if not msg:  # the server has closed the connection
                return sent, received
            out.write(msg)
            out.flush()
            got += len(msg)
            received += len(msg)
    # End of stdin: close our side (the server sees the end of the stream)
    # and print what it still sends until it closes its own.
    clisock.shutdown(socket.SHUT_WR)
    while True:
        msg = receive(clisock, trace, sent)
        if not msg:
            return sent, received
        out.write(msg)
        out.flush()
        received += len(msg)


def main():
    annuaire.setup_output()
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("name", metavar="NAME", help="the service's name, such as echo or echo-alice")
    parser.add_argument("--source", metavar="ADDR", help="the client's own address (default: the system's choice)")
    annuaire.add_options(parser)
    args = parser.parse_args()
    try:
        cfg = annuaire.Config(args)
        clisock, trace = connect_by_name(args.name, cfg, args.source)
    except annuaire.AnnuaireError as e:
        annuaire.fail(PROGRAM, e)
    except KeyboardInterrupt:
        return 0
    sent = received = 0
    try:
        sent, received = client_prog(clisock, trace)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the user is done, not a failure
    except OSError as e:
        annuaire.fail(PROGRAM, "%s: %s" % (args.name, e))
    finally:
        # à la fin des échanges, fermer le descripteur
        clisock.close()
    trace.closed(sent, received)
    return 0


if __name__ == "__main__":
    sys.exit(main())
