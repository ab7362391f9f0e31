//go:build !unix

package main

// fdLimit returns 0: Windows has no per-process descriptor limit to
// share (its handles are limited by memory).
func fdLimit() int { return 0 }
