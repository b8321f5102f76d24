package bytesize

import "testing"

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true}, {"0", 0, true}, {" 64M ", 64 << 20, true},
		{"8MiB", 8 << 20, true}, {"8M", 8 << 20, true}, {"8m", 8 << 20, true}, {"8mb", 8 << 20, true},
		{"512k", 512 << 10, true}, {"512K", 512 << 10, true}, {"1GiB", 1 << 30, true}, {"2g", 2 << 30, true},
		{"1T", 1 << 40, true}, {"1t", 1 << 40, true},
		{"-1", 0, false}, {"lots", 0, false}, {"8XB", 0, false}, {"", 0, false}, {"1.5G", 0, false},
		{"9999999999T", 0, false}, // overflows
	} {
		got, err := Parse(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
