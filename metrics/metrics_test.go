package metrics

import (
	"maps"
	"testing"
)

func TestWatchRelayReadsTheAllocationsAtEachScrape(t *testing.T) {
	m := New()
	n := 0
	m.WatchRelay(func() int { return n })
	for _, want := range []int{0, 3, 1} {
		n = want
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatalf("Gather: %v", err)
		}
		got := -1.0
		for _, f := range families {
			if f.GetName() == "lepeerchat_turn_allocations" && len(f.GetMetric()) == 1 {
				got = f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got != float64(want) {
			t.Errorf("with %d allocations the gauge says %v", want, got)
		}
	}
}

func TestCountHTTPRefusalCountsByReason(t *testing.T) {
	m := New()
	for _, r := range []string{"client", "closed", "client"} {
		m.CountHTTPRefusal(r)
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "lepeerchat_http_refused_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "reason" {
					got[l.GetValue()] = s.GetCounter().GetValue()
				}
			}
		}
	}
	if want := map[string]float64{"client": 2, "closed": 1}; !maps.Equal(got, want) {
		t.Errorf("refusals by reason: %v, want %v", got, want)
	}
}
