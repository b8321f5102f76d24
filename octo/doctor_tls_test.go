package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// doctor's TLS line: a certificate that does not load or match its key, or
// is out of its validity, is a FAIL; one near its end a warning; no TLS on
// a non-loopback listener a warning about tokens in clear text.
func TestDoctorTLS(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	day := 24 * time.Hour
	for _, tc := range []struct {
		name     string
		setup    func(dir string) (listen, cert, key string)
		want     level
		contains string
	}{
		{"valid", func(dir string) (string, string, string) {
			c, k := ca.issueValid(t, dir, 2, now.Add(-day), now.Add(90*day))
			return "0.0.0.0:3000", c, k
		}, levelOK, "matches its key, valid until"},
		{"expires soon", func(dir string) (string, string, string) {
			c, k := ca.issueValid(t, dir, 3, now.Add(-day), now.Add(3*day))
			return "0.0.0.0:3000", c, k
		}, levelWarn, "expires on"},
		{"expired", func(dir string) (string, string, string) {
			c, k := ca.issueValid(t, dir, 4, now.Add(-90*day), now.Add(-day))
			return "0.0.0.0:3000", c, k
		}, levelFail, "expired on"},
		{"key of another certificate", func(dir string) (string, string, string) {
			c, _ := ca.issue(t, dir, 5)
			other := t.TempDir()
			_, k := ca.issue(t, other, 6)
			return "0.0.0.0:3000", c, k
		}, levelFail, "private key does not match public key"},
		{"missing file", func(dir string) (string, string, string) {
			return "0.0.0.0:3000", dir + "/nosuch.pem", dir + "/nosuch.key"
		}, levelFail, "no such file"},
		{"no tls, all interfaces", func(string) (string, string, string) { return "0.0.0.0:3000", "", "" }, levelWarn, "plain HTTP"},
		{"no tls, loopback", func(string) (string, string, string) { return "127.0.0.1:3000", "", "" }, levelOK, "not configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := testDoctor(t)
			d.cfg.Server.Listen, d.cfg.Server.TLSCert, d.cfg.Server.TLSKey = tc.setup(dir)
			d.checkTLS(context.Background())
			if len(d.findings) != 1 {
				t.Fatalf("findings %+v, want one", d.findings)
			}
			f := d.findings[0]
			if f.level != tc.want || !strings.Contains(f.msg, tc.contains) {
				t.Errorf("got %s %q, want %s containing %q", f.level, f.msg, tc.want, tc.contains)
			}
			if f.level != levelOK && f.fix == "" {
				t.Errorf("%s without a fix: %+v", f.level, f)
			}
		})
	}
}
