//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Issue 11, attack 1: one user's PUTs that announce 64 MiB and send
// nothing used to reserve the whole server's upload budget, so that every
// other user's PUT got 429. Now uploads stream and the only limit is per
// user (server.max_uploads_per_user, 8 by default): alice's stalled PUTs
// cost alice alone, her next one is 429 and logged with her name, and
// bob's upload goes through meanwhile.
func TestStalledUploadsBlockOnlyTheirUser(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	since := time.Now().Add(-time.Second).Format("2006-01-02 15:04:05")
	alice, bob := newClient(t, b, "alice"), newClient(t, b, "bob")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 8 {
		c, err := b.DialContext(ctx, "tcp", strings.TrimPrefix(apiURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "PUT /api/v1/files/stalled-%d.bin HTTP/1.1\r\nHost: box\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", i, tokens["alice"], 64<<20)
	}
	// The eight are in once each has its temporary file in alice's home.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := b.Sh(ctx, "ls -a /home/alice | grep -c octo-tmp || true")
		if strings.TrimSpace(out) == "8" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporary files of alice's stalled uploads: %s, want 8", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := alice.do("PUT", "/api/v1/files/ninth.txt", []byte("ninth"))
	if r.Status != 429 || r.errorBody().Error.Code != "limit" {
		t.Fatalf("alice's ninth PUT while eight stall: %s, want 429 limit", r)
	}
	start := time.Now()
	bob.expect("PUT", "/api/v1/files/bobs-upload.txt", []byte("bob's data"), 201, nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("bob's PUT took %v while alice's uploads stalled", d)
	}
	for {
		journal, _ := b.Run(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", "octo.service", "--since", since)
		if strings.Contains(journal, "upload refused") && strings.Contains(journal, "user=alice") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("octo's journal names no refused upload of alice:\n%s", journal)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Her uploads end with their connections (their temporary files
	// removed): she may upload again.
	deadline = time.Now().Add(20 * time.Second)
	for {
		r := alice.do("PUT", "/api/v1/files/after.txt", []byte("after"))
		out, _ := b.Sh(ctx, "ls -a /home/alice | grep -c octo-tmp || true")
		if r.Status == 201 && strings.TrimSpace(out) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's PUT after her stalled ones closed: %s, want 201; temporary files left: %s", r, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A file too big to come inline crosses octo.service's sandbox both ways
// by descriptor: the agent passes a write descriptor for the upload and a
// read descriptor for the download, which octo serves with sendfile.
func TestLargeFileByDescriptor(t *testing.T) {
	b := setup(t)
	bob := newClient(t, b, "bob")
	data := make([]byte, 3<<20+7)
	for i := range data {
		data[i] = byte(i % 251)
	}
	bob.expect("PUT", "/api/v1/files/big/data.bin?parents=1", data, 201, nil)
	r := bob.do("GET", "/api/v1/files/big/data.bin", nil)
	if r.Status != 200 || !bytes.Equal(r.Body, data) {
		t.Fatalf("GET: HTTP %d, %d bytes, equal %v; want 200 and the %d bytes put", r.Status, len(r.Body), bytes.Equal(r.Body, data), len(data))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := b.Run(ctx, "stat", "-c", "%U %s", "/home/bob/big/data.bin")
	if err != nil || strings.TrimSpace(out) != fmt.Sprintf("bob %d", len(data)) {
		t.Errorf("the uploaded file in the box: %q, %v; want owned by bob, %d bytes", out, err, len(data))
	}
}
