// Package promtext writes Prometheus' text exposition format (version
// 0.0.4) without the Prometheus client library, and serves it.
//
// Both daemons use it. Linking the client costs more memory than any
// other part of them: its package initialisation (protobuf descriptors
// included) took the agent's resident memory from 7.1 to 10.9 MB and the
// master's from 8.1 to 11.5 MB, a sixth of what it needs for 1 000 agents
// (docs/benchmarks.md). The format is small and stable, and what this
// package writes is read back by the Prometheus parser in its tests and by
// Debian's promtool in make metrics-check.
//
// It serves /metrics with an HTTP/1.1 server of its own (serve.go), not
// net/http's, for the agent's memory (serve.go says how much). The server
// answers GET and HEAD of /metrics and nothing else, one request per
// connection, without keep-alive or gzip.
package promtext

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// ContentType is the text format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Label is one label of a series.
type Label struct{ Name, Value string }

// Writer accumulates metric families. Write each family's header with
// Family, then its series.
type Writer struct{ b []byte }

// Family starts a family: its HELP and TYPE lines. typ is counter, gauge
// or histogram.
func (w *Writer) Family(name, help, typ string) {
	w.b = append(w.b, "# HELP "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = append(w.b, helpEscaper.Replace(help)...)
	w.b = append(w.b, "\n# TYPE "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = append(w.b, typ...)
	w.b = append(w.b, '\n')
}

// Sample writes one series: name{labels} value.
func (w *Writer) Sample(name string, labels []Label, v float64) {
	w.b = append(w.b, name...)
	w.labels(labels, Label{})
	w.b = append(w.b, ' ')
	w.b = appendFloat(w.b, v)
	w.b = append(w.b, '\n')
}

// Histogram writes the series of one histogram: a cumulative _bucket per
// upper bound and +Inf, _sum and _count. counts[i] is the number of
// observations in bucket i alone (at most bounds[i], above bounds[i-1]);
// counts has one more entry than bounds, for the observations above them
// all.
func (w *Writer) Histogram(name string, labels []Label, bounds []float64, counts []uint64, sum float64) {
	var cum uint64
	for i, c := range counts {
		cum += c
		le := math.Inf(1)
		if i < len(bounds) {
			le = bounds[i]
		}
		w.b = append(w.b, name...)
		w.b = append(w.b, "_bucket"...)
		w.labels(labels, Label{"le", string(appendFloat(nil, le))})
		w.b = append(w.b, ' ')
		w.b = strconv.AppendUint(w.b, cum, 10)
		w.b = append(w.b, '\n')
	}
	w.Sample(name+"_sum", labels, sum)
	w.Sample(name+"_count", labels, float64(cum))
}

// Hist is one histogram's state, for Writer.Histogram: Counts[i] is the
// number of observations in bucket i alone (at most Bounds[i], above
// Bounds[i-1]), the last those above every bound. It is not safe for
// concurrent use: its owner locks.
type Hist struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
}

// NewHist returns an empty histogram over bounds (ascending).
func NewHist(bounds []float64) Hist {
	return Hist{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

// Observe counts v in its bucket; le is inclusive, as in the client.
func (h *Hist) Observe(v float64) {
	i, _ := slices.BinarySearch(h.Bounds, v) // the first bound >= v
	h.Counts[i]++
	h.Sum += v
}

// Clone returns a copy that later observations do not change.
func (h Hist) Clone() Hist {
	h.Counts = slices.Clone(h.Counts)
	return h
}

// WriteHist writes h as Histogram does.
func (w *Writer) WriteHist(name string, labels []Label, h Hist) {
	w.Histogram(name, labels, h.Bounds, h.Counts, h.Sum)
}

// labels writes {a="x",b="y"} in the given order, then extra if it has a
// name; nothing when there are none.
func (w *Writer) labels(ls []Label, extra Label) {
	if len(ls) == 0 && extra.Name == "" {
		return
	}
	w.b = append(w.b, '{')
	for i, l := range ls {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.label(l)
	}
	if extra.Name != "" {
		if len(ls) > 0 {
			w.b = append(w.b, ',')
		}
		w.label(extra)
	}
	w.b = append(w.b, '}')
}

func (w *Writer) label(l Label) {
	w.b = append(w.b, l.Name...)
	w.b = append(w.b, `="`...)
	w.b = append(w.b, valueEscaper.Replace(l.Value)...)
	w.b = append(w.b, '"')
}

// Bytes is what has been written.
func (w *Writer) Bytes() []byte { return w.b }

var (
	// The format's escapes: in HELP, backslash and newline; in label
	// values, the double quote as well.
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// appendFloat writes v as the client library does: shortest 'g' form,
// +Inf, -Inf, NaN.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
