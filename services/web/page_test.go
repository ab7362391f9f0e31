package web

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
)

// pageRegistry is a directory worth drawing: echo over TCP and UDP
// served by a process that says so, an instance label that needs
// escaping everywhere it goes (spaces, UTF-8, markup), and a critical
// instance that DNS leaves out.
func pageRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	reg := registry.New(1)
	lo := netip.MustParseAddr("127.0.0.1")
	served := registry.TXT{"served-by=annuaire", "pid=4242"}
	for _, r := range []struct {
		inst registry.Instance
		addr netip.Addr
	}{
		{registry.Instance{Service: "echo", Proto: "tcp", Host: "h-127-0-0-1", Port: 7007, TXT: served}, lo},
		{registry.Instance{Service: "echo", Proto: "udp", Host: "h-127-0-0-1", Port: 7007, TXT: served}, lo},
		{registry.Instance{Service: "http", Proto: "tcp", Label: `Salle 101 — <b>"Ada" & Grace</b>`, Host: "h-127-0-0-1", Port: 8080}, lo},
		{registry.Instance{Service: "telnet", Proto: "tcp", Host: "lab-2", Port: 2323, Health: registry.Critical}, netip.MustParseAddr("192.0.2.23")},
		{registry.Instance{Service: "ipp", Proto: "tcp", Label: "Imprimante Salle 2.3 (étage) \xfe", Host: "h-127-0-0-1", Port: 631,
			TXT: registry.TXT{"txtvers=1", "duplex", "bin=\x00\xff", `path=C:\dir`, "utf=café"}}, lo},
	} {
		h := &registry.Host{Name: r.inst.Host, Addrs: []netip.Addr{r.addr}, Auto: true}
		if _, err := reg.Register(r.inst, h); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// pageServer serves reg with the chains of a real resolver asking a real
// authority, as `annuaire serve` wires them.
func pageServer(t *testing.T, reg *registry.Registry) string {
	t.Helper()
	dnsAddr := startAuthority(t, reg)
	cached := &resolver.Resolver{Server: dnsAddr}
	fresh := &resolver.Resolver{Server: dnsAddr, NoCache: true}
	return startServer(t, &Server{Registry: reg, Token: testToken, Lookup: cached.Lookup, ChainLookup: fresh.Lookup})
}

// A row is one instance as the page lists it: its cells by data-label.
type row map[string]string

// pageRows reads the directory's table rows out of a page, by instance
// id, and the text of each card's chain, by service type.
func pageRows(t *testing.T, page []byte) (rows map[string]row, chains map[string]string) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("the page does not parse: %v", err)
	}
	rows, chains = map[string]row{}, map[string]string{}
	var walk func(n *html.Node, card string)
	walk = func(n *html.Node, card string) {
		if n.Type == html.ElementNode {
			switch {
			case n.Data == "article" && attr(n, "data-type") != "":
				card = attr(n, "data-type")
			case n.Data == "ol" && attr(n, "class") == "chain" && card != "":
				chains[card] = text(n)
			case n.Data == "tr" && attr(n, "data-id") != "":
				r := row{"card": card}
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if l := attr(c, "data-label"); l != "" {
						r[l] = strings.TrimSpace(text(c))
					}
				}
				rows[attr(n, "data-id")] = r
				return
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, card)
		}
	}
	walk(doc, "")
	return rows, chains
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is what a reader sees of n: its text nodes, each box's lines
// separated.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if n.Type == html.ElementNode && n.Data == "span" {
			b.WriteByte('\n')
		}
	}
	walk(n)
	return b.String()
}

// checkDirectory fails unless page lists every instance of reg with its
// port, label, host and health, in its type's card, and draws each
// type's chain to its process, or to the failing step for the critical
// one.
func checkDirectory(t *testing.T, what string, page []byte, reg *registry.Registry) {
	t.Helper()
	rows, chains := pageRows(t, page)
	n := 0
	for inst := range reg.Snapshot().All() {
		n++
		r, ok := rows[inst.ID]
		if !ok {
			t.Errorf("%s: no row for %s; rows %v", what, inst.ID, rows)
			continue
		}
		health := inst.Health.String()
		if health == "" {
			health = "passing"
		}
		for label, want := range map[string]string{
			"card": "_" + inst.Service + "._" + inst.Proto, "port": strconv.Itoa(int(inst.Port)),
			"instance": shown(inst.Label), "host": inst.Host, "health": health,
		} {
			if r[label] != want {
				t.Errorf("%s: %s's %s is %q, want %q", what, inst.ID, label, r[label], want)
			}
		}
	}
	if len(rows) != n {
		t.Errorf("%s: %d rows for %d instances", what, len(rows), n)
	}
	for typ, want := range map[string][]string{
		"_echo._tcp":   {"_echo._tcp.svc.internal. SRV", "0 0 7007 h-127-0-0-1.svc.internal.", "127.0.0.1", "7007", "annuaire echo (pid 4242)"},
		"_echo._udp":   {"_echo._udp.svc.internal. SRV", "7007", "annuaire echo (pid 4242)"},
		"_http._tcp":   {"0 0 8080 h-127-0-0-1.svc.internal.", "http server, listening on port 8080/tcp", `Salle 101 — <b>"Ada" & Grace</b> at 127.0.0.1:8080`},
		"_telnet._tcp": {"_telnet._tcp.svc.internal. SRV", "NODATA", "not reachable"},
	} {
		for _, w := range want {
			if !strings.Contains(chains[typ], w) {
				t.Errorf("%s: %s's chain lacks %q:\n%s", what, typ, w, chains[typ])
			}
		}
	}
}

