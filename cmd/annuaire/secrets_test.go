package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestSecretsOffTheCommandLine: serve takes its TSIG keys and API token
// from files or the environment, so that ps shows neither (--tsig and
// --token put them in every user's view). The key file is what BIND's
// tsig-keygen prints, and nsupdate -k signs with the same file; the
// token file is what the CLI and curl read.
func TestSecretsOffTheCommandLine(t *testing.T) {
	nsupdate := testenv.NeedTool(t, "nsupdate")
	keygen := testenv.NeedTool(t, "tsig-keygen")
	dir := t.TempDir()
	keyFile, tokenFile := filepath.Join(dir, "ddns.key"), filepath.Join(dir, "api.token")
	key, err := exec.Command(keygen, "-a", "hmac-sha256", "ddns-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	const token = "file-token-2f1b"
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o644); err != nil { // readable by others: a warning
		t.Fatal(err)
	}
	secret := strings.Split(string(key), `secret "`)[1][:20]

	update := func(a *annuaire, args []string, name string) {
		t.Helper()
		host, port, _ := net.SplitHostPort(a.dns)
		cmd := exec.Command(nsupdate, args...)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s %s\nupdate add %s.svc.internal. 60 A 127.0.0.7\nsend\n", host, port, name))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nsupdate %v: %v\n%s", args, err, out)
		}
		if out := dig(t, a.dns, "+short", name+".svc.internal.", "A"); strings.TrimSpace(out) != "127.0.0.7" {
			t.Errorf("after nsupdate %v: %q", args, out)
		}
	}
	write := func(a *annuaire, tok string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", strings.NewReader(`{"name":"db","port":5432,"addresses":["127.0.0.2"]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cmdline := func(a *annuaire) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", a.cmd.Process.Pid))
		if err != nil {
			out, _ := exec.Command("ps", "-o", "args=", "-p", fmt.Sprint(a.cmd.Process.Pid)).Output()
			return string(out)
		}
		return string(b)
	}

	t.Run("files", func(t *testing.T) {
		a := startServe(t, "--tsig-file", keyFile, "--token-file", tokenFile)
		if c := cmdline(a); strings.Contains(c, secret) || strings.Contains(c, token) {
			t.Errorf("the command line shows a secret: %q", c)
		}
		update(a, []string{"-k", keyFile}, "by-file")
		if code := write(a, token); code != http.StatusCreated {
			t.Errorf("a write with the file's token: %d", code)
		}
		if code := write(a, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("a write with another token: %d", code)
		}
		// The CLI reads the same file.
		if out, errOut, code := runCLI(t, nil, "register", "db", "5433", "--address", "127.0.0.2", "--web", a.web, "--token-file", tokenFile); code != 0 {
			t.Errorf("annuaire register --token-file: %d %s%s", code, out, errOut)
		}
		if !strings.Contains(a.stderr.String(), "readable by other users") || !strings.Contains(a.stdout.String(), "(API token in "+tokenFile+")") {
			t.Errorf("no warning for a token file of mode 0644, or the banner does not name it:\n%s%s", a.stdout, a.stderr)
		}
	})
	t.Run("environment", func(t *testing.T) {
		a := startServeEnv(t, t.TempDir(), []string{"ANNUAIRE_TSIG=" + string(key), "ANNUAIRE_TOKEN=" + token})
		update(a, []string{"-k", keyFile}, "by-env")
		if code := write(a, token); code != http.StatusCreated {
			t.Errorf("a write with $ANNUAIRE_TOKEN: %d", code)
		}
	})
	t.Run("flags warn", func(t *testing.T) {
		a := startServe(t, "--tsig", "hmac-sha256:k:c2VjcmV0IQ==", "--token", token)
		for _, flag := range []string{"--tsig puts a secret where ps shows it", "--token puts a secret where ps shows it"} {
			if !strings.Contains(a.stderr.String(), flag) {
				t.Errorf("no warning %q:\n%s", flag, a.stderr)
			}
		}
	})
	t.Run("bad file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.key")
		os.WriteFile(bad, []byte("key k { algorithm hmac-sha256; };\n"), 0o600)
		stdout, stderr, code := run(t, "", nil, "serve", "--tsig-file", bad, "--data", t.TempDir(), "--dns", "127.0.0.1:0", "--web", "127.0.0.1:0")
		if code == 0 || !strings.Contains(stderr, "--tsig-file "+bad+": line 1: key statement") {
			t.Errorf("a key file without a secret: %d %s%s", code, stdout, stderr)
		}
	})
}
