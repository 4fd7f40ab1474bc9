// Package metrics defines the Prometheus metrics that lepeerchat exports on
// /metrics: rooms, connected members, messages by type, errors by code,
// HTTP connections and requests refused by the caps, and the built-in
// relay's allocations.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the collectors of one server. Each server owns its own
// registry, so that tests can run several servers in one process.
type Metrics struct {
	Registry  *prometheus.Registry
	Rooms     prometheus.Gauge
	Connected prometheus.Gauge
	Messages  *prometheus.CounterVec
	Errors    *prometheus.CounterVec
	// HTTPRefused counts the HTTP connections and requests refused by the
	// per-address and server-wide caps, by reason: "client" (answered
	// 429), "server" (503), "closed" (closed as accepted).
	HTTPRefused *prometheus.CounterVec
}

// New returns the metrics of one server, registered in a fresh registry
// together with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Rooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lepeerchat_rooms",
			Help: "Rooms known to this node's store.",
		}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lepeerchat_connected_members",
			Help: "Members connected to this node and attached to a room.",
		}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lepeerchat_messages_total",
			Help: "Client messages received, by message type.",
		}, []string{"type"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lepeerchat_errors_total",
			Help: "Negative replies sent to clients, by error code.",
		}, []string{"code"}),
		HTTPRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lepeerchat_http_refused_total",
			Help: "HTTP connections and requests refused by the connection caps, by reason (client: 429, server: 503, closed: closed as accepted).",
		}, []string{"reason"}),
	}
	m.Registry.MustRegister(
		m.Rooms, m.Connected, m.Messages, m.Errors, m.HTTPRefused,
		prometheus.NewGoCollector(),
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
	)
	return m
}

// WatchRelay exports the number of relay allocations the built-in STUN/TURN
// server holds, read from allocations at each scrape: how many browsers
// talk through this node's relay right now (one allocation a relayed peer
// connection and transport).
func (m *Metrics) WatchRelay(allocations func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lepeerchat_turn_allocations",
		Help: "Relay allocations the built-in STUN/TURN server holds now.",
	}, func() float64 { return float64(allocations()) }))
}

// CountHTTPRefusal counts one HTTP connection or request refused for
// reason; it is web.Config.OnRefuse.
func (m *Metrics) CountHTTPRefusal(reason string) {
	m.HTTPRefused.WithLabelValues(reason).Inc()
}
