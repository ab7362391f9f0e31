package main

import (
	"flag"
	"fmt"
	"net/netip"
	"time"

	"github.com/annuaire/annuaire/authority"
)

// dnsLimitFlags are serve's flags for what protects the DNS server from
// its clients: response rate limiting and the TCP connection limits.
type dnsLimitFlags struct {
	rrlRate, rrlSlip     int
	rrlExempt            listFlag
	tcpMax, tcpPerClient int
	tcpIdle              time.Duration
}

func (f *dnsLimitFlags) register(fs *flag.FlagSet) {
	def := authority.DefaultRateLimit()
	fs.IntVar(&f.rrlRate, "rrl-rate", def.Rate, "DNS answers a `second` of each kind per client network (/24, /56) over UDP before they are limited; 0: no limit")
	fs.IntVar(&f.rrlSlip, "rrl-slip", def.Slip, "every `n`th answer over the limit is sent truncated (the client retries over TCP), the others dropped; 0: drop all")
	fs.Var(&f.rrlExempt, "rrl-exempt", "`CIDR` never rate limited (repeatable; default 127.0.0.0/8 and ::1, which cannot be forged from the network; \"\" for none)")
	fs.IntVar(&f.tcpMax, "tcp-max-conns", 1000, "DNS TCP connections at once; a new one closes the idlest")
	fs.IntVar(&f.tcpPerClient, "tcp-max-conns-per-client", 100, "DNS TCP connections of one IPv4 address or IPv6 /64")
	fs.DurationVar(&f.tcpIdle, "tcp-idle-timeout", 10*time.Second, "how long a DNS TCP connection waits for its next query (shorter when more than half the connections are taken)")
}

// apply sets s's limits from the flags.
func (f *dnsLimitFlags) apply(s *authority.Server) error {
	limit := authority.DefaultRateLimit()
	limit.Rate, limit.Slip = f.rrlRate, f.rrlSlip
	if f.rrlRate < 0 || f.rrlSlip < 0 {
		return fmt.Errorf("--rrl-rate and --rrl-slip cannot be negative")
	}
	if f.rrlExempt != nil {
		limit.Exempt = nil
		for _, c := range f.rrlExempt {
			if c == "" {
				continue
			}
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return fmt.Errorf("--rrl-exempt %q: %w", c, err)
			}
			limit.Exempt = append(limit.Exempt, p)
		}
	}
	if f.tcpMax <= 0 || f.tcpPerClient <= 0 || f.tcpIdle <= 0 {
		return fmt.Errorf("--tcp-max-conns, --tcp-max-conns-per-client and --tcp-idle-timeout must be positive")
	}
	s.RateLimit = &limit
	s.MaxTCPConns, s.MaxTCPConnsPerClient, s.IdleTimeout = f.tcpMax, f.tcpPerClient, f.tcpIdle
	return nil
}
