package web

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowser loads the page in a real headless chromium: the directory
// shows echo with its port, a service registered afterwards appears without
// a reload, and a lookup through the box draws its steps. Screenshots go to
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
	for _, r := range []struct {
		inst registry.Instance
		addr netip.Addr
	}{
		{registry.Instance{Service: "echo", Proto: "tcp", Host: "h-127-0-0-1", Port: 7007}, lo},
		{registry.Instance{Service: "echo", Proto: "udp", Host: "h-127-0-0-1", Port: 7007}, lo},
		{registry.Instance{Service: "smtp", Proto: "tcp", Host: "h-127-0-0-1", Port: 2525, Check: &registry.Check{Type: "tcp", Target: "127.0.0.1:2525", Interval: registry.Duration(time.Second)}}, lo},
		{registry.Instance{Service: "telnet", Proto: "tcp", Host: "lab-2", Port: 2323, Health: registry.Critical}, netip.MustParseAddr("192.0.2.23")},
	} {
		h := &registry.Host{Name: r.inst.Host, Addrs: []netip.Addr{r.addr}, Auto: true}
		if _, err := reg.Register(r.inst, h); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{
		Registry: reg,
		Token:    testToken,
		Lookup:   func(ctx context.Context, name string) (any, error) { return fakeTrace(name), nil },
		Messages: func() any {
			return []map[string]any{{"from": "student@lab.example", "to": []string{"teacher@svc.internal"}, "subject": "TP sockets", "body": "Hello from swaks"}}
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

	const echoCard = `article.service[data-id="echo-tcp-h-127-0-0-1-7007"]`
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1200, 900),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(echoCard),
	); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	text, err := chromedp.Run(bctx, chromedp.Text(echoCard))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"echo", "7007", "127.0.0.1", "_echo._tcp.svc.internal. SRV 0 0 7007 h-127-0-0-1.svc.internal.", "passing"} {
		if !strings.Contains(text, want) {
			t.Errorf("echo's card lacks %q:\n%s", want, text)
		}
	}

	// A registration through the API shows up without a reload.
	register(t, base, `{"name":"http","port":8080,"addresses":["127.0.0.1"]}`)
	if err := chromedp.Do(bctx, chromedp.WaitVisible(`article.service[data-id="http-tcp-h-127-0-0-1-8080"]`)); err != nil {
		t.Fatalf("the new service did not appear: %v", err)
	}

	if err := chromedp.Do(bctx,
		chromedp.SendKeys("#lookup-name", "echo"),
		chromedp.Click(`#lookup-form button`),
		chromedp.WaitVisible(`#lookup-result table.candidates`),
		chromedp.WaitVisible(`#mail li`),
	); err != nil {
		t.Fatalf("lookup box: %v", err)
	}
	text, err = chromedp.Run(bctx, chromedp.Text(`#lookup-result`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SRV query", "_echo._tcp.svc.internal. 10 IN SRV 0 0 7007", "address query", "cached", "127.0.0.1", "7007"} {
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
