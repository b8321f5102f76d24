package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// FileInfo describes a file in the workspace.
type FileInfo struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"` // file, dir, symlink, other
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"` // octal, e.g. "0644"
	ModTime time.Time `json:"mod_time"`
	Target  string    `json:"target,omitempty"`
}

// Dir is a directory's listing.
type Dir struct {
	Path    string     `json:"path"`
	Type    string     `json:"type"`
	Entries []FileInfo `json:"entries"`
}

// filePath is the API path of a workspace path, each segment escaped.
func filePath(p string) string {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/api/v1/files/" + strings.Join(segs, "/")
}

// Download opens a workspace file for reading; size is its length (-1 if
// the server did not say).
func (c *Client) Download(ctx context.Context, p string) (body io.ReadCloser, size int64, err error) {
	req, err := c.newRequest(ctx, http.MethodGet, filePath(p), nil, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, 0, err
	}
	if isDirListing(resp) {
		resp.Body.Close()
		return nil, 0, &Error{Status: http.StatusBadRequest, Code: "is_dir", Message: fmt.Sprintf(":%s is a directory", p)}
	}
	return resp.Body, resp.ContentLength, nil
}

// isDirListing reports whether a 200 answer to a files GET is a directory
// listing rather than a file's bytes: a file's answer always offers ranges.
func isDirListing(resp *http.Response) bool {
	return resp.Header.Get("Accept-Ranges") == "" && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
}

// UploadOptions say how an upload creates its file.
type UploadOptions struct {
	Parents bool   // create missing directories
	Mode    string // octal mode of a new file, e.g. "0600"; "" for the default
}

// Upload replaces a workspace file atomically with size bytes from r (-1
// if unknown, sent chunked).
func (c *Client) Upload(ctx context.Context, p string, r io.Reader, size int64, opt UploadOptions) (FileInfo, error) {
	q := url.Values{}
	if opt.Parents {
		q.Set("parents", "1")
	}
	if opt.Mode != "" {
		q.Set("mode", opt.Mode)
	}
	req, err := c.newRequest(ctx, http.MethodPut, filePath(p), q, r)
	if err != nil {
		return FileInfo{}, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return FileInfo{}, err
	}
	defer resp.Body.Close()
	var fi FileInfo
	if err := json.NewDecoder(resp.Body).Decode(&fi); err != nil {
		return FileInfo{}, fmt.Errorf("decode upload answer: %w", err)
	}
	return fi, nil
}

// Stat describes a workspace path: a directory's listing (Dir non-nil), or
// the file's entry in its parent's listing.
func (c *Client) Stat(ctx context.Context, p string) (FileInfo, *Dir, error) {
	req, err := c.newRequest(ctx, http.MethodGet, filePath(p), nil, nil)
	if err != nil {
		return FileInfo{}, nil, err
	}
	// A file answers 206 (or 416 when empty) and sends one byte; a
	// directory ignores the range and sends its listing.
	req.Header.Set("Range", "bytes=0-0")
	resp, err := c.hc.Do(req)
	if err != nil {
		return FileInfo{}, nil, c.reachError(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK && isDirListing(resp):
		var d Dir
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return FileInfo{}, nil, fmt.Errorf("decode listing: %w", err)
		}
		return FileInfo{Name: path.Base("/" + p), Type: "dir"}, &d, nil
	case resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
	default:
		return FileInfo{}, nil, errorOf(resp.StatusCode, resp.Body)
	}
	parent := path.Dir(strings.TrimSuffix(p, "/"))
	if parent == "." || parent == "/" {
		parent = ""
	}
	_, d, err := c.Stat(ctx, parent)
	if err != nil {
		return FileInfo{}, nil, err
	}
	name := path.Base(p)
	if d != nil {
		for _, e := range d.Entries {
			if e.Name == name {
				return e, nil, nil
			}
		}
	}
	return FileInfo{}, nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf(":%s vanished while it was listed", p)}
}
