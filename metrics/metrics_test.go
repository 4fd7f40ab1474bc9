package metrics

import "testing"

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