// TestPageWithoutScript: what curl gets from GET / is the whole
// directory, every instance with its port and every chain to its
// process, and so is what a headless Chromium holds when the page has
// loaded (its --dump-dom). The page used to be "Loading…" until its
// script filled it in.
func TestPageWithoutScript(t *testing.T) {
	reg := pageRegistry(t)
	base := pageServer(t, reg)

	curl := testenv.NeedTool(t, "curl")
	out, err := exec.Command(curl, "-sS", "--fail", base+"/").Output()
	if err != nil {
		t.Fatalf("curl /: %v", err)
	}
	checkDirectory(t, "curl /", out, reg)
	// The label went through the escaper: the markup in it is text.
	if bytes.Contains(out, []byte("<b>\"Ada\"")) || !bytes.Contains(out, []byte("Salle 101 — &lt;b&gt;&#34;Ada&#34; &amp; Grace&lt;/b&gt;")) {
		t.Errorf("the instance label is not escaped as text")
	}
	if bytes.Contains(out, []byte("Loading")) {
		t.Errorf("curl / still says Loading")
	}
	// A label and TXT strings of any bytes show as the bytes served: text
	// as text, the rest escaped as a zone file would, in their order.
	rows, _ := pageRows(t, out)
	ipp := rows["ipp-tcp-h-127-0-0-1-631"]
	if ipp["instance"] != `Imprimante Salle 2.3 (étage) \254` || ipp["txt"] != `txtvers=1 duplex bin=\000\255 path=C:\\dir utf=café` {
		t.Errorf("the ipp instance shows as %q", ipp)
	}

	chromium := testenv.NeedTool(t, "chromium")
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// The flags of TestBrowser's chromedp allocator.
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--no-default-browser-check", "--disable-quic",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--dump-dom", base+"/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil || len(dom) == 0 {
		t.Fatalf("chromium --dump-dom: %v, %d bytes\n%s", err, len(dom), stderr.Bytes())
	}
	checkDirectory(t, "chromium --dump-dom", dom, reg)
}

// TestPageLookupBox: the lookup box is a form that GET / answers, so it
// works without script, and its result ends, as the directory's cards do,
// at the process the registry says serves there.
func TestPageLookupBox(t *testing.T) {
	reg := pageRegistry(t)
	base := pageServer(t, reg)
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"echo", []string{"SRV query", "0 0 7007 h-127-0-0-1.svc.internal.", "h-127-0-0-1.svc.internal.", "PROCESS", "annuaire echo (pid 4242)", "Where the client connects, in order"}},
		{"echo/udp", []string{"_echo._udp.svc.internal. SRV", "annuaire echo (pid 4242)"}},
		{"telnet", []string{"NODATA", "not reachable"}},
		{"nosuch", []string{"NXDOMAIN", "not reachable"}},
		{strings.Repeat("a", 256), []string{"longer than 255 bytes"}},
	} {
		r := fetch(t, "GET", base+"/?name="+tc.name)
		if r.status != http.StatusOK {
			t.Fatalf("?name=%s: %d", tc.name, r.status)
		}
		doc, err := html.Parse(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		res := byID(doc, "lookup-result")
		if res == nil {
			t.Fatalf("?name=%s: no #lookup-result", tc.name)
		}
		got := text(res)
		for _, w := range tc.want {
			if w == "PROCESS" {
				if !strings.Contains(got, "process\n") {
					t.Errorf("?name=%s: no process box:\n%s", tc.name, got)
				}
				continue
			}
			if !strings.Contains(got, w) {
				t.Errorf("?name=%s: result lacks %q:\n%s", tc.name, w, got)
			}
		}
		if in := byID(doc, "lookup-name"); in == nil || attr(in, "value") != tc.name {
			t.Errorf("?name=%s: the box does not keep the name", tc.name)
		}
	}
	// Without a Lookup the box says so rather than failing.
	bare := startServer(t, &Server{Registry: reg})
	if r := fetch(t, "GET", bare+"/?name=echo"); r.status != 200 || !bytes.Contains(r.body, []byte("lookups are not available")) {
		t.Errorf("no Lookup: %d\n%s", r.status, r.body)
	}
}

