package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/services/web"
)

// pyRR is a record as testdata/dnsbytes.py reads and writes it: names
// and character-strings as hex of their raw bytes.
type pyRR struct {
	Name    []string `json:"name"`
	TTL     uint32   `json:"ttl"`
	Type    string   `json:"type"`
	Strings []string `json:"strings,omitempty"`
	SRV     []any    `json:"srv,omitempty"`
	Target  []string `json:"target,omitempty"`
	Text    string   `json:"text,omitempty"`
}

type pyResult struct {
	Op     string `json:"op"`
	Rcode  string `json:"rcode"`
	Answer []pyRR `json:"answer"`
	RRs    []pyRR `json:"rrs"`
}

func hexAll(raw ...string) []string {
	out := make([]string, len(raw))
	for i, s := range raw {
		out[i] = hex.EncodeToString([]byte(s))
	}
	return out
}

// dnspython runs testdata/dnsbytes.py's operations against server.
func dnspython(t *testing.T, py, server, keyName, secret string, ops ...map[string]any) []pyResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	var p int
	fmt.Sscan(port, &p)
	in, _ := json.Marshal(map[string]any{"server": host, "port": p, "zone": "svc.internal.", "keyname": keyName, "secret": secret, "ops": ops})
	cmd := exec.Command(py, "testdata/dnsbytes.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dnsbytes.py: %v\n%s", err, stderr.String())
	}
	var res []pyResult
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r pyResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("dnsbytes.py said %q: %v", line, err)
		}
		res = append(res, r)
	}
	return res
}

// A txtWant is a TXT record that must come back exactly: its owner's
// labels below the zone and its strings, raw.
type txtWant struct {
	labels  []string
	ttl     uint32
	strings []string
	dig     string // what dig +short prints, written by hand
}

