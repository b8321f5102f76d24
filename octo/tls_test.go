package main

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
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"octo/internal/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "octo test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue writes a server certificate for 127.0.0.1 and localhost with serial
// to dir/cert.pem and dir/key.pem.
func (ca *testCA) issue(t *testing.T, dir string, serial int64) (certPath, keyPath string) {
	t.Helper()
	return ca.issueValid(t, dir, serial, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// issueValid is issue with the given validity.
func (ca *testCA) issueValid(t *testing.T, dir string, serial int64, notBefore, notAfter time.Time) (certPath, keyPath string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "octo"},
		NotBefore: notBefore, NotAfter: notAfter,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Write and rename, as a certificate renewal would.
	for _, f := range []struct {
		path string
		data []byte
	}{
		{certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})},
	} {
		if err := os.WriteFile(f.path+".new", f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath
}

// client returns an HTTPS client trusting only ca, HTTP/2 when it can.
func (ca *testCA) client() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true,
	}}
}

// octo over TLS speaks HTTP/2 to clients that trust its CA, answers plain
// HTTP with 400, and on SIGHUP serves a renewed certificate to new
// connections while the open one goes on.
func TestTLSServeAndReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certPath, keyPath := ca.issue(t, dir, 100)
	f := newFixture(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q", certPath, keyPath))
	octo := startServe(t, f.lnFile, f.cfg, f.logs)
	url := "https://" + f.addr + "/api/v1/status"
	hc := ca.client()
	get := func() (*http.Response, bool, error) {
		var reused bool
		req, _ := http.NewRequest("GET", url, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
		}))
		req.Header.Set("Authorization", "Bearer "+f.secret)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, reused, nil
	}
	resp, _, err := get()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS status: %v %v\n%s", resp, err, f.logs)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTPS status over %s, want HTTP/2", resp.Proto)
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 100 {
		t.Errorf("certificate serial %d, want 100", got)
	}

	// Plain HTTP on the TLS port is refused.
	plain, err := http.Get("http://" + f.addr + "/api/v1/status")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	body, _ := io.ReadAll(plain.Body)
	plain.Body.Close()
	if plain.StatusCode != 400 || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("plain HTTP on the TLS listener: %d %q, want 400 saying HTTPS", plain.StatusCode, body)
	}

	// A broken renewal is refused; the certificate in use stays.
	os.WriteFile(certPath, []byte("not a certificate"), 0o600)
	octo.Process.Signal(syscall.SIGHUP)
	waitLog(t, f.logs, "keeping the certificate in use")
	if resp, _, err := get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a broken renewal: %v %v\n%s", resp, err, f.logs)
	}

	// A good renewal: new connections get it, the open one goes on.
	ca.issue(t, dir, 200)
	if _, err := capture(t, "reload", fmt.Sprint(octo.Process.Pid)); err != nil { // octo.service's ExecReload
		t.Fatalf("octo reload: %v", err)
	}
	waitLog(t, f.logs, "serial=200")
	resp, reused, err := get()
	if err != nil || resp.StatusCode != 200 || !reused || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 100 {
		t.Errorf("the connection open across the reload: %v, reused %v, %v; want it to go on with serial 100", resp, reused, err)
	}
	fresh := ca.client()
	defer fresh.CloseIdleConnections()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+f.secret)
	resp, err = fresh.Do(req)
	if err != nil {
		t.Fatalf("new connection after reload: %v", err)
	}
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 200 {
		t.Errorf("a new connection after the reload got serial %d, want the renewed 200", got)
	}
	if octo.ProcessState != nil {
		t.Errorf("octo exited on SIGHUP")
	}
}

// waitLog waits until the logs contain s.
func waitLog(t *testing.T, logs *lockedBuf, s string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if strings.Contains(logs.String(), s) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q in the log:\n%s", s, logs)
}

