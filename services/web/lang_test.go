package web

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/resolver"
)

func TestPickLang(t *testing.T) {
	for _, tc := range []struct {
		query, accept string
		want          lang
	}{
		{"", "", english},
		{"", "fr", french},
		{"", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", french}, // Firefox in French
		{"", "en-US,en;q=0.9,fr;q=0.8", english},
		{"", "de-DE, fr;q=0.5", french}, // German is not spoken: the next
		{"", "de", english},
		{"", "FR-ca", french},
		{"", "en;q=0.4, fr;q=0.6", french},
		{"", "fr;q=0", english}, // q=0: not acceptable (RFC 9110 section 12.4.2)
		{"", "fr;q=bad", english},
		{"lang=fr", "en", french},
		{"lang=en", "fr", english},
		{"lang=xx", "fr", french},
	} {
		r := httptest.NewRequest("GET", "/?"+tc.query, nil)
		if tc.accept != "" {
			r.Header.Set("Accept-Language", tc.accept)
		}
		if got := pickLang(r); got != tc.want {
			t.Errorf("?%s, Accept-Language %q: %v, want %v", tc.query, tc.accept, got, tc.want)
		}
	}
}

// Every text the page says through t or f, in page.html and in the Go
// that draws it, has its French.
func TestFrenchComplete(t *testing.T) {
	literal := regexp.MustCompile(`\{\{-?\s*[tf] ("(?:[^"\\]|\\.)*")|\bl\.[tf]\(("(?:[^"\\]|\\.)*")`)
	n := 0
	for _, file := range []string{"page.html", "draw.go", "page.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			q := m[1] + m[2]
			text, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("%s: %s: %v", file, q, err)
			}
			n++
			if _, ok := frenchText[text]; !ok {
				t.Errorf("%s: no French for %q", file, text)
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d texts found: the pattern misses them", n)
	}
	for _, s := range []string{"srv", "mx", "address"} {
		if _, ok := frenchText[queryLabels[s]]; !ok {
			t.Errorf("no French for %q", queryLabels[s])
		}
	}
	for _, h := range []string{"passing", "critical"} {
		if _, ok := frenchText[h]; !ok {
			t.Errorf("no French for the health %q", h)
		}
	}
}

// The page in French, as curl gets it with Accept-Language: fr or
// ?lang=fr: labels, the chain's captions, the lookup box, the class view.
func TestPageFrench(t *testing.T) {
	curl := testenv.NeedTool(t, "curl")
	s := &Server{
		Lookup:      func(ctx context.Context, name string) (*resolver.Chain, error) { return fakeTrace(name), nil },
		ChainLookup: func(ctx context.Context, name string) (*resolver.Chain, error) { return fakeTrace(name), nil },
	}
	base, alice, _ := studentServer(t, s)
	if r := call(t, "POST", base+"/api/services", alice, `{"name":"echo-alice","port":4000,"addresses":["127.0.0.2"]}`); r.status != http.StatusCreated {
		t.Fatalf("alice registers: %d %s", r.status, r.body)
	}
	get := func(args ...string) (headers, body string) {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "-D", "-", "--fail"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		h, b, _ := strings.Cut(string(out), "\r\n\r\n")
		return h, b
	}
	french := []string{
		`<html lang="fr">`, "<h2 id=\"lookup-title\">Suivre un nom</h2>", "Annuaire", "Un client demande un service par son <b>nom symbolique</b>",
		"<th>propriétaire</th>", "<td data-label=\"propriétaire\">alice</td>", "en service", "enseignant",
		"<h2 id=\"class-title\">La classe</h2>", `<tr data-owner="alice">`, "echo-alice/tcp → 127.0.0.2:4000", `<tr data-owner="bob">`, "aucun service",
		"requête SRV", "demandé à 127.0.0.1:1053", "nom symbolique", "de l&#39;enregistrement SRV · désigne le processus",
		`data-live="en direct : la page suit l&#39;annuaire à mesure qu&#39;il change"`,
	}
	for _, args := range [][]string{
		{"-H", "Accept-Language: fr-FR,fr;q=0.9,en;q=0.5", base + "/"},
		{base + "/?lang=fr"},
	} {
		h, body := get(args...)
		if !strings.Contains(h, "Content-Language: fr") || !strings.Contains(h, "Vary: Accept-Language") {
			t.Errorf("curl %v: headers\n%s", args, h)
		}
		for _, want := range french {
			if !strings.Contains(body, want) {
				t.Errorf("curl %v: no %q", args, want)
			}
		}
		for _, english := range []string{"Follow a name", ">passing<", "passing</span>", "SRV query", "Each service type"} {
			if strings.Contains(body, english) {
				t.Errorf("curl %v: English %q left", args, english)
			}
		}
	}
	// The lookup box's result, without script: the form sends lang.
	_, body := get(base + "/?name=echo&lang=fr")
	for _, want := range []string{`<input type="hidden" name="lang" value="fr">`, "Nom <code>echo</code> → service <code>echo/tcp</code> dans la zone", "Où le client se connecte, dans l&#39;ordre", "<th>priorité</th>"} {
		if !strings.Contains(body, want) {
			t.Errorf("lookup box: no %q", want)
		}
	}
	// The live page's stream speaks the page's language.
	resp, err := http.Get(base + "/events?serial=0&lang=fr")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, ev, data := readPageEvent(t, bufio.NewReader(resp.Body)); ev != "directory" || !strings.Contains(data, "La classe") || !strings.Contains(data, "requête SRV") {
		t.Errorf("/events?lang=fr: %s %.300s", ev, data)
	}

	// English stays the default, and ?lang=en beats the browser's.
	for _, args := range [][]string{{base + "/"}, {"-H", "Accept-Language: fr", base + "/?lang=en"}} {
		h, body := get(args...)
		if !strings.Contains(h, "Content-Language: en") || !strings.Contains(body, "Follow a name") || !strings.Contains(body, "<h2 id=\"class-title\">Class</h2>") {
			t.Errorf("curl %v: not English", args)
		}
	}
}
