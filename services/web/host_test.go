package web

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestRegisterHostAbsolute: a host written with its final dot is a full
// name (RFC 1035 section 5.1). One in the zone is made relative; one
// outside it is refused, where it used to be taken as relative and
// served as another name: "db.example.com." became
// db.example.com.svc.internal., the SRV target of a host nobody asked for.
func TestRegisterHostAbsolute(t *testing.T) {
	curl := testenv.NeedTool(t, "curl")
	base := startServer(t, &Server{Token: testToken})
	post := func(host string) string {
		out, err := exec.Command(curl, "-sS", "-w", "\n%{http_code}", "-H", "Authorization: Bearer "+testToken,
			"-d", `{"name":"db","port":5432,"addresses":["127.0.0.2"],"host":"`+host+`"}`, base+"/api/services").Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		return string(out)
	}
	for _, host := range []string{"db.example.com.", "svc.internal."} {
		if out := post(host); !strings.HasSuffix(out, "\n400") || !strings.Contains(out, "not in the zone svc.internal.") {
			t.Errorf("host %q: %s", host, out)
		}
	}
	for host, want := range map[string]string{"Db.SVC.internal.": `"host": "db"`, "db.svc.internal": `"host": "db"`, "files.lab": `"host": "files.lab"`} {
		if out := post(host); !strings.HasSuffix(out, "\n201") || !strings.Contains(out, want) {
			t.Errorf("host %q: %s", host, out)
		}
	}
}
