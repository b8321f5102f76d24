package metrics

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// counters is a counter family: one count per combination of label values.
type counters struct {
	name, help string
	labels     []string

	mu     sync.Mutex
	series map[key]*counter
}

// key is a series' label values; no family has more than maxLabels.
type key [maxLabels]string

const maxLabels = 3

func keyOf(values []string) key {
	var k key
	copy(k[:], values)
	return k
}

type counter struct {
	values []string
	n      uint64
}

func newCounters(name, help string, labels ...string) *counters {
	if len(labels) > maxLabels {
		panic("metrics: too many labels for " + name)
	}
	c := &counters{name: name, help: help, labels: labels, series: map[key]*counter{}}
	if len(labels) == 0 {
		c.series[key{}] = &counter{} // shown as 0 from the start
	}
	return c
}

// add adds n to the series of values (one per label).
func (c *counters) add(n uint64, values ...string) {
	k := keyOf(values)
	c.mu.Lock()
	s := c.series[k]
	if s == nil {
		s = &counter{values: slices.Clone(values)}
		c.series[k] = s
	}
	s.n += n
	c.mu.Unlock()
}

func (c *counters) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, key := range sortedKeys(c.series) {
		s := c.series[key]
		fmt.Fprintf(w, "%s%s %d\n", c.name, labelText(c.labels, s.values, "", ""), s.n)
	}
}

// histograms is a histogram family with fixed bucket bounds.
type histograms struct {
	name, help string
	labels     []string
	bounds     []float64 // upper bounds, ascending; +Inf is implied

	mu     sync.Mutex
	series map[key]*histogram
}

type histogram struct {
	values  []string
	buckets []uint64 // non-cumulative counts per bound, then the +Inf overflow
	sum     float64
	count   uint64
}

func newHistograms(name, help string, bounds []float64, labels ...string) *histograms {
	if len(labels) > maxLabels {
		panic("metrics: too many labels for " + name)
	}
	return &histograms{name: name, help: help, labels: labels, bounds: bounds, series: map[key]*histogram{}}
}

func (h *histograms) observe(v float64, values ...string) {
	i, _ := slices.BinarySearch(h.bounds, v) // first bound >= v, as le means
	k := keyOf(values)
	h.mu.Lock()
	s := h.series[k]
	if s == nil {
		s = &histogram{values: slices.Clone(values), buckets: make([]uint64, len(h.bounds)+1)}
		h.series[k] = s
	}
	s.buckets[i]++
	s.sum += v
	s.count++
	h.mu.Unlock()
}

func (h *histograms) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, key := range sortedKeys(h.series) {
		s := h.series[key]
		var cum uint64
		for i, b := range s.buckets {
			cum += b
			le := "+Inf"
			if i < len(h.bounds) {
				le = formatFloat(h.bounds[i])
			}
			fmt.Fprintf(w, "%s_bucket%s %d\n", h.name, labelText(h.labels, s.values, "le", le), cum)
		}
		fmt.Fprintf(w, "%s_sum%s %s\n", h.name, labelText(h.labels, s.values, "", ""), formatFloat(s.sum))
		fmt.Fprintf(w, "%s_count%s %d\n", h.name, labelText(h.labels, s.values, "", ""), s.count)
	}
}

func sortedKeys[V any](m map[key]V) []key {
	keys := make([]key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return slices.Compare(a[:], b[:]) })
	return keys
}

// labelText is {a="x",b="y"} for the labels and values, plus extra="extraValue"
// when extra is set; "" when there are none.
func labelText(labels, values []string, extra, extraValue string) string {
	if len(labels) == 0 && extra == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
		b.WriteString(`="`)
		b.WriteString(escape(values[i]))
		b.WriteByte('"')
	}
	if extra != "" {
		if len(labels) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extra)
		b.WriteString(`="`)
		b.WriteString(escape(extraValue))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// escape escapes a label value as the text format requires.
func escape(v string) string { return labelEscaper.Replace(v) }

func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
