#!/usr/bin/env python3
"""serveur_iteratif.py: the course's iterative server (an echo), registered
in annuaire under a name.

    python3 serveur_iteratif.py NAME PORT [--bind ADDR]

socket, bind, listen(QUEUE_SIZE), then the accept loop: each client is
served to the end by server_body(connfd) before the next one is accepted
("un seul client est servi à la fois"). Once listening, the server
registers itself in annuaire under NAME (with PORT 0, the port the system
chose), so that a client finds it by name: client.py NAME. Ctrl-C or
SIGTERM deregisters it before it exits, which is the course's "commande
pour arrêter proprement le serveur".

Runs on Linux, macOS and Windows.
"""

import argparse
import socket
import sys

import annuaire

PROGRAM = "serveur_iteratif.py"

QUEUE_SIZE = 5  # par exemple : taille max de la file d'attente des demandes


def server_body(connfd):
    """Le serveur proprement dit : lit les requêtes et renvoie les réponses
    sur connfd. Ici un écho : chaque octet reçu est renvoyé. Returns the
    number of bytes echoed."""
    n = 0
    while True:
        msg = connfd.recv(1000)
        if not msg:  # b"": the client has closed its side of the connection
            return n
        # send() may send only part of msg; sendall() loops until all is sent.
        connfd.sendall(msg)
        n += len(msg)


def main():
    annuaire.setup_output()
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    annuaire.server_arguments(parser)
    args = parser.parse_args()
    annuaire.check_ipv4(parser, "--bind", args.bind)
    annuaire.check_ipv4(parser, "--advertise", args.advertise)
    cfg = annuaire.Config(args)
    annuaire.stop_on_signals()

    # Étape 1 : créer une socket (Internet, TCP).
    # (Les premières diapositives l'appellent connsock.)
    listensock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if sys.platform != "win32":
        # Restarting on the same port works at once, even with connections
        # of the previous run still in TIME_WAIT. (On Windows this option
        # would let another program take the port: left alone there.)
        listensock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Étape 2 : associer la socket à un port : le couple {adresse, port}.
    serveraddr = (args.bind, args.port)
    try:
        listensock.bind(serveraddr)
    except OSError as e:
        annuaire.fail(PROGRAM, "bind %s: %s" % (annuaire.hostport(args.bind or "0.0.0.0", args.port), annuaire.strerror(e)))
    port = listensock.getsockname()[1]  # with PORT 0, the one the system chose
    # Étape 3 : indiquer que c'est une socket serveur.
    listensock.listen(QUEUE_SIZE)
    print("%s: socket, bind((%r, %d)), listen(%d): listening on %s" % (
        PROGRAM, args.bind, args.port, QUEUE_SIZE, annuaire.hostport(args.bind or "0.0.0.0", port)))

    inscription = None
    try:
        address = args.advertise or annuaire.published_address(args.bind, cfg)
        inscription = annuaire.register(cfg, args.name, address, port, PROGRAM, args.check_interval)
        print("registered %s: %s → %s (id %s)" % (
            args.name, inscription.srv, ", ".join(inscription.endpoints), inscription.id))
        # server_body keeps the loop busy as long as a client stays: the
        # heartbeats go from a thread of their own.
        inscription.start_heartbeats()

        # A timeout on accept() wakes the loop every second. Only Windows
        # needs it: there, a blocking accept() does not see Ctrl-C.
        listensock.settimeout(1.0)
        while True:
            # Étape 4 : attendre une demande de connexion (accept est bloquant).
            try:
                connfd, (fromaddr, fromport) = listensock.accept()
            except socket.timeout:
                continue
            # connfd : la socket de communication avec ce client
            # (newsock dans les premières diapositives).
            print("accept: connection from %s" % annuaire.hostport(fromaddr, fromport))
            try:
                n = server_body(connfd)
                print("%s: closed, %d bytes echoed" % (annuaire.hostport(fromaddr, fromport), n))
            except OSError as e:  # the client reset the connection, for one
                print("%s: %s" % (annuaire.hostport(fromaddr, fromport), e))
            # lorsque ce serveur se termine, on ferme la connexion
            connfd.close()
            # maintenant on va accepter la prochaine connexion
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: the normal way to stop
    except annuaire.AnnuaireError as e:
        annuaire.fail(PROGRAM, e)
    finally:
        annuaire.ignore_signals()
        listensock.close()
        if inscription is not None:
            try:
                inscription.deregister()
                print("deregistered %s: %s leaves DNS" % (args.name, inscription.srv.split(" ")[0]))
            except annuaire.AnnuaireError as e:
                annuaire.fail(PROGRAM, "deregister: %s" % e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
