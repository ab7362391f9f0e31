package tsig

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
)

func TestParseKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // Key.String() of each
		err        string
	}{
		{"lines", "# keys\nhmac-sha256:ddns-key:c2VjcmV0IQ==\n\n  hmac-sha512:other:c2VjcmV0IQ== \n",
			[]string{"ddns-key. (hmac-sha256)", "other. (hmac-sha512)"}, ""},
		{"bind", "key \"ddns-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0IQ==\";\n};\n",
			[]string{"ddns-key. (hmac-sha256)"}, ""},
		{"both, comments", "/* two\nlines */ key k1 { secret \"c2VjcmV0IQ==\"; // the secret\n algorithm \"hmac-sha1\"; };\nhmac-sha256:k2:c2VjcmV0IQ==",
			[]string{"k1. (hmac-sha1)", "k2. (hmac-sha256)"}, ""},
		{"empty", "\n# nothing\n", nil, ""},
		{"no secret", "key k { algorithm hmac-sha256; };", nil, "line 1: key statement: key \"k\" needs an algorithm and a secret"},
		{"bad secret", "\nhmac-sha256:k:not*base64", nil, "line 2: tsig key \"k\": secret is not base64"},
		{"unclosed", "key \"k\" {\n algorithm hmac-sha256;\n secret \"abc", nil, "line 3: quoted string not closed"},
		{"unknown field", "key k {\n  owner me;\n};", nil, "line 1: key statement: unknown field \"owner\" at line 2"},
		{"no semicolon", "key k { algorithm hmac-sha256 secret \"c2VjcmV0IQ==\"; };", nil, "want ; after algorithm"},
		{"stray", "options { };", nil, "line 1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseKeyFile(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "c2VjcmV0IQ") {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("keys %q, want %q", got, tc.want)
			}
		})
	}
}

// TestParseKeyFileTsigKeygen: what BIND's tsig-keygen prints, which
// nsupdate -k reads, is a key file.
func TestParseKeyFileTsigKeygen(t *testing.T) {
	out, err := exec.Command(testenv.NeedTool(t, "tsig-keygen"), "-a", "hmac-sha512", "lab.key").Output()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeyFile(string(out))
	if err != nil || len(keys) != 1 || keys[0].Name != "lab.key." || keys[0].Algorithm != "hmac-sha512." || !strings.Contains(string(out), keys[0].Secret) {
		t.Fatalf("%v %+v from\n%s", err, keys, out)
	}
}

// FuzzParseKeyFile: whatever a file holds, its keys parse again as
// ParseKey reads them (seeds in testdata/fuzz).
func FuzzParseKeyFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := ParseKeyFile(text)
		if err != nil {
			return
		}
		for _, k := range keys {
			if _, err := ParseKey(strings.TrimSuffix(k.Algorithm, ".") + ":" + k.Name + ":" + k.Secret); err != nil && !strings.Contains(k.Algorithm, "sig-alg") {
				t.Errorf("key %v does not parse again: %v", k, err)
			}
		}
	})
}
