package tsig

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		in      string
		want    Key
		wantErr string
	}{
		{in: "hmac-sha256:ddns-key:c2VjcmV0IQ==", want: Key{dns.HmacSHA256, "ddns-key.", "c2VjcmV0IQ==", 0}},
		{in: "HMAC-SHA512:Upd.Example.:c2VjcmV0IQ==", want: Key{dns.HmacSHA512, "upd.example.", "c2VjcmV0IQ==", 0}},
		{in: "hmac-sha1:k:c2VjcmV0IQ==", want: Key{dns.HmacSHA1, "k.", "c2VjcmV0IQ==", 0}},
		{in: "hmac-sha224:k:c2VjcmV0IQ==", want: Key{dns.HmacSHA224, "k.", "c2VjcmV0IQ==", 0}},
		{in: "hmac-sha384:k:c2VjcmV0IQ==", want: Key{dns.HmacSHA384, "k.", "c2VjcmV0IQ==", 0}},
		// nsupdate -y NAME:SECRET means hmac-md5.
		{in: "k:c2VjcmV0IQ==", want: Key{"hmac-md5.sig-alg.reg.int.", "k.", "c2VjcmV0IQ==", 0}},
		{in: "hmac-md5:k:c2VjcmV0IQ==", want: Key{"hmac-md5.sig-alg.reg.int.", "k.", "c2VjcmV0IQ==", 0}},
		{in: "c2VjcmV0IQ==", wantErr: "want [ALGORITHM:]NAME:BASE64SECRET"},
		{in: "a:b:c:d", wantErr: "want [ALGORITHM:]NAME:BASE64SECRET"},
		{in: "hmac-sha3:k:c2VjcmV0IQ==", wantErr: "unknown algorithm"},
		{in: "hmac-sha256::c2VjcmV0IQ==", wantErr: "empty name"},
		{in: "hmac-sha256:k:not base64!", wantErr: "not base64"},
		{in: "hmac-sha256:k:", wantErr: "empty secret"},
		{in: "hmac-sha256:a..b:c2VjcmV0IQ==", wantErr: "not a domain name"},
		// BIND's truncation syntax: MACs of at least that many bits.
		{in: "hmac-sha256-128:k:c2VjcmV0IQ==", want: Key{dns.HmacSHA256, "k.", "c2VjcmV0IQ==", 16}},
		{in: "hmac-sha1-80:k:c2VjcmV0IQ==", want: Key{dns.HmacSHA1, "k.", "c2VjcmV0IQ==", 10}},
		{in: "hmac-sha256-256:k:c2VjcmV0IQ==", want: Key{dns.HmacSHA256, "k.", "c2VjcmV0IQ==", 0}},
		{in: "hmac-sha256-120:k:c2VjcmV0IQ==", wantErr: "from 128 to 256"},
		{in: "hmac-sha256-130:k:c2VjcmV0IQ==", wantErr: "multiple of 8"},
		{in: "hmac-sha256-264:k:c2VjcmV0IQ==", wantErr: "from 128 to 256"},
	}
	for _, tt := range tests {
		got, err := ParseKey(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKey(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "c2VjcmV0IQ") {
				t.Errorf("ParseKey(%q): error %q shows the secret", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestKeyringVerify(t *testing.T) {
	kr := Keyring{{dns.HmacSHA256, "k.", "c2VjcmV0IQ==", 0}}
	msg := []byte("some message")
	tsig := &dns.TSIG{Hdr: dns.RR_Header{Name: "K."}, Algorithm: "HMAC-SHA256."}
	mac, err := kr.Generate(msg, tsig)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, macLen int, alg string, want error) {
		t.Helper()
		tt := *tsig
		tt.Algorithm = alg
		tt.MAC = hex.EncodeToString(mac[:macLen])
		if got := kr.Verify(msg, &tt); got != want {
			t.Errorf("%s: Verify = %v, want %v", name, got, want)
		}
	}
	check("full", 32, dns.HmacSHA256, nil)
	check("truncated to 16 (RFC 8945 5.2.2.1), the key wants 32 (5.2.2.3)", 16, dns.HmacSHA256, errBadTrunc)
	check("truncated below half", 15, dns.HmacSHA256, errBadFormat)
	check("other algorithm", 32, dns.HmacSHA512, ErrBadKey)
	bad := append([]byte(nil), mac...)
	bad[0] ^= 1
	tt := *tsig
	tt.MAC = hex.EncodeToString(bad)
	if got := kr.Verify(msg, &tt); got != errBadSig {
		t.Errorf("flipped bit: Verify = %v, want %v", got, errBadSig)
	}
	tt.MAC = hex.EncodeToString(append(mac, 0))
	if got := kr.Verify(msg, &tt); got != errBadFormat {
		t.Errorf("MAC longer than the hash: Verify = %v, want %v", got, errBadFormat)
	}
	tt.MAC = hex.EncodeToString(bad[:16])
	if got := kr.Verify(msg, &tt); got != errBadSig {
		t.Errorf("flipped bit, truncated: Verify = %v, want %v (the MAC first)", got, errBadSig)
	}

	kr[0].MinMAC = 20
	check("truncated to 20, the key allows 20", 20, dns.HmacSHA256, nil)
	check("truncated to 16, the key allows 20", 16, dns.HmacSHA256, errBadTrunc)
}
