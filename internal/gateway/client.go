package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Dialer is the agent's side of the link: it dials the gateway, checks the
// gateway's certificate against the pinned CA, and proves itself, with the
// launch token and a MUNGE credential the first time and with the client
// certificate it was issued afterwards.
type Dialer struct {
	Addr     string // host:port of the gateway
	CASHA256 string // hex SHA-256 of the CA certificate (from the job's environment)
	LaunchID string
	Token    string
	// Munge returns a fresh MUNGE credential (munge --no-input).
	Munge func(ctx context.Context) ([]byte, error)
	// DialContext connects; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)

	mu   sync.Mutex
	key  *ecdsa.PrivateKey
	cert *tls.Certificate // issued by the gateway; nil before the first link
}

// Dial opens a verified link; the agent protocol runs on it next.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.key == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		d.key = key
	}
	host, _, err := net.SplitHostPort(d.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway address %q: %w", d.Addr, err)
	}
	pin := strings.ToLower(d.CASHA256)
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is checked by VerifyConnection, against the pinned CA
		// instead of the system roots.
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPinned(cs, pin, host) },
	}
	if d.cert != nil {
		conf.Certificates = []tls.Certificate{*d.cert}
	}
	dial := d.DialContext
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	raw, err := dial(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial gateway: %w", err)
	}
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	c := tls.Client(raw, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("gateway TLS: %w", err)
	}
	link, err := d.hello(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return link, nil
}

func (d *Dialer) hello(ctx context.Context, c *tls.Conn) (net.Conn, error) {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "octo-agent"}}, d.key)
	if err != nil {
		return nil, err
	}
	h := hello{Launch: d.LaunchID, CSR: csr}
	if d.cert == nil {
		if d.Munge == nil {
			return nil, errors.New("no MUNGE credential source")
		}
		cred, err := d.Munge(ctx)
		if err != nil {
			return nil, fmt.Errorf("munge: %w", err)
		}
		h.Token, h.Munge = d.Token, strings.TrimSpace(string(cred))
	}
	if err := writeLine(c, h); err != nil {
		return nil, fmt.Errorf("gateway hello: %w", err)
	}
	var w welcome
	if err := readLine(c, &w); err != nil {
		return nil, fmt.Errorf("gateway welcome: %w", err)
	}
	if w.Code != "" {
		return nil, &RefusedError{Code: w.Code, Message: w.Message}
	}
	leaf, err := x509.ParseCertificate(w.Cert)
	if err != nil {
		return nil, fmt.Errorf("gateway welcome: client certificate: %w", err)
	}
	d.cert = &tls.Certificate{Certificate: [][]byte{w.Cert}, PrivateKey: d.key, Leaf: leaf}
	return c, nil
}

// verifyPinned checks that the server's chain ends in the CA whose SHA-256
// is pin and that its leaf is valid for host.
func verifyPinned(cs tls.ConnectionState, pin, host string) error {
	if len(cs.PeerCertificates) < 2 {
		return errors.New("the gateway sent no CA certificate in its chain")
	}
	var ca *x509.Certificate
	for _, c := range cs.PeerCertificates[1:] {
		if Fingerprint(c) == pin {
			ca = c
		}
	}
	if ca == nil {
		return errors.New("the gateway's certificate is not signed by the pinned CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
