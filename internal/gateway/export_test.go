package gateway

// CopyIdentity gives to the key and certificate from (a test of a stolen
// or misused certificate).
func CopyIdentity(to, from *Dialer) {
	from.mu.Lock()
	defer from.mu.Unlock()
	to.key, to.cert = from.key, from.cert
}
