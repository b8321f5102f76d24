//go:build linux

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"octo/e2e/box"
)

// e2eCA is a certificate authority generated for one test.
type e2eCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newE2ECA(t *testing.T) (*e2eCA, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "octo e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &e2eCA{cert, key, pool}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// issue returns a PEM certificate for 127.0.0.1 and localhost, and its key.
func (ca *e2eCA) issue(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "octo"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// installCert puts a certificate and key where the box's octo reads them
// (root:octo 0640, as an administrator would).
func installCert(t *testing.T, b *box.Box, certPEM, keyPEM []byte) {
	t.Helper()
	dir := filepath.Join(shareDir, "tls")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `install -d -m 0750 -g octo /etc/octo/tls
for f in cert.pem key.pem; do
  install -m 0640 -g octo /octo-share/tls/$f /etc/octo/tls/$f.new && mv /etc/octo/tls/$f.new /etc/octo/tls/$f
done`
	if out, err := b.Sh(context.Background(), script); err != nil {
		t.Fatalf("install certificate: %v\n%s", err, out)
	}
}

// boxTLS is an HTTPS client into the box trusting only ca.
func boxTLS(b *box.Box, ca *e2eCA) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: b.DialContext, TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true,
	}}
}

// 11.6. TLS on :3000: before, octo warns that tokens travel in clear text
// (at start and in check-config); with a certificate it serves HTTPS and
// HTTP/2 to curl --cacert, refuses plain HTTP, reloads a renewed
// certificate without dropping the open connection, and restarts under
// keep-alive TLS load without losing a request.
func TestTLSListener(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := newClient(t, b, "alice")
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	journal, _ := b.Run(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", "octo.service")
	if !strings.Contains(journal, "bearer tokens are accepted over plain HTTP") {
		t.Errorf("plain HTTP on *:3000 logged no warning about tokens in clear text:\n%s", journal)
	}
	if out, err := b.Run(ctx, "/usr/local/bin/octo", "check-config"); err != nil || !strings.Contains(out, "warning: bearer tokens") {
		t.Errorf("check-config of the default config: %v\n%s", err, out)
	}

	ca, caPEM := newE2ECA(t)
	os.WriteFile(filepath.Join(shareDir, "ca.pem"), caPEM, 0o644)
	cert, key := ca.issue(t, 100)
	installCert(t, b, cert, key)
	enable := `sed -i 's|^tls_cert = ""|tls_cert = "/etc/octo/tls/cert.pem"|; s|^tls_key = ""|tls_key = "/etc/octo/tls/key.pem"|' /etc/octo/config.toml
grep -q '^tls_cert = "/etc/octo/tls/cert.pem"' /etc/octo/config.toml
octo check-config
systemctl restart octo.service`
	t.Cleanup(func() {
		b.Sh(ctx, `sed -i 's|^tls_cert = .*|tls_cert = ""|; s|^tls_key = .*|tls_key = ""|' /etc/octo/config.toml; systemctl restart octo.service`)
	})
	if out, err := b.Sh(ctx, enable); err != nil {
		t.Fatalf("enable TLS: %v\n%s", err, out)
	} else if strings.Contains(out, "warning") {
		t.Errorf("check-config with TLS still warns:\n%s", out)
	}
	https := "https://127.0.0.1:3000/api/v1/status"
	out, err := b.Run(ctx, "curl", "-sS", "--http2", "--cacert", box.Inside+"/ca.pem", "-H", "Authorization: Bearer "+tokens["alice"],
		"-w", "\nHTTP/%{http_version} %{http_code}", https)
	if err != nil || !strings.Contains(out, `"user":"alice"`) || !strings.HasSuffix(out, "HTTP/2 200") {
		t.Errorf("curl --cacert over HTTPS: %v\n%s\nwant alice's status over HTTP/2", err, out)
	}
	if out, err := b.Run(ctx, "curl", "-sS", https); err == nil || !strings.Contains(out+err.Error(), "certificate") {
		t.Errorf("curl without the CA accepted the certificate: %v %s", err, out)
	}
	out, _ = b.Run(ctx, "curl", "-sS", "-w", "\n%{http_code}", "-H", "Authorization: Bearer "+tokens["alice"], "http://127.0.0.1:3000/api/v1/status")
	if !strings.HasSuffix(out, "400") || !strings.Contains(out, "HTTPS") || strings.Contains(out, "alice") {
		t.Errorf("plain HTTP on the TLS listener: %q, want 400 saying HTTPS", out)
	}

	// Reload a renewed certificate with a connection open.
	hc := boxTLS(b, ca)
	get := func(hc *http.Client) (*http.Response, error) {
		req, _ := http.NewRequest("GET", https, nil)
		req.Header.Set("Authorization", "Bearer "+tokens["alice"])
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := get(hc); err != nil || resp.ProtoMajor != 2 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 100 {
		t.Fatalf("before reload: %v %v", resp, err)
	}
	pid := unitProp(t, b, "octo.service", "MainPID")
	cert, key = ca.issue(t, 200)
	installCert(t, b, cert, key)
	if out, err := b.Run(ctx, "systemctl", "reload", "octo.service"); err != nil {
		t.Fatalf("systemctl reload octo: %v\n%s", err, out)
	}
	var serial int64
	for i := 0; i < 100 && serial != 200; i++ {
		fresh := boxTLS(b, ca)
		if resp, err := get(fresh); err == nil {
			serial = resp.TLS.PeerCertificates[0].SerialNumber.Int64()
		}
		fresh.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
	if serial != 200 {
		t.Errorf("after systemctl reload new connections get serial %d, want the renewed 200", serial)
	}
	if resp, err := get(hc); err != nil || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 100 {
		t.Errorf("the connection open across the reload: %v %v, want it to go on (serial 100)", resp, err)
	}
	if now := unitProp(t, b, "octo.service", "MainPID"); now != pid {
		t.Errorf("reload restarted octo (pid %s -> %s)", pid, now)
	}

	// Keep-alive TLS load across three restarts: wrk (HTTP/1.1) and, beside
	// it, HTTP/2 clients, which each old instance sends GOAWAY.
	wait := startWrk(t, b, "alice", https, 9*time.Second)
	var h2ok, h2failed atomic.Int64
	var h2err atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := get(hc)
				if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 {
					h2failed.Add(1)
					h2err.CompareAndSwap(nil, fmt.Sprint(resp, err))
				} else {
					h2ok.Add(1)
				}
			}
		}()
	}
	pids := restartUnderLoad(t, b, 3, 2*time.Second)
	r := wait()
	close(stop)
	wg.Wait()
	t.Logf("wrk -c32 over TLS across 3 restarts: %v; HTTP/2 clients beside it: %d ok, %d failed", r, h2ok.Load(), h2failed.Load())
	if h2failed.Load() != 0 || h2ok.Load() < 100 {
		t.Errorf("HTTP/2 across restarts: %d ok, %d failed (first: %v); want many and none failed", h2ok.Load(), h2failed.Load(), h2err.Load())
	}
	if len(pids) != 4 {
		t.Errorf("octo.service main pids %v: want 4 distinct (3 restarts)", pids)
	}
	if r.errors() != 0 || r.Non2xx != 0 {
		t.Errorf("restarts over TLS lost requests: %v\n%s", r, r.Out)
	}
	if r.Requests < 1000 {
		t.Errorf("only %d requests over TLS: the load did not overlap the restarts", r.Requests)
	}
	checkSockets(t, b)
}
