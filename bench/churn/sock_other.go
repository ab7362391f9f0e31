//go:build !unix

package main

import "net"

// sock is the connection itself where there are no raw system calls to
// make (sock.go): Read and Write go through the runtime as usual.
type sock struct{ net.Conn }

func newSock(nc net.Conn) (*sock, error) { return &sock{nc}, nil }
