package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"path/filepath"
	"time"
)

// certRenewWarning is how long before a certificate expires doctor warns.
const certRenewWarning = 14 * 24 * time.Hour

// checkTLS checks the TCP listener's TLS: without it, whether bearer tokens
// would cross the network in clear text; with it, that the certificate
// loads, matches its key and is within its validity, not near its end.
func (d *doctor) checkTLS(ctx context.Context) {
	if d.cfgErr != nil {
		return
	}
	sc := d.cfg.Server
	if sc.TLSCert == "" {
		if w, _ := checkTLS(sc); w != "" {
			d.warn("tls", "set server.tls_cert and server.tls_key, or listen on 127.0.0.1 behind a TLS reverse proxy (README: TLS)", "%s", w)
			return
		}
		d.ok("tls", "not configured; server.listen %q is loopback or off", sc.Listen)
		return
	}
	if !filepath.IsAbs(sc.TLSCert) || !filepath.IsAbs(sc.TLSKey) {
		d.ok("tls", "server.tls_cert %q and tls_key %q are systemd credentials, read by octo.service at start (journalctl -u octo shows the certificate it loaded)", sc.TLSCert, sc.TLSKey)
		return
	}
	cert, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
	switch {
	case errors.Is(err, fs.ErrPermission) && !d.privileged:
		d.warn("tls", "run octo doctor as root", "cannot read %s or %s as %s", sc.TLSCert, sc.TLSKey, d.me.Username)
		return
	case err != nil:
		d.fail("tls", "install the PEM certificate chain at "+sc.TLSCert+" and its key at "+sc.TLSKey+", readable by user octo, then systemctl reload octo", "%v", err)
		return
	}
	leaf, now := cert.Leaf, time.Now()
	renew := "renew the certificate, then systemctl reload octo"
	switch {
	case now.After(leaf.NotAfter):
		d.fail("tls", renew, "%s expired on %s", sc.TLSCert, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		d.fail("tls", "check the machine's clock, or install a certificate valid now", "%s is not valid before %s", sc.TLSCert, leaf.NotBefore.UTC().Format(time.DateTime))
	case leaf.NotAfter.Sub(now) < certRenewWarning:
		d.warn("tls", renew, "%s expires on %s", sc.TLSCert, leaf.NotAfter.UTC().Format(time.DateOnly))
	default:
		d.ok("tls", "%s (%s) matches its key, valid until %s", sc.TLSCert, leaf.Subject, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
}
