package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/authority"
)

// TestDNSLimitFlags: serve's rate limiting and TCP flags reach the DNS
// server; --rrl-exempt replaces the loopback default, "" leaves none.
func TestDNSLimitFlags(t *testing.T) {
	e := &env{stdin: strings.NewReader(""), stdout: &strings.Builder{}, stderr: &strings.Builder{}, getenv: func(string) string { return "" }}
	apply := func(args ...string) (*authority.Server, error) {
		t.Helper()
		f, err := parseServeFlags(e, args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		s := &authority.Server{}
		return s, f.dnsLimits.apply(s)
	}
	s, err := apply()
	if err != nil {
		t.Fatal(err)
	}
	def := authority.DefaultRateLimit()
	if s.RateLimit.Rate != def.Rate || s.RateLimit.Slip != def.Slip || !slices.Equal(s.RateLimit.Exempt, def.Exempt) ||
		s.MaxTCPConns != 1000 || s.MaxTCPConnsPerClient != 100 || s.IdleTimeout != 10*time.Second {
		t.Errorf("defaults: %+v, tcp %d %d %v", *s.RateLimit, s.MaxTCPConns, s.MaxTCPConnsPerClient, s.IdleTimeout)
	}
	s, err = apply("--rrl-rate", "5", "--rrl-slip", "1", "--rrl-exempt", "10.0.0.0/8", "--rrl-exempt", "2001:db8::/32",
		"--tcp-max-conns", "50", "--tcp-max-conns-per-client", "5", "--tcp-idle-timeout", "3s")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	if s.RateLimit.Rate != 5 || s.RateLimit.Slip != 1 || !slices.Equal(s.RateLimit.Exempt, want) ||
		s.MaxTCPConns != 50 || s.MaxTCPConnsPerClient != 5 || s.IdleTimeout != 3*time.Second {
		t.Errorf("set: %+v, tcp %d %d %v", *s.RateLimit, s.MaxTCPConns, s.MaxTCPConnsPerClient, s.IdleTimeout)
	}
	if s, err = apply("--rrl-exempt", ""); err != nil || len(s.RateLimit.Exempt) != 0 {
		t.Errorf(`--rrl-exempt "": %v, %v; want no exemption`, s.RateLimit.Exempt, err)
	}
	if _, err := apply("--rrl-exempt", "loopback"); err == nil || !strings.Contains(err.Error(), "--rrl-exempt") {
		t.Errorf("a bad CIDR: %v", err)
	}
	if _, err := apply("--tcp-max-conns", "0"); err == nil {
		t.Error("--tcp-max-conns 0 accepted")
	}
}
