package web

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/mail"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowser loads the page in a real headless chromium: the directory
// shows echo with its port, a service registered afterwards appears without
// a reload, and a lookup through the box draws its steps to the process. Screenshots go to
// $ARTIFACTS/web.png (whole page) and web-phone.png (a phone's width).
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required under CI: %v", err)
		}
		t.Skipf("chromium not installed: %v", err)
	}
	if testing.Short() {
		t.Skip("starts a browser")
	}
	artifacts := os.Getenv("ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	reg := registry.New(1)
	lo := netip.MustParseAddr("127.0.0.1")
	served := registry.TXT{"served-by=annuaire", "pid=4242"}
	for _, r := range []struct {
		inst registry.Instance
		addr netip.Addr
	}{
		{registry.Instance{Service: "echo", Proto: "tcp", Host: "h-127-0-0-1", Port: 7007, TXT: served}, lo},
		{registry.Instance{Service: "echo", Proto: "udp", Host: "h-127-0-0-1", Port: 7007, TXT: served}, lo},
		{registry.Instance{Service: "smtp", Proto: "tcp", Host: "h-127-0-0-1", Port: 2525, Check: &registry.Check{Type: "tcp", Target: "127.0.0.1:2525", Interval: registry.Duration(time.Second)}}, lo},
		{registry.Instance{Service: "telnet", Proto: "tcp", Host: "lab-2", Port: 2323, Health: registry.Critical}, netip.MustParseAddr("192.0.2.23")},
	} {
		r.inst.TTL = registry.DefaultTTL
		h := &registry.Host{Name: r.inst.Host, Addrs: []netip.Addr{r.addr}, TTL: registry.DefaultTTL, Auto: true}
		if _, err := reg.Register(r.inst, h); err != nil {
			t.Fatal(err)
		}
	}
	// The chains come from the client's own Lookup asking annuaire's own
	// DNS server about this registry, as `annuaire serve` wires them: the
	// page draws what `annuaire lookup NAME --json` prints.
	dnsAddr := startAuthority(t, reg)
	cached := &resolver.Resolver{Server: dnsAddr}
	fresh := &resolver.Resolver{Server: dnsAddr, NoCache: true}
	s := &Server{
		Registry:    reg,
		Token:       testToken,
		Lookup:      cached.Lookup,
		ChainLookup: fresh.Lookup,
		Messages: func() []mail.Message {
			return []mail.Message{{From: "student@lab.example", To: []string{"teacher@svc.internal"}, Subject: "TP sockets", Body: "Hello from swaks"}}
		},
	}
	base := startServer(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	const (
		echoCard  = `article.service[data-type="_echo._tcp"]`
		echoChain = echoCard + ` ol.chain`
	)
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1200, 900),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(echoCard+` tr[data-id="echo-tcp-h-127-0-0-1-7007"]`),
		chromedp.WaitVisible(echoChain+` .box.proc`),
		// The script has opened the event stream.
		chromedp.WaitVisible(`#status.live`),
	); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	// The directory's row, from the registry.
	text, err := chromedp.Run(bctx, chromedp.Text(echoCard+` table.instances`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"h-127-0-0-1", "127.0.0.1", "7007", "passing"} {
		if !strings.Contains(text, want) {
			t.Errorf("echo's directory rows lack %q:\n%s", want, text)
		}
	}
	// The picture, from the Lookup: the SRV question asked of the real
	// server, its answer with the TTL, the address and the port it gave,
	// and the process the registry says serves there.
	text, err = chromedp.Run(bctx, chromedp.Text(echoChain))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"_echo._tcp.svc.internal. SRV",
		"0 0 7007 h-127-0-0-1.svc.internal.",
		"asked " + dnsAddr,
		"NOERROR",
		"ttl 10",
		"h-127-0-0-1.svc.internal. A",
		"127.0.0.1",
		"7007",
		"annuaire echo (pid 4242)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("echo's chain lacks %q:\n%s", want, text)
		}
	}
	// echo/udp is its own chain, looked up as `annuaire lookup echo/udp`.
	text, err = chromedp.Run(bctx, chromedp.Text(`article.service[data-type="_echo._udp"] ol.chain`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "_echo._udp.svc.internal. SRV") {
		t.Errorf("echo/udp's chain lacks its SRV question:\n%s", text)
	}
	// telnet's only instance is critical: DNS leaves it out, the Lookup
	// fails, and the picture ends at the failing step, in red, with its
	// rcode.
	text, err = chromedp.Run(bctx, chromedp.Text(`article.service[data-type="_telnet._tcp"] ol.chain .box.error`))
	if err != nil {
		t.Fatalf("telnet's failing step: %v", err)
	}
	if !strings.Contains(text, "NODATA") {
		t.Errorf("telnet's failing step lacks its rcode:\n%s", text)
	}

	// A registration through the API shows up without a reload, with a
	// chain the Lookup found after the change.
	register(t, base, `{"name":"http","port":8080,"addresses":["127.0.0.1"]}`)
	const httpCard = `article.service[data-type="_http._tcp"]`
	if err := chromedp.Do(bctx,
		chromedp.WaitVisible(httpCard+` tr[data-id="http-tcp-h-127-0-0-1-8080"]`),
		chromedp.WaitVisible(httpCard+` ol.chain .box.proc`),
	); err != nil {
		t.Fatalf("the new service did not appear: %v", err)
	}
	text, err = chromedp.Run(bctx, chromedp.Text(httpCard+` ol.chain`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "_http._tcp.svc.internal. SRV") || !strings.Contains(text, "8080") {
		t.Errorf("http's chain:\n%s", text)
	}

	if err := chromedp.Do(bctx,
		chromedp.SendKeys("#lookup-name", "echo"),
		chromedp.Click(`#lookup-form button`),
		chromedp.WaitVisible(`#lookup-result table.candidates`),
		chromedp.WaitVisible(`#lookup-result .box.proc`),
		chromedp.WaitVisible(`#mail li`),
	); err != nil {
		t.Fatalf("lookup box: %v", err)
	}
	text, err = chromedp.Run(bctx, chromedp.Text(`#lookup-result`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SRV query", "_echo._tcp.svc.internal. SRV", "0 0 7007 h-127-0-0-1.svc.internal.", "ttl 10", "address query", "127.0.0.1", "7007",
		"process", "annuaire echo (pid 4242)"} {
		// Text is innerText: labels come out as CSS capitalises them.
		if !strings.Contains(strings.ToLower(text), strings.ToLower(want)) {
			t.Errorf("lookup result lacks %q:\n%s", want, text)
		}
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifacts, "web.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)

	// On a phone the chain turns vertical and nothing overflows sideways.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	// Every element must fit the layout viewport, which the page's
	// viewport meta sets to the device's width.
	wide, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`(() => {
		const w = document.documentElement.clientWidth, out = [];
		for (const e of document.querySelectorAll("body *")) {
			const r = e.getBoundingClientRect();
			if (r.width > 0 && r.right > w + 1) out.push(e.tagName.toLowerCase() + "." + e.className + " right=" + Math.round(r.right) + " viewport=" + w);
		}
		return out.slice(0, 10);
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(wide) > 0 {
		t.Errorf("wider than a 390-pixel phone screen:\n%s", strings.Join(wide, "\n"))
	}
	// What the phone shows first, then the whole page.
	shot, err = chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifacts, "web-phone-top.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	shot, err = chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifacts, "web-phone.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startAuthority serves reg over DNS (UDP) on a loopback port and returns
// its address; the server stops when the test ends.
func startAuthority(t testing.TB, reg *registry.Registry) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &authority.Server{Registry: reg}
	done := make(chan error, 1)
	go func() { done <- srv.ServePacket(context.Background(), pc) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	// The socket is bound: questions wait in it until ServePacket reads.
	return pc.LocalAddr().String()
}
