package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/client"
)

// credentialFlags registers --token (env CTXD_TOKEN) and --cacert (env
// CTXD_CACERT) on a client command.
func (c *common) credentialFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.token, "token", c.a.getenv(envToken),
		"access `token` for a server with access control (env CTXD_TOKEN, which other users cannot see in the process list)")
	f.StringVar(&c.caCert, "cacert", c.a.getenv(envCACert),
		"PEM `file` of the CA (or self-signed certificate) that signed an https server's certificate (env CTXD_CACERT)")
}

// clientOptions are the options of the client of --server: who, token, TLS.
func (c *common) clientOptions() ([]client.Option, error) {
	hc := &http.Client{}
	if c.caCert != "" {
		pem, err := os.ReadFile(c.caCert)
		if err != nil {
			return nil, &usageError{fmt.Errorf("--cacert: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &usageError{fmt.Errorf("--cacert: %s holds no PEM certificate", c.caCert)}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
	}
	opts := []client.Option{client.WithWho(c.author()), client.WithHTTPClient(hc)}
	if strings.ContainsFunc(c.token, unicode.IsControl) {
		// Go's HTTP client refused to send it, which read as a server down.
		return nil, usagef("--token (or CTXD_TOKEN) holds a control character: a trailing newline or carriage return from the file it came from?")
	}
	if c.token != "" {
		opts = append(opts, client.WithToken(c.token))
	}
	return opts, nil
}
