package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// CA is a certificate authority of a test: it issues certificates for
// servers and clients on loopback (mutual TLS).
type CA struct {
	// File is its certificate, PEM (what a peer trusts: a CA file).
	File string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a new authority, its certificate in dir/ca.pem.
func NewCA(t testing.TB, dir string) *CA {
	t.Helper()
	ca := &CA{File: filepath.Join(dir, "ca.pem")}
	tmpl := certTemplate(t, "ctxd test CA")
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = nil
	ca.cert, ca.key = issue(t, tmpl, nil, nil, ca.File, "")
	return ca
}

// Issue writes a new certificate of name, signed by the authority and
// valid for 127.0.0.1 and localhost as a server and as a client, and its
// key, as PEM files.
func (ca *CA) Issue(t testing.TB, certPath, keyPath, name string) *x509.Certificate {
	t.Helper()
	cert, _ := issue(t, certTemplate(t, name), ca.cert, ca.key, certPath, keyPath)
	return cert
}

// SelfSignedCert writes a new certificate of name that is its own
// authority (a server's certificate trusted as it is), valid for
// 127.0.0.1 and localhost, and its key, as PEM files.
func SelfSignedCert(t testing.TB, certPath, keyPath, name string) *x509.Certificate {
	t.Helper()
	tmpl := certTemplate(t, name)
	tmpl.IsCA = true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	cert, _ := issue(t, tmpl, nil, nil, certPath, keyPath)
	return cert
}

func certTemplate(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	require.NoError(t, err)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
}

// issue signs tmpl with parent's key (itself when parent is nil) and
// writes the certificate to certPath and, when keyPath is set, its key.
func issue(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	if keyPath != "" {
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	}
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}
