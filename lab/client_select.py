#!/usr/bin/env python3
"""client_select.py: the course's client with select.select, which finds
its server by name.

    python3 client_select.py NAME [--source ADDR]

client.py waits for the echo of each line it sends, so it cannot show
what the server says on its own. This client waits on both at once with
select.select([clisock, sys.stdin], ...): what is typed goes to the
server, what the server sends is printed, in whichever order they come.
At the end of stdin it closes its side of the connection and prints what
the server still sends until it closes.

Linux and macOS: on Windows, select() accepts only sockets, not stdin.
"""

import argparse
import os
import select
import socket
import sys

import annuaire
from client import connect_by_name

PROGRAM = "client_select.py"


def client_prog(clisock, trace):
    """The select loop of the course. Returns the bytes sent and received."""
    sent = received = 0
    liste_lectures = [clisock, sys.stdin]
    # en entrée on surveille clisock et sys.stdin
    liste_ecritures, liste_erreurs = [], []
    # en écriture et en erreur on ne surveille rien
    while True:
        # delai : select rend la main au plus tard au bout de ce délai (en
        # secondes). Until the server's first byte, no more than the time
        # left before the trace explains the wait (see client.receive).
        delai = trace.quiet_left()
        if delai is None:
            delai = 60.0
        readers, writers, errors = select.select(liste_lectures, liste_ecritures, liste_erreurs, delai)
        # on récupère le résultat de l'attente dans 3 listes
        # (toutes vides si le délai est passé sans rien à lire)
        if not readers and trace.quiet_left() == 0:
            trace.waiting(sent)
        for input in readers:  # "input", as in the course (it hides Python's input())
            if input == clisock:
                # ici on a quelque chose à lire sur clisock
                msg = clisock.recv(1000)  # ne bloque pas !
                if not msg:  # the server has closed the connection: done
                    return sent, received
                trace.received()
                sys.stdout.buffer.write(msg)
                sys.stdout.buffer.flush()
                received += len(msg)
            if input == sys.stdin:
                # ici on a quelque chose à lire sur stdin
                # The course reads sys.stdin.readline(), but it reads ahead:
                # lines typed (or piped) together land in its buffer, where
                # select cannot see them, and would wait for the next key.
                # os.read takes what is there, and does not block either.
                msg = os.read(sys.stdin.fileno(), 1000)
                if not msg:
                    # End of stdin (Ctrl-D): tell the server, which sees
                    # the end of the stream, and stop watching stdin.
                    clisock.shutdown(socket.SHUT_WR)
                    liste_lectures.remove(sys.stdin)
                    continue
                clisock.sendall(msg)
                sent += len(msg)


def main():
    annuaire.setup_output()
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("name", metavar="NAME", help="the service's name, such as echo or echo-alice")
    parser.add_argument("--source", metavar="ADDR", help="the client's own address (default: the system's choice)")
    annuaire.add_options(parser)
    args = parser.parse_args()
    if sys.platform == "win32":
        annuaire.fail(PROGRAM, "select() on Windows takes only sockets, not stdin: use client.py", 2)
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
        clisock.close()
    trace.closed(sent, received)
    return 0


if __name__ == "__main__":
    sys.exit(main())
