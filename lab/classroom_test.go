package lab_test

import (
	"bytes"
	"net/http"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// annuaireCmd runs the annuaire command and returns its stdout, stderr
// and exit code.
func annuaireCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(annuaireBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// A classroom on one machine: 127.0.0.2 is alice's, 127.0.0.3 bob's, each
// with a token of their own made by the teacher.
func TestClassroom(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("127.0.0.2 and 127.0.0.3 are usable without setup on Linux only")
	}
	d := startAnnuaire(t)
	token := func(name string) string {
		out, errs, code := annuaireCmd(t, "token", "add", name, "--data", d.data)
		if code != 0 {
			t.Fatalf("token add %s: %d %s", name, code, errs)
		}
		return strings.TrimSpace(out)
	}
	alice, bob := token("alice"), token("bob")

	// alice's server registers with her token, given as the programs take
	// it: --token here, ANNUAIRE_TOKEN for bob below.
	srv := startServer(t, d.env(), "serveur_iteratif.py", "echo-alice", "0", "--bind", "127.0.0.2", "--token", alice)
	if srv.endpoint != "127.0.0.2:"+srv.port {
		t.Fatalf("registered %s", srv.endpoint)
	}
	if _, body := apiGet(t, d, "/api/services/"+srv.id); !strings.Contains(body, `"owner": "alice"`) {
		t.Errorf("the API does not say alice's:\n%s", body)
	}

	// bob finds it by name from his machine and gets the echo.
	cl := python(t, d.env("ANNUAIRE_TOKEN="+bob), strings.NewReader("de la part de bob\n"), "client.py", "echo-alice", "--source", "127.0.0.3")
	var stderr bytes.Buffer
	cl.Stderr = &stderr
	if got, err := cl.Output(); err != nil || string(got) != "de la part de bob\n" {
		t.Fatalf("bob's client.py: %q, %v\n%s", got, err, &stderr)
	}
	srv.waitFor(t, regexp.MustCompile(`(?m)^accept: connection from 127\.0\.0\.3:\d+$`))

	// The page, in French for a French browser, says whose it is.
	req, _ := http.NewRequest("GET", "http://"+d.web+"/", nil)
	req.Header.Set("Accept-Language", "fr-FR,fr;q=0.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	page.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`<html lang="fr">`, "Suivre un nom", "La classe", `<tr data-owner="alice">`, "echo-alice/tcp → " + srv.endpoint, `<tr data-owner="bob">`, "aucun service"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the page in French lacks %q", want)
		}
	}

	// bob cannot remove it: not by the API, not by the command.
	req, _ = http.NewRequest("DELETE", "http://"+d.web+"/api/services/"+srv.id, nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's DELETE: %s, want 403", resp.Status)
	}
	_, errs, code := annuaireCmd(t, "deregister", "echo-alice", "--web", d.web, "--token", bob)
	if want := `belongs to alice, not to bob (HTTP 403)`; code != 1 || !strings.Contains(errs, want) {
		t.Errorf("annuaire deregister as bob: exit %d, %q; want 1 and %q", code, errs, want)
	}
	if status, _ := srvAnswer(t, d, "echo-alice"); status != "NOERROR" {
		t.Errorf("after bob's tries: dig %s", status)
	}

	// The teacher's token can: a second server of alice's, removed with
	// the token of the data directory.
	second := startServer(t, d.env("ANNUAIRE_TOKEN="+alice), "serveur_iteratif.py", "echo-alice2", "0", "--bind", "127.0.0.2")
	if out, errs, code := annuaireCmd(t, "deregister", "echo-alice2", "--web", d.web, "--data", d.data); code != 0 || out != second.id+"\n" {
		t.Errorf("annuaire deregister as the teacher: exit %d, %q, %q", code, out, errs)
	}
	if status, _ := srvAnswer(t, d, "echo-alice2"); status != "NXDOMAIN" {
		t.Errorf("after the teacher's deregister: dig %s, want NXDOMAIN", status)
	}

	// Ctrl-C on alice's server takes her name out of DNS.
	srv.cmd.Process.Signal(syscall.SIGINT)
	if code := srv.exitCode(t); code != 0 {
		t.Fatalf("alice's server: exit %d", code)
	}
	if status, _ := srvAnswer(t, d, "echo-alice"); status != "NXDOMAIN" {
		t.Errorf("after Ctrl-C: dig %s, want NXDOMAIN", status)
	}
}

func apiGet(t *testing.T, d *directory, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.web + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
