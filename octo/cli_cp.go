package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"octo/internal/client"
)

func cpCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("cp", false)
	parents := f.fs.Bool("parents", false, "create missing workspace directories")
	mode := f.fs.String("mode", "", "octal mode of a new workspace file, e.g. 0600")
	quiet := f.fs.Bool("q", false, "no progress bar")
	pos, err := f.parse(args, 2, 2)
	if err != nil {
		return err
	}
	src, dst := pos[0], pos[1]
	if strings.HasPrefix(src, ":") == strings.HasPrefix(dst, ":") {
		return fmt.Errorf("%w: cp: exactly one of SRC and DST is a workspace path, written :path (octo cp data.csv :in/ or octo cp :out/r.bin .)", errUsage)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	showProgress := !*quiet && isTerminal(2)
	if strings.HasPrefix(dst, ":") {
		return upload(ctx, c, src, dst[1:], client.UploadOptions{Parents: *parents, Mode: *mode}, showProgress)
	}
	return download(ctx, c, src[1:], dst, showProgress)
}

// upload copies local file src ("-": stdin) to workspace path dst, into
// it when it is a directory.
func upload(ctx context.Context, c *client.Client, src, dst string, opt client.UploadOptions, showProgress bool) error {
	var r io.Reader = os.Stdin
	size := int64(-1)
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory: octo cp copies files", src)
		}
		r, size = f, fi.Size()
	}
	if dst == "" || strings.HasSuffix(dst, "/") {
		dst += filepath.Base(src)
	} else if fi, _, err := c.Stat(ctx, dst); err == nil && fi.Type == "dir" {
		dst += "/" + filepath.Base(src)
	}
	if src == "-" && strings.HasSuffix(dst, "/-") {
		return fmt.Errorf("%w: cp from stdin needs a file name: octo cp - :dir/name", errUsage)
	}
	if showProgress {
		p := newProgress(":"+dst, size)
		defer p.done()
		r = p.reader(r)
	}
	_, err := c.Upload(ctx, dst, r, size, opt)
	return err
}

// download copies workspace file src to local path dst ("-": stdout), into
// it when it is a directory. The file appears whole or not at all.
func download(ctx context.Context, c *client.Client, src, dst string, showProgress bool) error {
	body, size, err := c.Download(ctx, src)
	if err != nil {
		return err
	}
	defer body.Close()
	var r io.Reader = body
	if showProgress {
		p := newProgress(":"+src, size)
		defer p.done()
		r = p.reader(r)
	}
	if dst == "-" {
		_, err := io.Copy(os.Stdout, r)
		return err
	}
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		dst = filepath.Join(dst, path.Base("/"+src))
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".octo-cp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing to remove
	n, err := io.Copy(tmp, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("download :%s: got %d of %d bytes", src, n, size)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// progress draws a progress bar on stderr (a terminal).
type progress struct {
	name  string
	total int64
	n     atomic.Int64
	start time.Time
	stop  chan struct{}
	ended chan struct{}
}

func newProgress(name string, total int64) *progress {
	p := &progress{name: name, total: total, start: time.Now(), stop: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw()
				fmt.Fprintln(os.Stderr)
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, n: &p.n} }

func (p *progress) done() { close(p.stop); <-p.ended }

func (p *progress) draw() {
	n := p.n.Load()
	rate := float64(n) / max(time.Since(p.start).Seconds(), 1e-3)
	if p.total <= 0 {
		fmt.Fprintf(os.Stderr, "\r%s  %s  %s/s ", p.name, bytesText(n), bytesText(int64(rate)))
		return
	}
	const width = 30
	frac := min(float64(n)/float64(p.total), 1)
	bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
	fmt.Fprintf(os.Stderr, "\r%s [%s] %3.0f%%  %s / %s  %s/s ", p.name, bar, frac*100, bytesText(n), bytesText(p.total), bytesText(int64(rate)))
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func lsCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("ls", true)
	pos, err := f.parse(args, 0, 1)
	if err != nil {
		return err
	}
	p := ""
	if len(pos) == 1 {
		p = strings.TrimPrefix(pos[0], ":")
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	fi, dir, err := c.Stat(ctx, p)
	if err != nil {
		return err
	}
	entries := []client.FileInfo{fi}
	if dir != nil {
		entries = dir.Entries
	}
	if f.json {
		return printJSON(entries)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', tabwriter.AlignRight)
	for _, e := range entries {
		name := e.Name
		switch e.Type {
		case "dir":
			name += "/"
		case "symlink":
			name += " -> " + e.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t %s\t %s\n", typeChar(e.Type), e.Mode, e.Size, e.ModTime.Local().Format("2006-01-02 15:04"), name)
	}
	return tw.Flush()
}

func typeChar(t string) string {
	switch t {
	case "dir":
		return "d"
	case "symlink":
		return "l"
	case "file":
		return "-"
	}
	return "?"
}
