package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	sig "lepeerchat/signal"
	"lepeerchat/turn"
	"lepeerchat/web"
)

// allFlags is every flag the binary has. TestUsage checks that the usage
// text lists exactly these, so a new flag must be added here (and to
// flagCases).
var allFlags = []string{
	"listen", "data", "tls-cert", "tls-key", "acme-domain", "acme-email", "acme-http", "http",
	"discard-after", "allowed-origins", "trust-proxy", "max-conns-per-ip", "rate", "burst", "node",
	"peer-signal-rate", "peer-signal-burst", "create-rate", "create-burst", "max-rooms",
	"log-level", "log-format", "redis",
	"http-read-timeout", "http-write-timeout", "max-http-conns-per-ip", "max-http-conns", "metrics-listen", "metrics-token",
	"turn", "turn-listen", "turn-tls-listen", "turn-public-ip", "turn-host", "turn-relay-ports",
	"turn-allow-peer", "turn-max-allocations", "turn-max-allocations-per-ip", "turn-relay-reserve", "turn-secret", "turn-credential-ttl", "ice-servers",
}

// envName is the environment variable standing for a flag.
func envName(flagName string) string {
	return "LEPEERCHAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// defaultConfig is the configuration with no flag and no variable set.
func defaultConfig() *config {
	return &config{
		web: web.Config{
			Listen:            web.DefaultListen,
			DataDir:           "lepeerchat-data",
			ACMEHTTPListen:    web.DefaultACMEHTTPListen,
			ReadTimeout:       web.DefaultReadTimeout,
			WriteTimeout:      web.DefaultWriteTimeout,
			MaxConnsPerClient: web.DefaultMaxConnsPerClient,
			MaxConns:          web.DefaultMaxConns,
		},
		signal: sig.Config{
			DiscardDelay:  30 * time.Minute,
			MaxConnsPerIP: 32,
			Rate:          50,
			Burst:         200,
			Node:          "main",
			PeerRate:      5,
			PeerBurst:     100,
			CreateRate:    rate.Limit(6.0 / 60),
			CreateBurst:   10,
			MaxRooms:      10000,
		},
		logLevel: slog.LevelInfo,
		turn: turnConfig{
			Enabled:        true,
			Listen:         ":3478",
			MinPort:        49152,
			MaxPort:        65535,
			MaxAllocs:      128,
			ReservePercent: 10,
			TTL:            4 * time.Hour,
		},
	}
}

// mapEnv is a getenv over a map.
func mapEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func parse(t *testing.T, args []string, env map[string]string) (*config, string, error) {
	t.Helper()
	var out bytes.Buffer
	cfg, err := parseConfig(args, mapEnv(env), &out)
	return cfg, out.String(), err
}

func TestParseConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"nothing", nil, nil},
		{"empty args", []string{}, nil},
		// An empty variable counts as unset.
		{"empty variables", nil, map[string]string{"LEPEERCHAT_LISTEN": "", "LEPEERCHAT_RATE": "", "LEPEERCHAT_HTTP": ""}},
		// Variables without the prefix, or naming no flag, are not read.
		{"unrelated variables", nil, map[string]string{"LISTEN": ":1", "RATE": "-1", "LEPEERCHAT_NO_SUCH_FLAG": "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, out, err := parse(t, tc.args, tc.env)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if want := defaultConfig(); !reflect.DeepEqual(cfg, want) {
				t.Errorf("config = %+v\nwant     %+v", cfg, want)
			}
			if out != "" {
				t.Errorf("parseConfig wrote %q", out)
			}
		})
	}
}

