package main

import "golang.org/x/sys/windows"

// errAddrInUse is the error of a bind to a port already taken: Winsock's,
// which syscall.EADDRINUSE does not match on Windows.
const errAddrInUse = windows.WSAEADDRINUSE
