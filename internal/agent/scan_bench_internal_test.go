package agent

import "testing"

func BenchmarkScanProcs(b *testing.B) {
	for b.Loop() {
		scanProcs()
	}
}
