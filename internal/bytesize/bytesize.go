// Package bytesize parses sizes as people write them in octo's config and
// flags: a number of bytes, or one with a binary unit ("512k", "64M", "2G").
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse parses "123", "512k", "64M", "2G", "1T" (powers of 1024, any case;
// a trailing "B" or "iB" is allowed: "8MiB").
func Parse(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "ib"), "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		case 't':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (use e.g. 1048576, \"512k\", \"64M\", \"2G\")", s)
	}
	return v * mult, nil
}