// flagCases sets every flag to a value other than its default.
var flagCases = []struct {
	flag  string
	value string
	want  func(*config)
}{
	{"listen", "127.0.0.1:9443", func(c *config) { c.web.Listen = "127.0.0.1:9443" }},
	{"data", "/var/lib/lepeerchat", func(c *config) { c.web.DataDir = "/var/lib/lepeerchat" }},
	{"tls-cert", "/etc/tls/chain.pem", func(c *config) { c.web.CertFile = "/etc/tls/chain.pem" }},
	{"tls-key", "/etc/tls/key.pem", func(c *config) { c.web.KeyFile = "/etc/tls/key.pem" }},
	{"acme-domain", " chat.example.org, ,talk.example.org,", func(c *config) {
		c.web.ACMEDomains = []string{"chat.example.org", "talk.example.org"}
	}},
	{"acme-email", "ops@example.org", func(c *config) { c.web.ACMEEmail = "ops@example.org" }},
	{"acme-http", ":8080", func(c *config) { c.web.ACMEHTTPListen = ":8080" }},
	{"http", "true", func(c *config) { c.web.PlainHTTP = true }},
	{"discard-after", "90s", func(c *config) { c.signal.DiscardDelay = 90 * time.Second }},
	{"allowed-origins", "*.example.org, app.example.net", func(c *config) {
		c.signal.OriginPatterns = []string{"*.example.org", "app.example.net"}
	}},
	{"trust-proxy", "true", func(c *config) { c.signal.TrustProxy, c.web.TrustProxy = true, true }},
	{"max-conns-per-ip", "4", func(c *config) { c.signal.MaxConnsPerIP = 4 }},
	{"rate", "2.5", func(c *config) { c.signal.Rate = rate.Limit(2.5) }},
	{"burst", "7", func(c *config) { c.signal.Burst = 7 }},
	{"peer-signal-rate", "2.5", func(c *config) { c.signal.PeerRate = 2.5 }},
	{"peer-signal-burst", "40", func(c *config) { c.signal.PeerBurst = 40 }},
	{"create-rate", "30", func(c *config) { c.signal.CreateRate = rate.Limit(30.0 / 60) }},
	{"create-burst", "3", func(c *config) { c.signal.CreateBurst = 3 }},
	{"max-rooms", "500", func(c *config) { c.signal.MaxRooms = 500 }},
	{"node", "node-b", func(c *config) { c.signal.Node = "node-b" }},
	{"redis", "redis://127.0.0.1:6379/2", func(c *config) { c.redisURL = "redis://127.0.0.1:6379/2" }},
	{"http-read-timeout", "5s", func(c *config) { c.web.ReadTimeout = 5 * time.Second }},
	{"http-write-timeout", "1m", func(c *config) { c.web.WriteTimeout = time.Minute }},
	{"max-http-conns-per-ip", "8", func(c *config) { c.web.MaxConnsPerClient = 8 }},
	{"max-http-conns", "500", func(c *config) { c.web.MaxConns = 500 }},
	{"metrics-listen", "127.0.0.1:9100", func(c *config) { c.web.MetricsListen = "127.0.0.1:9100" }},
	{"metrics-token", "scrape-me", func(c *config) { c.web.MetricsToken = "scrape-me" }},
	{"log-level", "debug", func(c *config) { c.logLevel = slog.LevelDebug }},
	{"log-format", "json", func(c *config) { c.logJSON = true }},
	{"turn", "false", func(c *config) { c.turn.Enabled = false }},
	{"turn-listen", "127.0.0.1:3479", func(c *config) { c.turn.Listen = "127.0.0.1:3479" }},
	{"turn-tls-listen", ":5349", func(c *config) { c.turn.TLSListen = ":5349" }},
	{"turn-public-ip", "203.0.113.7", func(c *config) { c.turn.PublicIP = netip.MustParseAddr("203.0.113.7") }},
	{"turn-host", "Turn.Example.Org", func(c *config) { c.turn.Host = "turn.example.org" }},
	{"turn-relay-ports", "40000-40999", func(c *config) { c.turn.MinPort, c.turn.MaxPort = 40000, 40999 }},
	{"turn-allow-peer", "10.0.0.0/8, 192.168.1.7", func(c *config) {
		c.turn.AllowPeers = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
	}},
	{"turn-max-allocations", "16", func(c *config) { c.turn.MaxAllocs = 16 }},
	{"turn-max-allocations-per-ip", "40", func(c *config) { c.turn.MaxAllocsPerIP = 40 }},
	{"turn-relay-reserve", "0", func(c *config) { c.turn.ReservePercent = 0 }},
	{"turn-secret", "0123456789abcdef-cluster", func(c *config) { c.turn.Secret = "0123456789abcdef-cluster" }},
	{"turn-credential-ttl", "90m", func(c *config) { c.turn.TTL = 90 * time.Minute }},
	{"ice-servers", "stun:stun.example.org, turn:coturn.example.org:3478?transport=udp", func(c *config) {
		c.turn.ICEServers = []turn.ICEServer{
			{URLs: []string{"stun:stun.example.org"}},
			{URLs: []string{"turn:coturn.example.org:3478?transport=udp"}},
		}
	}},
}

