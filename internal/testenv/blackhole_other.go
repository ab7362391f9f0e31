//go:build !linux

package testenv

import "testing"

// Blackhole makes address drop connects; it needs Linux's behaviour with
// a full accept queue, so elsewhere the test is skipped.
func Blackhole(tb testing.TB, address string) {
	tb.Skip("blackhole: needs Linux (a full accept queue drops SYNs)")
}
