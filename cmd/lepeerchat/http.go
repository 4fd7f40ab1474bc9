package main

import (
	"errors"
	"flag"

	"lepeerchat/web"
)

// registerHTTPFlags defines the flags bounding the HTTP connections and
// placing /metrics.
func registerHTTPFlags(fs *flag.FlagSet, cfg *web.Config) {
	fs.DurationVar(&cfg.ReadTimeout, "http-read-timeout", web.DefaultReadTimeout, "longest time to read one HTTP request, header and body (and a TLS handshake)")
	fs.DurationVar(&cfg.WriteTimeout, "http-write-timeout", web.DefaultWriteTimeout, "longest time to write one HTTP response")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-http-conns-per-ip", web.DefaultMaxConnsPerClient, "simultaneous HTTP connections (behind -trust-proxy: requests) allowed from one address, WebSockets not counted")
	fs.IntVar(&cfg.MaxConns, "max-http-conns", web.DefaultMaxConns, "simultaneous HTTP connections allowed in all, WebSockets not counted")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "`address` to serve /metrics on, in plain HTTP, instead of the main listener")
	fs.StringVar(&cfg.MetricsToken, "metrics-token", "", "bearer `token` /metrics requires (better set as LEPEERCHAT_METRICS_TOKEN, out of the process list)")
}

// checkHTTPFlags refuses bounds that would be no bounds.
func checkHTTPFlags(cfg *web.Config) error {
	if cfg.ReadTimeout <= 0 || cfg.WriteTimeout <= 0 || cfg.MaxConnsPerClient <= 0 || cfg.MaxConns <= 0 {
		return errors.New("-http-read-timeout, -http-write-timeout, -max-http-conns-per-ip and -max-http-conns must be positive")
	}
	return nil
}
