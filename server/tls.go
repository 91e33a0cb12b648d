package server

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/fsutil"
)

// newAccess returns the tokens of cfg's access control, or nil when it is
// off. Access control on without a usable tokens file is a configuration
// error (exit code 2).
func newAccess(cfg configs.Config, log zerolog.Logger) (*auth.Authorizer, error) {
	if !cfg.AuthEnabled() && cfg.Auth.Who == configs.WhoToken {
		// Without tokens every change would go on being recorded with
		// the who its request claims: not what was asked for.
		return nil, &configs.Error{Field: "auth.who", Source: cfg.Source("auth.who"), Err: fmt.Errorf(
			"auth.who is token, but access control is off: %s; changes would be recorded with the who their requests give; "+
				"turn access control on (auth.tokens_file, auth.mode: on) or set auth.who: declared", accessOffWhy(cfg))}
	}
	if !cfg.AuthEnabled() {
		if !configs.IsLoopback(cfg.Addr) {
			log.Warn().Str("addr", cfg.Addr).Msg("access control is off (auth.mode: off) on an address other machines can reach: " +
				"anyone who can connect may read and change everything")
		}
		return nil, nil
	}
	if cfg.Auth.TokensFile == "" {
		why := "auth.mode is on" + setBy(cfg, "auth.mode")
		if cfg.Auth.Mode != configs.AuthOn {
			why = fmt.Sprintf("addr %s%s is not a loopback address and auth.mode is auto", cfg.Addr, setBy(cfg, "addr"))
		}
		return nil, &configs.Error{Field: "auth.tokens_file", Err: fmt.Errorf(
			"access control is on: %s; but no tokens file is set: make one with `ctxd token new` "+
				"(README, \"Access control\"), or set auth.mode: off to serve without access control", why)}
	}
	a, err := auth.NewAuthorizer(cfg.Auth.TokensFile, auth.Options{SignChanges: cfg.Auth.Who == configs.WhoToken})
	if err != nil {
		return nil, tokensFileError(cfg, err)
	}
	log.Info().Str("tokens_file", cfg.Auth.TokensFile).Int("tokens", a.Tokens().Len()).Str("who", cfg.Auth.Who).Msg("access control on")
	return a, nil
}

// tokensFileError is err, met loading the tokens file at the start or at
// a reload, naming the file and where auth.tokens_file was set: the
// source says where the setting was given, as for every other setting;
// the file it names goes in the message. A reload's error named neither,
// only what was wrong ("tokens file: yaml: line 3: ...").
func tokensFileError(cfg configs.Config, err error) error {
	return &configs.Error{Field: "auth.tokens_file", Source: cfg.Source("auth.tokens_file"),
		Err: fmt.Errorf("%s: %w", cfg.Auth.TokensFile, err)}
}

// accessOffWhy says why access control is off.
func accessOffWhy(cfg configs.Config) string {
	if cfg.Auth.Mode == configs.AuthOff {
		return "auth.mode is off" + setBy(cfg, "auth.mode")
	}
	return fmt.Sprintf("addr %s%s is a loopback address, no auth.tokens_file is set and auth.mode is auto", cfg.Addr, setBy(cfg, "addr"))
}

// setBy says where setting field was set, " (set by env CTXD_...)",
// for a message about another setting that it decides; "" at its default.
func setBy(cfg configs.Config, field string) string {
	if src := cfg.Source(field); src != "" {
		return " (set by " + src + ")"
	}
	return ""
}

// certReloader serves the TLS certificate of tls.cert_file and
// tls.key_file, and loads them again on reload (SIGHUP): handshakes after
// a reload use the new certificate, connections already open go on.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// newCertReloader loads the certificate of cfg's tls.*, or returns nil
// when TLS is not configured. A certificate that does not load is a
// configuration error.
func newCertReloader(cfg configs.Config) (*certReloader, error) {
	c := cfg.TLS
	if c.CertFile == "" {
		return nil, nil
	}
	r := &certReloader{certFile: c.CertFile, keyFile: c.KeyFile}
	if err := r.reload(); err != nil {
		return nil, certFileError(cfg, err)
	}
	return r, nil
}

// certFileError is err, met loading the TLS certificate and key at the
// start or at a reload (SIGHUP), naming where tls.cert_file and
// tls.key_file were set, as tokensFileError does for the tokens file (and
// etcdTLS for etcd's pair). A reload's error named the files only.
func certFileError(cfg configs.Config, err error) error {
	return &configs.Error{Field: "tls.cert_file", Source: cfg.Source("tls.cert_file"),
		Err: fmt.Errorf("with tls.key_file%s: %w", setBy(cfg, "tls.key_file"), err)}
}

func (r *certReloader) reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, fsutil.ReadDenied(err))
	}
	r.cert.Store(&cert)
	return nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}