// HTTP/2 clients across three restarts lose nothing: each old instance
// sends GOAWAY (Connection: close on HTTP/2), and the client moves on.
func TestRestartTLSKeepAliveLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: three restarts under load")
	}
	ca := newTestCA(t)
	certPath, keyPath := ca.issue(t, t.TempDir(), 7)
	f := newFixture(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q\ndrain_window = \"1s\"", certPath, keyPath))
	octo := startServe(t, f.lnFile, f.cfg, f.logs)
	hc := ca.client()
	var ok, h2, failed atomic.Int64
	var firstErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				method, path, body, want := "GET", "/api/v1/status", "", 200
				if (w+i)%4 == 0 {
					method, path, body, want = "POST", "/api/v1/sessions", `{"command":["true"]}`, 201
				}
				req, _ := http.NewRequest(method, "https://"+f.addr+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+f.secret)
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != want {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s %s: %v %v", method, path, resp, err))
					continue
				}
				ok.Add(1)
				if resp.ProtoMajor == 2 {
					h2.Add(1)
				}
			}
		}()
	}
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		octo.Process.Signal(syscall.SIGTERM)
		octo.Wait()
		octo = startServe(t, f.lnFile, f.cfg, f.logs)
	}
	time.Sleep(400 * time.Millisecond)
	stop()
	wg.Wait()
	t.Logf("%d requests (%d over HTTP/2) across 3 restarts over TLS, %d failed", ok.Load(), h2.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed, first: %v\n%s", failed.Load(), firstErr.Load(), f.logs)
	}
	// Fewer than over HTTP/1.1: net/http closes an HTTP/2 connection a
	// second after its GOAWAY, so each old instance lives about that long.
	if ok.Load() < 20 || h2.Load() != ok.Load() {
		t.Errorf("%d requests, %d over HTTP/2: want many, all HTTP/2", ok.Load(), h2.Load())
	}
}

// A certificate named as a systemd credential is read from
// $CREDENTIALS_DIRECTORY.
func TestTLSCredentialPath(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	ca.issue(t, dir, 9)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	c, err := loadCerts(config.Server{TLSCert: "cert.pem", TLSKey: "key.pem"})
	if err != nil || c.cur.Load().Leaf.SerialNumber.Int64() != 9 {
		t.Fatalf("loadCerts from credentials: %v", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := loadCerts(config.Server{TLSCert: "cert.pem", TLSKey: "key.pem"}); err == nil || !strings.Contains(err.Error(), "LoadCredential") {
		t.Errorf("a credential name without $CREDENTIALS_DIRECTORY: %v, want an error naming LoadCredential", err)
	}
}

// Tokens in clear text on a non-loopback address are warned about, at
// start and by check-config; loopback, Unix sockets and TLS are not.
func TestPlainTokensWarning(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		warn bool
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 3000}, true},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 3000}, true},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3000}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3000}, false},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 3000}, false},
		{&net.UnixAddr{Name: "/run/octo/octo.sock", Net: "unix"}, false},
	} {
		if got := plainTokens(tc.addr) != ""; got != tc.warn {
			t.Errorf("plainTokens(%v) warns %v, want %v", tc.addr, got, tc.warn)
		}
	}
	for _, tc := range []struct {
		listen string
		warn   bool
	}{
		{"0.0.0.0:3000", true}, {":3000", true}, {"[::]:3000", true}, {"example.org:3000", true},
		{"127.0.0.1:3000", false}, {"[::1]:3000", false}, {"localhost:3000", false}, {"", false},
	} {
		w, err := checkTLS(config.Server{Listen: tc.listen})
		if err != nil || (w != "") != tc.warn {
			t.Errorf("checkTLS(listen %q) = %q, %v; want a warning: %v", tc.listen, w, err, tc.warn)
		}
	}
	// check-config says so.
	cfg := writeConfig(t, "[server]\nlisten = \"0.0.0.0:3000\"\n")
	out, err := capture(t, "check-config", "--config", cfg)
	if err != nil || !strings.Contains(out, "warning: bearer tokens are accepted over plain HTTP") {
		t.Errorf("check-config of a plain non-loopback listener: %v\n%s", err, out)
	}
}
