//go:build !unix

package main

import "errors"

func setFileLimit(string) error { return errors.New("no RLIMIT_NOFILE on this system") }
