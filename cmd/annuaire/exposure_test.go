package main

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// boundTo is a socket that only says where it is bound: the test cannot
// bind beyond loopback, and exposures reads nothing else.
type boundTo struct {
	net.PacketConn
	net.Listener
	at net.Addr
}

func (b boundTo) LocalAddr() net.Addr { return b.at }
func (b boundTo) Addr() net.Addr      { return b.at }
func (b boundTo) Close() error        { return nil }

func TestExposures(t *testing.T) {
	at := func(s string) boundTo {
		return boundTo{at: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))}
	}
	rows := map[string]hostedService{}
	for _, h := range hostedServices() {
		rows[h.flag] = h
	}
	l := &listeners{
		dnsUDP: at("127.0.0.1:1053"),
		hosted: []*hosting{
			{row: rows["web"], sockets: []*socket{{proto: "tcp", ln: at("[::]:8080")}}},
			{row: rows["echo"], sockets: []*socket{{proto: "tcp", ln: at("192.0.2.7:7007")}, {proto: "udp", pc: at("192.0.2.7:7007")}}},
			{row: rows["telnet"], sockets: []*socket{{proto: "tcp", ln: at("127.0.0.2:2323")}}},
		},
	}
	want := []string{
		"--web [::]:8080 is reachable from the network: anyone can read the directory; writes and the received mail need the API token",
		"--echo 192.0.2.7:7007 is reachable from the network: anyone can use echo",
	}
	if got := exposures(&serveFlags{}, l); !slices.Equal(got, want) {
		t.Errorf("beyond loopback:\n got %q\nwant %q", got, want)
	}

	l.dnsUDP = at("0.0.0.0:53")
	f := &serveFlags{allowTransfer: listFlag{"192.0.2.0/24"}}
	want = append([]string{"--dns 0.0.0.0:53 is reachable from the network: anyone can query the zone; UPDATE and transfers need a TSIG key or a source in --allow-transfer 192.0.2.0/24"}, want...)
	if got := exposures(f, l); !slices.Equal(got, want) {
		t.Errorf("DNS too:\n got %q\nwant %q", got, want)
	}

	l = &listeners{dnsUDP: at("127.0.0.1:1053"), hosted: []*hosting{{row: rows["web"], sockets: []*socket{{proto: "tcp", ln: at("[::1]:8080")}}}}}
	if got := exposures(&serveFlags{}, l); len(got) != 0 {
		t.Errorf("loopback only: %q, want nothing", got)
	}
}
