// Command lepeerchat runs the lepeerchat server: the embedded web client,
// the rooms, and the WebSocket signalling between browsers.
//
// Every flag has an environment-variable equivalent: LEPEERCHAT_ followed by
// the flag's name in upper case with '-' as '_' (for example -discard-after
// is LEPEERCHAT_DISCARD_AFTER). A flag given on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"lepeerchat/metrics"
	sig "lepeerchat/signal"
	"lepeerchat/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "lepeerchat:", err)
		os.Exit(1)
	}
}

// config is everything the flags set.
type config struct {
	web      web.Config
	signal   sig.Config
	logLevel slog.Level
	logJSON  bool
	turn     turnConfig
	// redisURL, when set, keeps the rooms in this Redis, shared by
	// several nodes (rooms.go).
	redisURL string
	// ready, when set, is told the server's URL once it listens.
	ready func(url string)
}

// parseConfig reads flags, then fills the ones not given from the
// environment.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("lepeerchat", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: lepeerchat [flags]\n\n"+
			"Runs the lepeerchat server: private group calls and chat, browser to browser.\n"+
			"Each flag may also be set as an environment variable LEPEERCHAT_<NAME>,\n"+
			"e.g. -discard-after as LEPEERCHAT_DISCARD_AFTER.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		acmeDomains, origins, logFormat, logLevel string
		ratePerSec, peerRate, createPerMinute     float64
	)
	fs.StringVar(&cfg.web.Listen, "listen", web.DefaultListen, "`address` to serve HTTPS (or plain HTTP with -http) on")
	fs.StringVar(&cfg.web.DataDir, "data", "lepeerchat-data", "data `folder` for rooms, the self-signed certificate and the ACME cache; created if missing")
	fs.StringVar(&cfg.web.CertFile, "tls-cert", "", "TLS certificate chain `file` (PEM); with -tls-key")
	fs.StringVar(&cfg.web.KeyFile, "tls-key", "", "TLS private key `file` (PEM); with -tls-cert")
	fs.StringVar(&acmeDomains, "acme-domain", "", "comma-separated `domains` to get certificates for by ACME (HTTP-01 on -acme-http)")
	fs.StringVar(&cfg.web.ACMEEmail, "acme-email", "", "contact `address` given to the ACME certificate authority")
	fs.StringVar(&cfg.web.ACMEHTTPListen, "acme-http", web.DefaultACMEHTTPListen, "`address` answering ACME challenges and redirecting to HTTPS, in ACME mode")
	fs.BoolVar(&cfg.web.PlainHTTP, "http", false, "serve plain HTTP, for running behind a reverse proxy that terminates TLS")
	fs.DurationVar(&cfg.signal.DiscardDelay, "discard-after", 30*time.Minute, "how long a room outlives its last connection")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated extra `hosts` (patterns like *.example.org) allowed to open WebSockets, besides the server's own")
	fs.BoolVar(&cfg.signal.TrustProxy, "trust-proxy", false, "take client addresses from X-Forwarded-For (only behind a proxy that sets it)")
	fs.IntVar(&cfg.signal.MaxConnsPerIP, "max-conns-per-ip", 32, "simultaneous WebSockets allowed from one address")
	fs.Float64Var(&ratePerSec, "rate", 50, "messages per second allowed on one WebSocket, sustained")
	fs.IntVar(&cfg.signal.Burst, "burst", 200, "messages allowed in a burst on one WebSocket")
	fs.Float64Var(&peerRate, "peer-signal-rate", 5, "signals per second one member may send to one other member, sustained")
	fs.IntVar(&cfg.signal.PeerBurst, "peer-signal-burst", 100, "signals one member may send to one other member in a burst")
	fs.Float64Var(&createPerMinute, "create-rate", 6, "rooms per minute one address may create, sustained")
	fs.IntVar(&cfg.signal.CreateBurst, "create-burst", 10, "rooms one address may create in a burst")
	fs.IntVar(&cfg.signal.MaxRooms, "max-rooms", 10000, "most rooms the server holds at once")
	fs.StringVar(&cfg.signal.Node, "node", "main", "`name` of this node in the rooms' records; stable across restarts")
	fs.StringVar(&cfg.redisURL, "redis", "", "`URL` of a Redis (redis://host:6379/0) keeping the rooms for several nodes, instead of the data folder")
	registerHTTPFlags(fs, &cfg.web)
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log `format`: text or json")
	var turnValues turnFlagValues
	registerTURNFlags(fs, &cfg.turn, &turnValues)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "LEPEERCHAT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && !given[f.Name] && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	cfg.web.ACMEDomains = splitList(acmeDomains)
	cfg.signal.OriginPatterns = splitList(origins)
	cfg.signal.Rate = rate.Limit(ratePerSec)
	if math.IsNaN(ratePerSec) || math.IsInf(ratePerSec, 0) {
		// NaN and Inf pass the check below but cannot be sent to clients in
		// the JSON welcome message.
		return nil, fmt.Errorf("-rate must be a finite number, not %v", ratePerSec)
	}
	if cfg.signal.DiscardDelay <= 0 || ratePerSec <= 0 || cfg.signal.Burst <= 0 || cfg.signal.MaxConnsPerIP <= 0 {
		return nil, errors.New("-discard-after, -rate, -burst and -max-conns-per-ip must be positive")
	}
	cfg.web.TrustProxy = cfg.signal.TrustProxy
	if err := checkHTTPFlags(&cfg.web); err != nil {
		return nil, err
	}
	if err := parseAbuseLimits(cfg, peerRate, createPerMinute); err != nil {
		return nil, err
	}
	if err := parseTURNFlags(&cfg.turn, &turnValues); err != nil {
		return nil, err
	}
	if err := cfg.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	switch logFormat {
	case "text", "json":
		cfg.logJSON = logFormat == "json"
	default:
		return nil, fmt.Errorf("-log-format must be text or json, not %q", logFormat)
	}
	return cfg, nil
}