func byID(n *html.Node, id string) *html.Node {
	if n.Type == html.ElementNode && attr(n, "id") == id {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := byID(c, id); f != nil {
			return f
		}
	}
	return nil
}

// TestPageEvents: /events sends the directory as the page draws it, after
// each change: at once, then again with the change's chains, under an id
// that is the serial. A page that has a serial is not sent it again.
func TestPageEvents(t *testing.T) {
	reg := pageRegistry(t)
	base := pageServer(t, reg)
	serial := reg.Snapshot().Serial()

	open := func(query string, hdr ...string) (*bufio.Reader, func()) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/events"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
			t.Fatalf("/events%s: %d %q", query, resp.StatusCode, ct)
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}

	// A fresh stream starts with the directory now, drawn with its chains.
	br, done := open("")
	id, ev, data := readPageEvent(t, br)
	if ev != "directory" {
		t.Fatalf("first event %q", ev)
	}
	if id != "" && id != strconv.Itoa(int(serial)) {
		t.Errorf("first event's id %q, want none or %d", id, serial)
	}
	if id == "" {
		id, _, data = readPageEvent(t, br)
	}
	if id != strconv.Itoa(int(serial)) {
		t.Fatalf("the chains' event has id %q, want %d", id, serial)
	}
	checkDirectory(t, "/events", []byte(data), reg)
	done()

	// A page loaded at this serial hears of the next change only; so does
	// a browser reconnecting with its last id.
	for _, reconnect := range []bool{false, true} {
		have := strconv.Itoa(int(serial))
		query, hdr := "?serial="+have, []string(nil)
		if reconnect {
			// The URL's serial is the page's, older than the stream's id.
			query, hdr = "?serial=1", []string{"Last-Event-ID", have}
		}
		br, done := open(query, hdr...)
		got := make(chan string, 1)
		go func() {
			var ids []string
			for {
				id, _, data := readPageEvent(t, br)
				ids = append(ids, id)
				if id == "end" {
					got <- strings.Join(ids, ",")
					return
				}
				if id != "" {
					if !strings.Contains(data, `data-id="daytime-tcp-h-127-0-0-1-13"`) {
						t.Errorf("the change's directory lacks the new instance")
					}
					got <- strings.Join(ids, ",")
					return
				}
			}
		}()
		select {
		case ids := <-got:
			t.Fatalf("%s %q: events %q before any change", query, hdr, ids)
		case <-time.After(300 * time.Millisecond):
		}
		inst := registry.Instance{Service: "daytime", Proto: "tcp", Host: "h-127-0-0-1", Port: 13}
		if _, err := reg.Register(inst, &registry.Host{Name: "h-127-0-0-1", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Auto: true}); err != nil {
			t.Fatal(err)
		}
		s := strconv.Itoa(int(reg.Snapshot().Serial()))
		if ids := <-got; ids != ","+s && ids != s {
			t.Errorf("%s %q: events with ids %q after the change to serial %s", query, hdr, ids, s)
		}
		done()
		if err := reg.Deregister("daytime-tcp-h-127-0-0-1-13"); err != nil {
			t.Fatal(err)
		}
		serial = reg.Snapshot().Serial()
	}
}

// readPageEvent reads one event whole: its id, type and data lines
// joined with LF, as a browser does.
func readPageEvent(t *testing.T, br *bufio.Reader) (id, event, data string) {
	t.Helper()
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Errorf("reading the event stream: %v", err)
			return "end", "", ""
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && lines != nil:
			return id, event, strings.Join(lines, "\n")
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			lines = append(lines, line[len("data: "):])
		}
	}
}

// TestWriteEventData: every line break a name may hold becomes its own
// data line, so that no data can end the event or start a field.
func TestWriteEventData(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<p>a</p>", "data: <p>a</p>\n\n"},
		{"a\nb", "data: a\ndata: b\n\n"},
		{"a\r\nb", "data: a\ndata: b\n\n"},
		{"a\rb", "data: a\ndata: b\n\n"},
		{"a\r\rid: 9\n\nevent: x", "data: a\ndata: \ndata: id: 9\ndata: \ndata: event: x\n\n"},
		{"a\n", "data: a\n\n"},
	} {
		var b bytes.Buffer
		writeEventData(&b, []byte(tc.in))
		if b.String() != tc.want {
			t.Errorf("writeEventData(%q) = %q, want %q", tc.in, b.String(), tc.want)
		}
	}
}
