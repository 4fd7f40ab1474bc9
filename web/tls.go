package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Self-signed certificate parameters. The certificate is regenerated at start
// when it expires within selfSignedRenewBefore, so that a server restarted
// now and then never serves an expired one.
const (
	selfSignedCertName    = "cert.pem"
	selfSignedKeyName     = "key.pem"
	selfSignedValidity    = 365 * 24 * time.Hour
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// baseTLSConfig is the TLS configuration shared by the certificate-files and
// self-signed modes. ACME starts from autocert's own configuration instead,
// which adds its challenge protocol.
func baseTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// certFiles serves a certificate loaded from files and swaps it atomically on
// reload, so that SIGHUP can pick up a renewed certificate without dropping
// connections.
type certFiles struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

// load reads the certificate and key files and makes them current. On error
// the previous certificate stays in use.
func (c *certFiles) load(now time.Time, logger *slog.Logger) error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("web: load certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	if leaf := pair.Leaf; leaf != nil && now.After(leaf.NotAfter) {
		logger.Warn("web: the certificate file holds an expired certificate", "cert", c.certFile, "not_after", leaf.NotAfter)
	}
	c.current.Store(&pair)
	return nil
}

// getCertificate is the tls.Config.GetCertificate of certificate-files mode.
func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

// newACMEManager returns the autocert manager of ACME mode: it accepts the
// CA's terms, requests certificates only for cfg.ACMEDomains and caches them
// (with the account key) in DataDir/acme.
func newACMEManager(cfg Config) *autocert.Manager {
	domains := make([]string, len(cfg.ACMEDomains))
	for i, d := range cfg.ACMEDomains {
		domains[i] = strings.ToLower(strings.TrimSpace(d))
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(filepath.Join(cfg.DataDir, "acme")),
		HostPolicy: autocert.HostWhitelist(domains...),
		Email:      cfg.ACMEEmail,
	}
	if cfg.ACMEDirectoryURL != "" {
		m.Client = &acme.Client{DirectoryURL: cfg.ACMEDirectoryURL}
	}
	return m
}

// selfSignedNames lists the names the self-signed certificate must cover:
// localhost and the loopback addresses, the machine's host name when it is a
// usable DNS name, and the listening IP address when one is given.
func selfSignedNames(hostname, listen string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	if isDNSName(hostname) && hostname != "localhost" {
		names = append(names, hostname)
	}
	if host, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			names = append(names, ip.String())
		}
	}
	return names
}

// isDNSName reports whether s is a plausible DNS host name (letters, digits
// and hyphens in dot-separated labels), as a certificate SAN must be.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// loadOrCreateSelfSigned returns the self-signed certificate kept in dir,
// creating it on first start and recreating it when it cannot be read, is
// about to expire, or no longer covers every one of names. The reason for a
// recreation is logged.
func loadOrCreateSelfSigned(dir string, names []string, now time.Time, logger *slog.Logger) (tls.Certificate, error) {
	certPath := filepath.Join(dir, selfSignedCertName)
	keyPath := filepath.Join(dir, selfSignedKeyName)

	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		logger.Info("web: generating a self-signed certificate", "dir", dir)
	case err != nil:
		logger.Warn("web: the self-signed certificate cannot be used; generating a new one", "dir", dir, "reason", err.Error())
	default:
		reason := selfSignedStale(pair.Leaf, names, now)
		if reason == "" {
			logger.Info("web: using the self-signed certificate", "cert", certPath,
				"not_after", pair.Leaf.NotAfter, "sha256", fingerprint(pair.Leaf))
			return pair, nil
		}
		logger.Warn("web: regenerating the self-signed certificate", "cert", certPath, "reason", reason)
	}

	certPEM, keyPEM, err := generateSelfSigned(names, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("web: create data folder for the self-signed certificate: %w", err)
	}
	// Key first: if the process dies between the two writes, the pair no
	// longer matches and is regenerated on the next start.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("web: parse the generated self-signed certificate: %w", err)
	}
	logger.Warn("web: serving a self-signed certificate; browsers will ask to accept it",
		"cert", certPath, "names", names, "not_after", pair.Leaf.NotAfter, "sha256", fingerprint(pair.Leaf))
	return pair, nil
}

// selfSignedStale returns why leaf must be replaced, or "" if it is fine.
func selfSignedStale(leaf *x509.Certificate, names []string, now time.Time) string {
	if leaf == nil {
		return "no certificate in the file"
	}
	if now.Add(selfSignedRenewBefore).After(leaf.NotAfter) {
		if now.After(leaf.NotAfter) {
			return fmt.Sprintf("expired on %s", leaf.NotAfter.Format(time.RFC3339))
		}
		return fmt.Sprintf("expires soon, on %s", leaf.NotAfter.Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Sprintf("not valid before %s", leaf.NotBefore.Format(time.RFC3339))
	}
	for _, name := range names {
		if err := leaf.VerifyHostname(name); err != nil {
			return fmt.Sprintf("does not cover %s", name)
		}
	}
	return ""
}

// generateSelfSigned creates an ECDSA P-256 certificate for names (DNS names
// and IP addresses), valid for selfSignedValidity from now, and returns it
// and its PKCS #8 private key in PEM. It is an end-entity certificate, not a
// CA: browsers refuse a CA certificate used as a server certificate.
func generateSelfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("web: generate self-signed certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("web: generate self-signed certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "lepeerchat self-signed", Organization: []string{"lepeerchat"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("web: create self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("web: encode self-signed certificate key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder and a rename, so that path never holds a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("web: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("web: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("web: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("web: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("web: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("web: write %s: %w", path, err)
	}
	return nil
}

// fingerprint is the SHA-256 of the certificate, as browsers show it, so an
// operator can compare it with what the browser's warning page displays.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