// parseAbuseLimits checks and sets the limits on signals between two
// members and on room creation.
func parseAbuseLimits(cfg *config, peerRate, createPerMinute float64) error {
	for name, v := range map[string]float64{"-peer-signal-rate": peerRate, "-create-rate": createPerMinute} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return fmt.Errorf("%s must be a positive finite number, not %v", name, v)
		}
	}
	if cfg.signal.PeerBurst <= 0 || cfg.signal.CreateBurst <= 0 || cfg.signal.MaxRooms <= 0 {
		return errors.New("-peer-signal-burst, -create-burst and -max-rooms must be positive")
	}
	cfg.signal.PeerRate = rate.Limit(peerRate)
	cfg.signal.CreateRate = rate.Limit(createPerMinute / 60)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// run wires the server from its flags and serves until ctx is done.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}

func serve(ctx context.Context, cfg *config, stderr io.Writer) error {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	var logger *slog.Logger
	if cfg.logJSON {
		logger = slog.New(slog.NewJSONHandler(stderr, opts))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, opts))
	}
	if err := os.MkdirAll(cfg.web.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	st, bus, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			logger.Error("close room store", "err", err)
		}
	}()

	m := metrics.New()
	cfg.signal.Store, cfg.signal.Bus, cfg.signal.Metrics, cfg.signal.Logger = st, bus, m, logger
	ice, stopICE, err := startICE(cfg, logger)
	if err != nil {
		return err
	}
	defer stopICE()
	if ice.Builtin != nil {
		m.WatchRelay(ice.Builtin.AllocationCount)
	}
	cfg.signal.ICE = ice
	signals, err := sig.New(cfg.signal)
	if err != nil {
		return err
	}
	if err := signals.Start(ctx); err != nil {
		return err
	}
	cfg.web.OnRefuse = m.CountHTTPRefusal
	srv, err := web.New(cfg.web, signals, promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}), logger)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	logger.Info("lepeerchat is running", "url", srv.URL(), "mode", srv.Mode(), "data", cfg.web.DataDir)
	if cfg.ready != nil {
		cfg.ready(srv.URL())
	}

	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := signals.Shutdown(shutdownCtx); err != nil {
		logger.Error("close sessions", "err", err)
	}
	if ctx.Err() != nil {
		runErr = <-done
	}
	return runErr
}