// TestNamesAndBytes registers TXT records, names of any bytes, the
// instance "Imprimante Salle 2.3 (étage)" and subtypes through nsupdate,
// dnspython's UPDATE and the HTTP API, and reads them back with dig and
// dnspython, by query, browse, AXFR and IXFR, from annuaire before and
// after a restart, with `annuaire lookup`, from its export (which
// named-checkzone and kzonecheck accept) and from BIND as a secondary:
// every byte comes back, in order; names differing in a non-ASCII byte
// stay apart, and only ASCII case folds (RFC 1035 section 3.3.14, RFC
// 4343, RFC 6763 sections 4.3, 6 and 7.1, RFC 2181 section 8).
func TestNamesAndBytes(t *testing.T) {
	nsupdate := testenv.NeedTool(t, "nsupdate")
	named := testenv.NeedTool(t, "named")
	checkzone := testenv.NeedTool(t, "named-checkzone")
	kzonecheck := testenv.NeedTool(t, "kzonecheck")
	testenv.NeedTool(t, "dig")
	py := testenv.Python(t, "dns.resolver", "dns.update", "dns.tsigkeyring", "dns.query")

	const keyName, secret = "ddns", "bmFtZXMgYW5kIGJ5dGVzIGtlcHQgZXhhY3RseSEhIQ=="
	key := "hmac-sha256:" + keyName + ":" + secret
	namedPort := testenv.FreePort(t)
	namedAddr := fmt.Sprintf("127.0.0.1:%d", namedPort)
	flags := []string{"--tsig", key, "--notify", namedAddr}
	a := startServe(t, flags...)

	// 1. nsupdate, as a user types it.
	host, port, _ := net.SplitHostPort(a.dns)
	script := "server " + host + " " + port + "\nzone svc.internal.\n" + `update add printer.svc.internal. 60 A 127.0.0.9
update add Imp._ipp._tcp.svc.internal. 60 SRV 0 0 631 printer.svc.internal.
update add Imp._ipp._tcp.svc.internal. 60 TXT "txtvers=1" "utf=café" "q=say \"hi\"" "path=C:\\dir" "bin=\000\255" "duplex"
update add café._x._tcp.svc.internal. 60 SRV 0 0 1 printer.svc.internal.
update add CAFÉ._x._tcp.svc.internal. 60 SRV 0 0 2 printer.svc.internal.
update add bin\254._x._tcp.svc.internal. 60 SRV 0 0 3 printer.svc.internal.
update add zero.svc.internal. 0 A 192.0.2.9
update add _zero._tcp.svc.internal. 0 SRV 0 0 9 zero.svc.internal.
send
`
	cmd := exec.Command(nsupdate, "-y", key)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate: %v\n%s", err, out)
	}

	// 2. dnspython's UPDATE: every byte value, and an instance name with
	// spaces, a dot and UTF-8.
	var lo, hi []byte
	for c := range 256 {
		if c < 128 {
			lo = append(lo, byte(c))
		} else {
			hi = append(hi, byte(c))
		}
	}
	const imprimante = "Imprimante Salle 2.3 (étage)"
	pyTXT := []string{"txtvers=1", "lo=" + string(lo), "hi=" + string(hi)}
	res := dnspython(t, py, a.dns, keyName, secret, map[string]any{"op": "update", "add": []pyRR{
		{Name: hexAll("Py", "_ipp", "_tcp"), TTL: 60, Type: "SRV", SRV: []any{0, 0, 633, hexAll("printer")}},
		{Name: hexAll("Py", "_ipp", "_tcp"), TTL: 60, Type: "TXT", Strings: hexAll(pyTXT...)},
		{Name: hexAll(imprimante, "_printer", "_tcp"), TTL: 60, Type: "SRV", SRV: []any{0, 0, 515, hexAll("printer")}},
		{Name: hexAll(imprimante, "_printer", "_tcp"), TTL: 60, Type: "TXT", Strings: hexAll(`note=étage "2"`)},
		{Name: hexAll("_color", "_sub", "_printer", "_tcp"), TTL: 60, Type: "PTR", Target: hexAll(imprimante, "_printer", "_tcp")},
	}})
	if res[0].Rcode != "NOERROR" {
		t.Fatalf("dnspython UPDATE: %s", res[0].Rcode)
	}

	// 3. The HTTP API: the list form of TXT, a string that is not UTF-8
	// as base64, a TTL of 0.
	body, _ := json.Marshal(web.Registration{Name: "ipp", Port: new(634), Host: "printer", Instance: imprimante, TTL: new(0), Subtypes: []registry.Octets{"printer"},
		TXT: registry.TXT{"txtvers=1", "utf=café", "bin=\x00\xff", "duplex", "paper=A4"}})
	if !bytes.Contains(body, []byte(`{"base64":"YmluPQD/"}`)) {
		t.Fatalf("the request does not carry the binary string as base64: %s", body)
	}
	req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", bytes.NewReader(body))
	token, err := web.ReadToken(a.data)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var svc web.Service
	json.NewDecoder(resp.Body).Decode(&svc)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || svc.Instance != imprimante || !slices.Equal(svc.TXT, registry.TXT{"txtvers=1", "utf=café", "bin=\x00\xff", "duplex", "paper=A4"}) || svc.TTL != 0 {
		t.Fatalf("API registration: %d %+v", resp.StatusCode, svc)
	}
	// The API lists each label as UPDATE sent it: bin\254, not UTF-8, as
	// {"base64": ...} (a JSON string would carry U+FFFD instead).
	resp, err = http.Get("http://" + a.web + "/api/services")
	if err != nil {
		t.Fatal(err)
	}
	var list []web.Service
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	labels := map[uint16]registry.Octets{}
	for _, v := range list {
		if v.Name == "x" {
			labels[v.Port] = v.Instance
		}
	}
	if want := map[uint16]registry.Octets{1: "café", 2: "CAFÉ", 3: "bin\xfe"}; !maps.Equal(labels, want) {
		t.Errorf("the API's _x._tcp labels: %#v, want %#v", labels, want)
	}

	txts := []txtWant{
		{[]string{"Imp", "_ipp", "_tcp"}, 60, []string{"txtvers=1", "utf=café", `q=say "hi"`, `path=C:\dir`, "bin=\x00\xff", "duplex"},
			`"txtvers=1" "utf=caf\195\169" "q=say \"hi\"" "path=C:\\dir" "bin=\000\255" "duplex"`},
		{[]string{"Py", "_ipp", "_tcp"}, 60, pyTXT, ""},
		{[]string{imprimante, "_printer", "_tcp"}, 60, []string{`note=étage "2"`}, `"note=\195\169tage \"2\""`},
		{[]string{imprimante, "_ipp", "_tcp"}, 0, []string{"txtvers=1", "utf=café", "bin=\x00\xff", "duplex", "paper=A4"},
			`"txtvers=1" "utf=caf\195\169" "bin=\000\255" "duplex" "paper=A4"`},
	}
	srvs := []struct {
		labels []string
		port   int // 0: NXDOMAIN
		ttl    uint32
	}{
		{[]string{"café", "_x", "_tcp"}, 1, 60}, {[]string{"CAFÉ", "_x", "_tcp"}, 2, 60}, {[]string{"CAFé", "_x", "_tcp"}, 1, 60},
		{[]string{"bin\xfe", "_x", "_tcp"}, 3, 60}, {[]string{"BIN\xfe", "_x", "_tcp"}, 3, 60}, {[]string{"bin\xff", "_x", "_tcp"}, 0, 0},
		{[]string{"bin\xc0", "_x", "_tcp"}, 0, 0}, {[]string{"_zero", "_tcp"}, 9, 0}, {[]string{imprimante, "_ipp", "_tcp"}, 634, 0},
	}

	// Browsing (RFC 6763 section 4) and browsing a subtype (section 7.1):
	// each PTR RRset and the instances it must name.
	browse := []struct {
		labels  []string
		targets [][]string
	}{
		{[]string{"_ipp", "_tcp"}, [][]string{{"Imp", "_ipp", "_tcp"}, {"Py", "_ipp", "_tcp"}, {imprimante, "_ipp", "_tcp"}}},
		{[]string{"_printer", "_sub", "_ipp", "_tcp"}, [][]string{{imprimante, "_ipp", "_tcp"}}},
		{[]string{"_printer", "_tcp"}, [][]string{{imprimante, "_printer", "_tcp"}}},
		{[]string{"_color", "_sub", "_printer", "_tcp"}, [][]string{{imprimante, "_printer", "_tcp"}}},
	}
	check := func(t *testing.T, server string, transfers bool) {
		var ops []map[string]any
		for _, b := range browse {
			ops = append(ops, map[string]any{"op": "query", "name": hexAll(b.labels...), "type": "PTR"})
		}
		for _, w := range txts {
			ops = append(ops, map[string]any{"op": "query", "name": hexAll(w.labels...), "type": "TXT"})
		}
		for _, s := range srvs {
			ops = append(ops, map[string]any{"op": "query", "name": hexAll(s.labels...), "type": "SRV"})
		}
		if transfers {
			ops = append(ops, map[string]any{"op": "xfr", "type": "AXFR"})
		}
		res := dnspython(t, py, server, keyName, secret, ops...)
		for i, b := range browse {
			var got, want []string
			for _, rr := range res[i].Answer {
				got = append(got, strings.Join(rr.Target, "."))
			}
			for _, l := range b.targets {
				want = append(want, strings.Join(hexAll(l...), "."))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("dnspython browse %q: %q, want %q", b.labels, got, want)
			}
		}
		res = res[len(browse):]
		for i, w := range txts {
			if a := res[i].Answer; len(a) != 1 || !slices.Equal(a[0].Strings, hexAll(w.strings...)) || a[0].TTL != w.ttl {
				t.Errorf("dnspython TXT %q: %+v, want %q ttl %d", w.labels, res[i], w.strings, w.ttl)
			}
		}
		for i, s := range srvs {
			r := res[len(txts)+i]
			switch {
			case s.port == 0 && r.Rcode != "NXDOMAIN":
				t.Errorf("dnspython SRV %q: %+v, want NXDOMAIN", s.labels, r)
			case s.port != 0 && (len(r.Answer) != 1 || r.Answer[0].SRV[2] != float64(s.port) || r.Answer[0].TTL != s.ttl ||
				!slices.Equal(foldHex(r.Answer[0].Name), foldHex(hexAll(s.labels...)))):
				t.Errorf("dnspython SRV %q: %+v, want port %d ttl %d", s.labels, r, s.port, s.ttl)
			}
		}
		if transfers {
			axfr := res[len(res)-1].RRs
			for _, w := range txts {
				if !slices.ContainsFunc(axfr, func(rr pyRR) bool {
					return rr.Type == "TXT" && slices.Equal(rr.Name, hexAll(w.labels...)) && slices.Equal(rr.Strings, hexAll(w.strings...))
				}) {
					t.Errorf("dnspython AXFR lacks TXT %q %q", w.labels, w.strings)
				}
			}
			if !slices.ContainsFunc(axfr, func(rr pyRR) bool {
				return rr.Type == "PTR" && slices.Equal(rr.Name, hexAll("_x", "_tcp")) && slices.Equal(rr.Target, hexAll("bin\xfe", "_x", "_tcp"))
			}) {
				t.Errorf("dnspython AXFR lacks the PTR to bin\\254._x._tcp")
			}
		}
		for _, w := range txts {
			if w.dig == "" {
				continue
			}
			name := ""
			for _, l := range w.labels {
				name += escapeForDig(l) + "."
			}
			if got := strings.TrimSpace(dig(t, server, "+short", name+"svc.internal.", "TXT")); got != w.dig {
				t.Errorf("dig %s TXT:\n%s\nwant\n%s", name, got, w.dig)
			}
		}
	}
	t.Run("annuaire", func(t *testing.T) { check(t, a.dns, true) })

	// A restart reads it all back from the journal.
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("serve exited with %d", code)
	}
	a = startServeOn(t, a.data, flags...)
	t.Run("after a restart", func(t *testing.T) { check(t, a.dns, true) })

	// The CLI resolves the instance by its name, the dot escaped as a user
	// types it, and shows its TXT as the bytes served.
	out, errs, code := runCLI(t, nil, "lookup", "--server", a.dns, "--json", `Imprimante Salle 2\.3 (étage)._ipp._tcp`)
	var chain struct {
		TXT        registry.TXT `json:"txt"`
		Candidates []struct {
			Port int `json:"port"`
		} `json:"candidates"`
	}
	if err := json.Unmarshal([]byte(out), &chain); code != 0 || err != nil || len(chain.Candidates) != 1 || chain.Candidates[0].Port != 634 ||
		!slices.Equal(chain.TXT, registry.TXT{"txtvers=1", "utf=café", "bin=\x00\xff", "duplex", "paper=A4"}) {
		t.Errorf("annuaire lookup --json: %d %v\n%s%s", code, err, out, errs)
	}

	// The export, checked by two zone checkers, parsed back.
	out, errs, code = runCLI(t, nil, "export", "--server", a.dns, "--tsig", key)
	if code != 0 {
		t.Fatalf("export: %d %s", code, errs)
	}
	file := filepath.Join(t.TempDir(), "svc.internal.zone")
	os.WriteFile(file, []byte(out), 0o600)
	if out, err := exec.Command(checkzone, "svc.internal", file).CombinedOutput(); err != nil {
		t.Errorf("named-checkzone: %v\n%s", err, out)
	}
	if out, err := exec.Command(kzonecheck, "-o", "svc.internal", file).CombinedOutput(); err != nil {
		t.Errorf("kzonecheck: %v\n%s", err, out)
	}
	exported := map[string][]string{}
	zp := dns.NewZoneParser(strings.NewReader(out), "svc.internal.", file)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if txt, ok := rr.(*dns.TXT); ok {
			exported[wireName(t, txt.Hdr.Name)] = rawTXT(t, txt)
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("the export does not parse: %v", err)
	}
	for _, w := range txts {
		if got := exported[wireName(t, presentLabels(w.labels)+"svc.internal.")]; !slices.Equal(got, w.strings) {
			t.Errorf("export TXT %q: %q, want %q", w.labels, got, w.strings)
		}
	}

	// BIND as a secondary carries the same bytes.
	dir := t.TempDir()
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { }; // no rndc channel: it would take port 953
key "%[3]s" { algorithm hmac-sha256; secret "%[4]s"; };
server 127.0.0.1 { keys { %[3]s; }; };
zone "svc.internal" {
	type secondary;
	primaries port %[5]s { 127.0.0.1 key %[3]s; };
	allow-notify { 127.0.0.1; };
	file "svc.internal.db";
};
`, dir, namedPort, keyName, secret, port2(a.dns))
	os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o600)
	bind := exec.Command(named, "-g", "-c", filepath.Join(dir, "named.conf"))
	logFile, err := os.Create(filepath.Join(dir, "named.log"))
	if err != nil {
		t.Fatal(err)
	}
	bind.Stdout, bind.Stderr = logFile, logFile
	bindLog := func() string {
		b, _ := os.ReadFile(logFile.Name())
		return string(b)
	}
	if err := bind.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bind.Process.Signal(syscall.SIGTERM)
		bind.Wait()
		logFile.Close()
		if t.Failed() {
			t.Logf("named:\n%s", bindLog())
		}
	})
	serial := func(server string) string {
		m := new(dns.Msg)
		m.SetQuestion("svc.internal.", dns.TypeSOA)
		r, err := dns.Exchange(m, server)
		if err != nil || len(r.Answer) != 1 {
			return "" // named may not listen yet
		}
		return fmt.Sprint(r.Answer[0].(*dns.SOA).Serial)
	}
	within := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("named did not %s", what)
			}
		}
	}
	within("load the zone", func() bool { return serial(namedAddr) == serial(a.dns) })
	t.Run("BIND secondary", func(t *testing.T) { check(t, namedAddr, false) })

	// An IXFR carries a change's strings exactly, to dnspython and to BIND
	// (NOTIFY, then IXFR).
	before := serial(a.dns)
	res = dnspython(t, py, a.dns, keyName, secret, map[string]any{"op": "update", "add": []pyRR{
		{Name: hexAll("Py", "_ipp", "_tcp"), TTL: 60, Type: "TXT", Strings: hexAll("TXTVERS=2", "new")},
	}})
	if res[0].Rcode != "NOERROR" {
		t.Fatalf("dnspython UPDATE: %s", res[0].Rcode)
	}
	changed := []string{"TXTVERS=2", "lo=" + string(lo), "hi=" + string(hi), "new"}
	var n int
	fmt.Sscan(before, &n)
	ixfr := dnspython(t, py, a.dns, keyName, secret, map[string]any{"op": "xfr", "type": "IXFR", "serial": n})[0].RRs
	var py2 []pyRR
	for _, rr := range ixfr {
		if rr.Type == "TXT" && slices.Equal(rr.Name, hexAll("Py", "_ipp", "_tcp")) {
			py2 = append(py2, rr)
		}
	}
	if len(py2) != 2 || !slices.Equal(py2[0].Strings, hexAll(pyTXT...)) || !slices.Equal(py2[1].Strings, hexAll(changed...)) {
		t.Errorf("IXFR from %s: the TXT of Py deleted then added: %+v", before, py2)
	}
	txts[1].strings = changed
	within("follow the change", func() bool { return serial(namedAddr) == serial(a.dns) })
	// dnspython's IXFR, then named's.
	if n := strings.Count(a.stderr.String(), "type=IXFR zone=svc.internal. key=ddns. from_serial="+before); n < 2 {
		t.Errorf("%d IXFRs from %s in annuaire's log, want dnspython's and named's", n, before)
	}
	t.Run("BIND secondary after IXFR", func(t *testing.T) { check(t, namedAddr, false) })
}

// foldHex folds A-Z in hex-encoded labels: a secondary may answer with
// the case of its zone data rather than the question's.
func foldHex(labels []string) []string {
	out := make([]string, len(labels))
	for i, l := range labels {
		b, _ := hex.DecodeString(l)
		for j, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[j] = c + 'a' - 'A'
			}
		}
		out[i] = hex.EncodeToString(b)
	}
	return out
}

// escapeForDig writes a raw label as a master file would, for dig's
// command line.
func escapeForDig(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';':
			b.WriteString(`\` + string(c))
		case c <= ' ' || c >= 0x7f:
			fmt.Fprintf(&b, `\%03d`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func presentLabels(labels []string) string {
	s := ""
	for _, l := range labels {
		s += escapeForDig(l) + "."
	}
	return s
}

// wireName is a name's wire form, lowercased, as a map key: how names in
// different presentations compare.
func wireName(t *testing.T, name string) string {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		t.Fatalf("name %q: %v", name, err)
	}
	return strings.ToLower(string(buf[:n]))
}

// rawTXT is a TXT record's strings as bytes on the wire.
func rawTXT(t *testing.T, rr *dns.TXT) []string {
	buf := make([]byte, dns.Len(rr)+256)
	n, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	rdata := buf[n-int(rr.Hdr.Rdlength) : n]
	var out []string
	for len(rdata) > 0 {
		l := int(rdata[0])
		out = append(out, string(rdata[1:1+l]))
		rdata = rdata[1+l:]
	}
	return out
}

func port2(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}
