package echo

import (
	"context"
	"net"
	"runtime"
	"slices"
	"testing"
)

func TestModes(t *testing.T) {
	want := []string{"iterative", "concurrent", "process", "select", "epoll"}
	switch {
	case runtime.GOOS == "windows":
		want = want[:2]
	case epollUnsupported != "": // not Linux, or the portable build tag
		want = want[:4]
	}
	if got := Modes(); !slices.Equal(got, want) {
		t.Errorf("Modes() = %q, want %q", got, want)
	}
	if epollUnsupported == "" {
		want = append(want, "poll") // epoll's first name
	}
	for _, m := range append([]string{""}, want...) {
		if err := CheckMode(m); err != nil {
			t.Errorf("CheckMode(%q): %v", m, err)
		}
	}
}

// A refused mode is one line that says why and what runs instead, from
// CheckMode (what "annuaire serve --echo-mode" calls) and from Serve.
func TestModeRefused(t *testing.T) {
	cases := map[string]string{
		"threads": `"threads" is not a design: want ` + orList(Modes()),
	}
	if epollUnsupported != "" {
		cases["epoll"] = `"epoll" needs Linux's epoll(7); on ` + runtime.GOOS + " use " + orList(Modes())
		cases["poll"] = `"poll" needs Linux's epoll(7); on ` + runtime.GOOS + " use " + orList(Modes())
	}
	if selectUnsupported != "" {
		cases["select"] = `"select" needs a Unix system's select(2); on ` + runtime.GOOS + " use " + orList(Modes())
	}
	for mode, want := range cases {
		if err := CheckMode(mode); err == nil || err.Error() != want {
			t.Errorf("CheckMode(%q) = %v, want %q", mode, err, want)
		}
		want = "echo: Mode " + want
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Mode: mode}
		if err := s.Serve(context.Background(), ln); err == nil || err.Error() != want {
			t.Errorf("Serve in mode %q = %v, want %q", mode, err, want)
		}
	}
}
