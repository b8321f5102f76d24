package session

import "testing"

func BenchmarkScanProcs(b *testing.B) {
	for b.Loop() {
		scanProcs()
	}
}