func TestParseConfigEachFlagAndVariable(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range flagCases {
		covered[tc.flag] = true
		want := defaultConfig()
		tc.want(want)
		check := func(t *testing.T, args []string, env map[string]string) {
			t.Helper()
			cfg, _, err := parse(t, args, env)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("config = %+v\nwant     %+v", cfg, want)
			}
		}
		t.Run("flag "+tc.flag+"=value", func(t *testing.T) {
			check(t, []string{"-" + tc.flag + "=" + tc.value}, nil)
		})
		t.Run("flag --"+tc.flag+" value", func(t *testing.T) {
			if tc.value == "true" {
				// A boolean flag takes no separate value.
				check(t, []string{"--" + tc.flag}, nil)
				return
			}
			if tc.value == "false" {
				// A boolean flag that defaults to true is turned off
				// only with "=".
				check(t, []string{"--" + tc.flag + "=false"}, nil)
				return
			}
			check(t, []string{"--" + tc.flag, tc.value}, nil)
		})
		t.Run("env "+envName(tc.flag), func(t *testing.T) {
			check(t, nil, map[string]string{envName(tc.flag): tc.value})
		})
	}
	for _, f := range allFlags {
		if !covered[f] {
			t.Errorf("flag -%s has no case in flagCases", f)
		}
	}
}

func TestParseConfigVariantsAndPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*config)
	}{
		{
			name: "flag wins over variable",
			args: []string{"-listen", "127.0.0.1:1111"},
			env:  map[string]string{"LEPEERCHAT_LISTEN": "127.0.0.1:2222"},
			want: func(c *config) { c.web.Listen = "127.0.0.1:1111" },
		},
		{
			name: "flag set to its default still wins",
			args: []string{"-discard-after=30m"},
			env:  map[string]string{"LEPEERCHAT_DISCARD_AFTER": "1m"},
			want: func(*config) {},
		},
		{
			name: "false boolean flag wins over true variable",
			args: []string{"-http=false"},
			env:  map[string]string{"LEPEERCHAT_HTTP": "true"},
			want: func(*config) {},
		},
		{
			name: "flag given as empty string wins",
			args: []string{"-node="},
			env:  map[string]string{"LEPEERCHAT_NODE": "node-b"},
			want: func(c *config) { c.signal.Node = "" },
		},
		{
			name: "invalid variable ignored when the flag is given",
			args: []string{"-burst", "5"},
			env:  map[string]string{"LEPEERCHAT_BURST": "lots"},
			want: func(c *config) { c.signal.Burst = 5 },
		},
		{
			name: "flags and variables mix",
			args: []string{"-rate", "10", "-log-format", "json"},
			env: map[string]string{
				"LEPEERCHAT_RATE":        "99",
				"LEPEERCHAT_BURST":       "20",
				"LEPEERCHAT_TRUST_PROXY": "1",
				"LEPEERCHAT_LOG_LEVEL":   "WARN",
			},
			want: func(c *config) {
				c.signal.Rate, c.signal.Burst, c.signal.TrustProxy, c.web.TrustProxy = 10, 20, true, true
				c.logJSON, c.logLevel = true, slog.LevelWarn
			},
		},
		{
			name: "all log levels",
			args: []string{"-log-level=error"},
			want: func(c *config) { c.logLevel = slog.LevelError },
		},
		{
			name: "log level is case-insensitive",
			args: []string{"-log-level=Info"},
			want: func(*config) {},
		},
		{
			name: "explicit text log format",
			env:  map[string]string{"LEPEERCHAT_LOG_FORMAT": "text"},
			want: func(*config) {},
		},
		{
			name: "boolean variable spelled 0",
			env:  map[string]string{"LEPEERCHAT_HTTP": "0"},
			want: func(*config) {},
		},
		{
			name: "a -- ends the flags",
			args: []string{"-burst", "9", "--"},
			want: func(c *config) { c.signal.Burst = 9 },
		},
		{
			name: "list of only separators is empty",
			args: []string{"-allowed-origins", " , ,"},
			want: func(*config) {},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parse(t, tc.args, tc.env)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			want := defaultConfig()
			tc.want(want)
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("config = %+v\nwant     %+v", cfg, want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		// want are substrings the error must contain: the flag or the
		// variable at fault and, where useful, the bad value.
		want []string
	}{
		{"bad duration", []string{"-discard-after", "soon"}, nil, []string{"-discard-after", "soon"}},
		{"zero duration", []string{"-discard-after=0s"}, nil, []string{"-discard-after", "positive"}},
		{"negative duration", []string{"-discard-after=-5m"}, nil, []string{"-discard-after", "positive"}},
		{"negative rate", []string{"-rate", "-1"}, nil, []string{"-rate", "positive"}},
		{"zero rate", []string{"-rate=0"}, nil, []string{"-rate", "positive"}},
		{"rate not a number", []string{"-rate=fast"}, nil, []string{"-rate", "fast"}},
		{"rate NaN", []string{"-rate=NaN"}, nil, []string{"-rate", "finite"}},
		{"rate infinite", []string{"-rate=Inf"}, nil, []string{"-rate", "finite"}},
		{"rate minus infinite", []string{"-rate=-Inf"}, nil, []string{"-rate"}},
		{"zero burst", []string{"-burst=0"}, nil, []string{"-burst", "positive"}},
		{"negative burst", []string{"-burst=-3"}, nil, []string{"-burst", "positive"}},
		{"fractional burst", []string{"-burst=1.5"}, nil, []string{"-burst", "1.5"}},
		{"zero max conns", []string{"-max-conns-per-ip=0"}, nil, []string{"-max-conns-per-ip", "positive"}},
		{"zero read timeout", []string{"-http-read-timeout=0s"}, nil, []string{"-http-read-timeout", "positive"}},
		{"negative write timeout", []string{"-http-write-timeout=-1s"}, nil, []string{"-http-write-timeout", "positive"}},
		{"zero HTTP conns per address", []string{"-max-http-conns-per-ip=0"}, nil, []string{"-max-http-conns-per-ip", "positive"}},
		{"negative HTTP conns", nil, map[string]string{"LEPEERCHAT_MAX_HTTP_CONNS": "-4"}, []string{"-max-http-conns", "positive"}},
		{"zero peer signal rate", []string{"-peer-signal-rate=0"}, nil, []string{"-peer-signal-rate", "positive"}},
		{"infinite peer signal rate", []string{"-peer-signal-rate=Inf"}, nil, []string{"-peer-signal-rate", "finite"}},
		{"NaN create rate", []string{"-create-rate=NaN"}, nil, []string{"-create-rate", "finite"}},
		{"negative create rate", []string{"-create-rate=-6"}, nil, []string{"-create-rate", "positive"}},
		{"zero peer signal burst", []string{"-peer-signal-burst=0"}, nil, []string{"-peer-signal-burst", "positive"}},
		{"negative create burst", []string{"-create-burst=-1"}, nil, []string{"-create-burst", "positive"}},
		{"zero max rooms", []string{"-max-rooms=0"}, nil, []string{"-max-rooms", "positive"}},
		{"unknown log level", []string{"-log-level=loud"}, nil, []string{"-log-level", "loud"}},
		{"empty log level", []string{"-log-level="}, nil, []string{"-log-level"}},
		{"unknown log format", []string{"-log-format", "xml"}, nil, []string{"-log-format", "xml"}},
		{"bad boolean", []string{"-http=maybe"}, nil, []string{"-http", "maybe"}},
		{"unknown flag", []string{"-no-such-flag"}, nil, []string{"no-such-flag"}},
		{"missing value", []string{"-listen"}, nil, []string{"-listen"}},
		{"stray argument", []string{"serve"}, nil, []string{"unexpected argument", `"serve"`}},
		{"stray argument after flags", []string{"-http", "extra"}, nil, []string{"unexpected argument", `"extra"`}},
		{"stray argument after --", []string{"--", "-http"}, nil, []string{"unexpected argument", `"-http"`}},
		{"invalid duration variable", nil, map[string]string{"LEPEERCHAT_DISCARD_AFTER": "soon"},
			[]string{"LEPEERCHAT_DISCARD_AFTER", "soon"}},
		{"invalid boolean variable", nil, map[string]string{"LEPEERCHAT_HTTP": "yes"},
			[]string{"LEPEERCHAT_HTTP", "yes"}},
		{"invalid integer variable", nil, map[string]string{"LEPEERCHAT_BURST": "lots"},
			[]string{"LEPEERCHAT_BURST", "lots"}},
		{"invalid float variable", nil, map[string]string{"LEPEERCHAT_RATE": "fast"},
			[]string{"LEPEERCHAT_RATE", "fast"}},
		// Values that parse but are out of range are checked after the
		// variables are merged in, so the error names the flag.
		{"negative rate variable", nil, map[string]string{"LEPEERCHAT_RATE": "-2"}, []string{"-rate", "positive"}},
		{"unknown log level variable", nil, map[string]string{"LEPEERCHAT_LOG_LEVEL": "loud"}, []string{"-log-level", "loud"}},
		{"unknown log format variable", nil, map[string]string{"LEPEERCHAT_LOG_FORMAT": "yaml"}, []string{"-log-format", "yaml"}},
		{"IPv6 relay address", []string{"-turn-public-ip", "2001:db8::1"}, nil, []string{"-turn-public-ip", "IPv4"}},
		{"relay address not an address", []string{"-turn-public-ip", "turn.example.org"}, nil, []string{"-turn-public-ip"}},
		{"bad TURN host", []string{"-turn-host", "a b"}, nil, []string{"-turn-host"}},
		{"inverted relay ports", []string{"-turn-relay-ports", "5000-4000"}, nil, []string{"-turn-relay-ports", "5000-4000"}},
		{"relay ports not a range", []string{"-turn-relay-ports", "5000"}, nil, []string{"-turn-relay-ports"}},
		{"relay port zero", []string{"-turn-relay-ports", "0-10"}, nil, []string{"-turn-relay-ports"}},
		{"relay port too high", []string{"-turn-relay-ports", "5000-70000"}, nil, []string{"-turn-relay-ports"}},
		{"bad peer range", []string{"-turn-allow-peer", "10.0.0.0/33"}, nil, []string{"-turn-allow-peer"}},
		{"bad ICE server", []string{"-ice-servers", "http://example.org"}, nil, []string{"-ice-servers"}},
		{"bad ICE server JSON", nil, map[string]string{"LEPEERCHAT_ICE_SERVERS": `[{"url":"stun:a.org"}]`}, []string{"-ice-servers"}},
		{"TURN listen without port", []string{"-turn-listen", "127.0.0.1"}, nil, []string{"-turn-listen"}},
		{"TURN over TLS without port", []string{"-turn-tls-listen", "5349"}, nil, []string{"-turn-tls-listen"}},
		{"short secret", []string{"-turn-secret", "short"}, nil, []string{"-turn-secret"}},
		{"zero allocations", []string{"-turn-max-allocations", "0"}, nil, []string{"-turn-max-allocations"}},
		{"negative allocations per address", []string{"-turn-max-allocations-per-ip", "-1"}, nil, []string{"-turn-max-allocations-per-ip"}},
		{"reserve over 90 percent", []string{"-turn-relay-reserve", "91"}, nil, []string{"-turn-relay-reserve"}},
		{"credential lifetime too short", []string{"-turn-credential-ttl", "30s"}, nil, []string{"-turn-credential-ttl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parse(t, tc.args, tc.env)
			if err == nil {
				t.Fatalf("parseConfig succeeded with %+v; want an error", cfg)
			}
			if cfg != nil {
				t.Errorf("parseConfig returned a config along with error %v", err)
			}
			if errors.Is(err, flag.ErrHelp) {
				t.Fatalf("error is flag.ErrHelp, want a real error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			cfg, out, err := parse(t, []string{arg}, nil)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("parseConfig(%s) = %v, %v; want flag.ErrHelp", arg, cfg, err)
			}
			// The variables are not read, so a broken one does not hide
			// the help.
			if _, _, err := parse(t, []string{arg}, map[string]string{"LEPEERCHAT_RATE": "fast"}); !errors.Is(err, flag.ErrHelp) {
				t.Errorf("with an invalid variable: %v; want flag.ErrHelp", err)
			}
			checkUsage(t, out)
		})
	}
}

// checkUsage checks that the usage text lists exactly allFlags and explains
// the environment variables.
func checkUsage(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{"Usage: lepeerchat", "LEPEERCHAT_", "LEPEERCHAT_DISCARD_AFTER", "-discard-after"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage does not mention %q:\n%s", want, out)
		}
	}
	var listed []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out, -1) {
		listed = append(listed, m[1])
	}
	want := slices.Clone(allFlags)
	slices.Sort(want)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("usage lists flags %v\nwant               %v\nusage:\n%s", listed, want, out)
	}
}

func TestParseConfigErrorPrintsUsage(t *testing.T) {
	// The flag package explains a malformed command line on the output.
	_, out, err := parse(t, []string{"-rate=fast"}, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	if !strings.Contains(out, "-rate") || !strings.Contains(out, "Usage:") {
		t.Errorf("output does not explain the error:\n%s", out)
	}
}
