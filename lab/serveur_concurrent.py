#!/usr/bin/env python3
"""serveur_concurrent.py: the course's concurrent server (an echo), one
process per client, registered in annuaire under a name.

    python3 serveur_concurrent.py NAME PORT [--bind ADDR]

"Il y a un processus principal (appelé veilleur) qui attend sur accept().
Lorsqu'il reçoit une demande de connexion, il crée un processus fils
(appelé exécutant) qui va interagir avec le client. Le veilleur revient se
mettre en attente sur accept(). Plusieurs exécutants peuvent exister
simultanément."

The exécutant closes the listening socket and keeps the connection; the
veilleur closes the connection and keeps the listening socket; the
veilleur reaps its exécutants when they end (SIGCHLD), so that none stays
a zombie. Registration and stopping are as in serveur_iteratif.py: Ctrl-C
or SIGTERM to the veilleur deregisters the service; exécutants still
serving a client finish with it (Ctrl-C in the terminal reaches them too,
and ends them).

Needs os.fork(): Linux, macOS and other Unix systems, not Windows (use
serveur_iteratif.py there, or WSL).
"""

import argparse
import os
import signal
import socket
import sys

import annuaire

PROGRAM = "serveur_concurrent.py"

QUEUE_SIZE = 5  # par exemple : taille max de la file d'attente des demandes

# Exécutants ended and reaped, for the veilleur to print: a signal handler
# must not print itself (it may interrupt a print of the program's).
termines = []


def server_body(connfd):
    """Le serveur proprement dit : lit les requêtes et renvoie les réponses
    sur connfd. Ici un écho. Returns the number of bytes echoed."""
    n = 0
    while True:
        msg = connfd.recv(1000)
        if not msg:  # b"": the client has closed its side of the connection
            return n
        connfd.sendall(msg)
        n += len(msg)


def reap(signum, frame):
    """SIGCHLD: an exécutant has ended. Until its parent collects its exit
    status with waitpid, an ended process stays in the process table as a
    zombie (state Z in ps). WNOHANG: collect every ended child, and return
    as soon as none is left, without waiting for those still running."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no child at all
            return
        if pid == 0:  # children remain, none has ended
            return
        termines.append((pid, status))


def how_it_ended(status):
    """A wait status in words: "exit 0", "killed by signal 2"."""
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "exit %d" % os.WEXITSTATUS(status)


def executant(listensock, connfd, fromaddr, fromport):
    """The child: serves one client, then exits. Never returns."""
    status = 1
    try:
        # The veilleur's handlers are not the exécutant's: Ctrl-C simply
        # ends it, and it has no children to reap.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # L'exécutant (fils du veilleur) hérite des descripteurs des sockets
        # t et s. Il ferme t (socket serveur) et garde s (communication).
        listensock.close()
        n = server_body(connfd)
        print("exécutant %d: %s closed, %d bytes echoed" % (os.getpid(), annuaire.hostport(fromaddr, fromport), n))
        status = 0
    except OSError as e:
        print("exécutant %d: %s: %s" % (os.getpid(), annuaire.hostport(fromaddr, fromport), e))
    finally:
        connfd.close()
        # os._exit, not sys.exit: the child must not run the veilleur's
        # `finally` (which deregisters the service) nor its exit handlers.
        # os._exit does not flush Python's buffers: flush them first.
        sys.stdout.flush()
        os._exit(status)


def main():
    annuaire.setup_output()
    if not hasattr(os, "fork"):
        annuaire.fail(PROGRAM, "os.fork() does not exist on this system (Windows): "
                               "run serveur_iteratif.py, or this program under WSL", 2)
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    annuaire.server_arguments(parser)
    args = parser.parse_args()
    annuaire.check_ipv4(parser, "--bind", args.bind)
    annuaire.check_ipv4(parser, "--advertise", args.advertise)
    cfg = annuaire.Config(args)
    annuaire.stop_on_signals()
    signal.signal(signal.SIGCHLD, reap)
    veilleur = os.getpid()

    listensock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    # Restart on the same port at once, despite TIME_WAIT.
    listensock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    serveraddr = (args.bind, args.port)
    try:
        listensock.bind(serveraddr)
    except OSError as e:
        annuaire.fail(PROGRAM, "bind %s: %s" % (annuaire.hostport(args.bind or "0.0.0.0", args.port), annuaire.strerror(e)))
    port = listensock.getsockname()[1]  # with PORT 0, the one the system chose
    listensock.listen(QUEUE_SIZE)
    print("%s: socket, bind((%r, %d)), listen(%d): veilleur %d listening on %s" % (
        PROGRAM, args.bind, args.port, QUEUE_SIZE, veilleur, annuaire.hostport(args.bind or "0.0.0.0", port)))

    inscription = None
    try:
        address = args.advertise or annuaire.published_address(args.bind, cfg)
        inscription = annuaire.register(cfg, args.name, address, port, PROGRAM, args.check_interval)
        print("registered %s: %s → %s (id %s)" % (
            args.name, inscription.srv, ", ".join(inscription.endpoints), inscription.id))

        # The veilleur sends the heartbeats itself, between two accepts: a
        # thread would be simpler, but fork() in a process with threads
        # copies only the calling one, and a lock another thread held at
        # that moment stays locked forever in the child (Python 3.12 warns
        # about it). A timeout on accept() wakes the loop in time.
        listensock.settimeout(inscription.every)
        while True:
            inscription.heartbeat_if_due()
            while termines:
                pid, status = termines.pop(0)
                print("veilleur: exécutant %d reaped (%s)" % (pid, how_it_ended(status)))
            # Boucle du veilleur : attente de nouvelles connexions.
            try:
                connfd, (fromaddr, fromport) = listensock.accept()
            except socket.timeout:
                continue
            # Without this flush, lines still in the buffer would be
            # printed twice: by the veilleur, and by the child's copy.
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                executant(listensock, connfd, fromaddr, fromport)
            # Le veilleur ferme s (la connexion est à l'exécutant) et revient
            # se mettre en attente sur accept().
            connfd.close()
            print("accept: connection from %s: exécutant %d serves it" % (annuaire.hostport(fromaddr, fromport), pid))
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: the normal way to stop
    except annuaire.AnnuaireError as e:
        if os.getpid() == veilleur:
            annuaire.fail(PROGRAM, e)
    finally:
        # Only the veilleur deregisters: an exécutant interrupted before
        # it reached executant() must leave the service alone.
        if os.getpid() != veilleur:
            os._exit(1)
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
