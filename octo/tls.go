package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"octo/internal/config"
)

// certs is the TLS certificate of the TCP listener, read from
// server.tls_cert and server.tls_key and read again on reload (SIGHUP):
// new handshakes get the new one, open connections keep theirs.
type certs struct {
	certPath, keyPath string
	cur               atomic.Pointer[tls.Certificate]
}

// loadCerts reads the configured certificate, or returns nil when TLS is
// not configured.
func loadCerts(sc config.Server) (*certs, error) {
	if sc.TLSCert == "" {
		return nil, nil
	}
	c := &certs{}
	var err error
	if c.certPath, err = credentialPath("server.tls_cert", sc.TLSCert); err != nil {
		return nil, err
	}
	if c.keyPath, err = credentialPath("server.tls_key", sc.TLSKey); err != nil {
		return nil, err
	}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// credentialPath resolves a tls_cert or tls_key value: an absolute path, or
// the name of a systemd credential (LoadCredential=NAME:PATH), found in
// $CREDENTIALS_DIRECTORY.
func credentialPath(key, p string) (string, error) {
	if filepath.IsAbs(p) {
		return p, nil
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return "", fmt.Errorf("key %s: %q is a credential name, but $CREDENTIALS_DIRECTORY is not set (use LoadCredential=%s:/path in octo.service, or an absolute path)", key, p, p)
	}
	return filepath.Join(dir, p), nil
}

// reload reads the certificate and key again; on error the one in use stays.
func (c *certs) reload() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s, key %s: %w", c.certPath, c.keyPath, err)
	}
	c.cur.Store(&cert)
	return &cert, nil
}

// config is the TCP listener's TLS configuration (HTTP/2 is added by
// net/http when it serves TLS).
func (c *certs) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// certAttrs describes a certificate for the log.
func certAttrs(cert *tls.Certificate) []any {
	if cert == nil || cert.Leaf == nil {
		return nil
	}
	return []any{"subject", cert.Leaf.Subject.String(), "dns", strings.Join(cert.Leaf.DNSNames, ","),
		"not_after", cert.Leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), "serial", cert.Leaf.SerialNumber.String()}
}

// useTLS puts the TCP listeners on TLS when c is not nil, and warns about
// each one that would take bearer tokens in clear text otherwise.
func useTLS(lns []namedListener, c *certs, log *slog.Logger) {
	for i, nl := range lns {
		switch {
		case nl.unix:
		case c != nil:
			lns[i].tls = c.config()
			log.Info("tls certificate loaded", certAttrs(c.cur.Load())...)
		default:
			if w := plainTokens(nl.ln.Addr()); w != "" {
				log.Warn(w)
			}
		}
	}
}

// reloadOnHUP reloads c on each SIGHUP (systemctl reload octo) until ctx
// is done or stop is called; without it SIGHUP would end octo.
func reloadOnHUP(ctx context.Context, c *certs, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				daemon.SdNotify(false, daemon.SdNotifyReloading)
				reloadCerts(c, log)
				daemon.SdNotify(false, daemon.SdNotifyReady)
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// reloadCerts reads the certificate again.
func reloadCerts(c *certs, log *slog.Logger) {
	if c == nil {
		log.Info("reload: nothing to reload (no server.tls_cert)")
		return
	}
	cert, err := c.reload()
	if err != nil {
		log.Error("reload: keeping the certificate in use", "err", err)
		return
	}
	log.Info("reload: tls certificate loaded", certAttrs(cert)...)
}

// plainTokens says why a listener at addr without TLS exposes bearer
// tokens, or "" when it does not (loopback, Unix socket).
func plainTokens(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return ""
	}
	return plainWarning(addr.String())
}

func plainWarning(addr string) string {
	return fmt.Sprintf("bearer tokens are accepted over plain HTTP on %s, which is not loopback: anyone on the path can read them; set server.tls_cert and server.tls_key, or listen on 127.0.0.1 behind a TLS reverse proxy (README: TLS)", addr)
}

// checkTLS is what `octo check-config` says about TLS: an error when the
// certificate cannot be loaded, a warning when tokens would travel in
// clear text on a non-loopback server.listen.
func checkTLS(sc config.Server) (warning string, err error) {
	if sc.TLSCert != "" {
		_, err := loadCerts(sc)
		return "", err
	}
	if sc.Listen == "" {
		return "", nil
	}
	host, _, _ := net.SplitHostPort(sc.Listen)
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return "", nil
	}
	return plainWarning(sc.Listen) + " (when systemd passes octo.socket, its ListenStream= decides the address)", nil
}

// reloadCmd sends SIGHUP to the octo serve with the given pid: octo.service's
// ExecReload (a unit cannot name kill portably: its path differs).
func reloadCmd(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: reload takes the pid of octo serve ($MAINPID in octo.service)", errUsage)
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil || pid <= 1 {
		return fmt.Errorf("%w: reload: %q is not a process id", errUsage, args[0])
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload: signal %d: %w", pid, err)
	}
	return nil
}
