//go:build unix

package main

import "syscall"

// errAddrInUse is the error of a bind to a port already taken.
const errAddrInUse = syscall.EADDRINUSE
