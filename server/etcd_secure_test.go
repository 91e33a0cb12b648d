package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/server"
)

// store.backend etcd on an etcd secured as production runs it: clients
// over TLS with certificates of the deployment's CA (--client-cert-auth),
// authentication on, ctxd's etcd user allowed its prefix and nothing
// else, and auth tokens that expire within the test (1 s). Everything
// ctxd asks of etcd works so: writes, a transaction, an expiring key (a
// lease), cached reads, the feed's watch, status, a snapshot and its
// full restore, compaction; and the feed goes on after the tokens have
// expired and etcd restarted. The controls: a wrong password, no client
// certificate, and a user whose role holds another prefix each keep the
// server from starting, with an error that says why.
// startTLSEtcd starts an etcd that serves clients over TLS only, with a
// certificate of a new CA, and asks them for one of that CA (options
// configure it further). file names a file in the test's directory of
// certificates, where the CA issues the clients' (ca.Issue).
func startTLSEtcd(t *testing.T, options ...func(*embed.Config)) (file func(name string) string, ca *testkit.CA, e *etcdkit.Server) {
	t.Helper()
	dir := t.TempDir()
	file = func(name string) string { return filepath.Join(dir, name) }
	ca = testkit.NewCA(t, dir)
	ca.Issue(t, file("etcd.pem"), file("etcd-key.pem"), "etcd")
	e, err := etcdkit.Start(append([]func(*embed.Config){etcdkit.WithClientTLS(ca.File, file("etcd.pem"), file("etcd-key.pem"))}, options...)...)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	return file, ca, e
}

func TestSecuredEtcd(t *testing.T) {
	file, ca, e := startTLSEtcd(t, func(c *embed.Config) { c.AuthTokenTTL = 1 })
	// Not the name of an etcd user: etcd would take a client
	// certificate's name as the user when a request carries no token.
	ca.Issue(t, file("ctxd.pem"), file("ctxd-key.pem"), "ctxd-client")
	require.Contains(t, e.Endpoint, "https://")

	prefix := etcdkit.Prefix(etcdkit.Name(t))
	rootTLS, err := transport.TLSInfo{CertFile: file("ctxd.pem"), KeyFile: file("ctxd-key.pem"), TrustedCAFile: ca.File}.ClientConfig()
	require.NoError(t, err)
	require.NoError(t, etcdkit.EnableAuth(clientv3.Config{Endpoints: []string{e.Endpoint}, TLS: rootTLS, DialTimeout: 10 * time.Second},
		"root-secret", "ctxd", "ctxd-secret", prefix))

	secured := func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{e.Endpoint}
		c.Etcd.Prefix = prefix
		c.Etcd.CAFile, c.Etcd.CertFile, c.Etcd.KeyFile = ca.File, file("ctxd.pem"), file("ctxd-key.pem")
		c.Etcd.Username, c.Etcd.Password = "ctxd", "ctxd-secret"
	}
	srv := testkit.StartServer(t, testkit.WithConfig(secured))
	c := instanceClient(t, srv.URL)
	ctx := t.Context()
	ws := testkit.DialWatch(t, srv.WatchURL(nil), nil)
	ws.Expect(ctxd.TypeSubscribed)

	put, err := c.Put(ctx, "default", "a", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	_, err = c.Txn(ctx, []client.TxnOp{
		{Op: "put", Key: "b", Value: json.RawMessage(`2`)},
		{Op: "put", Key: "c", Value: json.RawMessage(`3`)},
	}, client.TxnOptions{})
	require.NoError(t, err)
	leased, err := c.Put(ctx, "default", "lease", json.RawMessage(`"held"`), client.PutOptions{TTL: time.Second})
	require.NoError(t, err)
	changes := ws.Changes(leased.ModRev)
	require.Len(t, changes, 4, "a, b, c and the expiring key, each once")
	assert.Equal(t, put.ModRev, changes[0].Rev)

	testkit.Eventually(t, func() bool {
		_, err := c.Get(ctx, "default", "lease", client.GetOptions{})
		return client.IsNotFound(err)
	}, "the expiring key expires (etcd revokes its lease)")
	expiry := ws.Next()
	assert.Equal(t, "lease", expiry.Key)
	assert.Equal(t, "delete", expiry.Op)
	rec, err := c.Get(ctx, "default", "b", client.GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `2`, string(rec.Value))

	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 3, st.Keys)
	assert.Positive(t, st.DBSizeBytes, "etcd's status answers an authenticated user")

	snap, err := c.CreateSnapshot(ctx)
	require.NoError(t, err)
	_, err = c.Put(ctx, "default", "a", json.RawMessage(`10`), client.PutOptions{})
	require.NoError(t, err)
	ws.Expect(ctxd.TypeContextUpdated)
	_, err = c.RestoreSnapshot(ctx, snap.ID, client.RestoreOptions{})
	require.NoError(t, err)
	ws.Expect(ctxd.TypeReset)
	rec, err = c.Get(ctx, "default", "a", client.GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(rec.Value), "restored")

	// Compaction is etcd's root role's alone (it compacts every prefix):
	// 501 with what to do instead, and retention says so once and stops.
	// The control: an instance whose etcd user is root compacts.
	// (A write first: history starts at the restore, and a compaction
	// at or below it has nothing to do.)
	written, err := c.Put(ctx, "default", "b", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, keysOf(ws.Changes(written.ModRev)))
	_, err = c.Compact(ctx, written.ModRev, 1)
	var refused *client.APIError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, ctxd.CodeNotSupported, refused.Code, "%v", err)
	assert.Contains(t, refused.Message, "root role")
	// The instance's last request to etcd for a while: its token's life
	// (1 s, reset at each use) runs out from here, while other instances
	// (each with tokens of its own) show retention and a root compaction.
	idleSince := time.Now()
	retaining := testkit.StartServer(t, testkit.WithConfig(secured), testkit.WithConfig(func(c *configs.Config) {
		c.History.KeepVersions, c.History.KeepRevisions, c.History.CompactInterval = 1, 1, 10*time.Millisecond
	}))
	testkit.Eventually(t, func() bool { return strings.Contains(retaining.Logs.String(), "history retention is off") },
		"retention gives up, saying why")
	time.Sleep(100 * time.Millisecond) // ten more ticks
	assert.Equal(t, 1, strings.Count(retaining.Logs.String(), "history retention"), "said once")
	retaining.Stop()
	root := testkit.StartServer(t, testkit.WithConfig(secured), testkit.WithConfig(func(c *configs.Config) {
		c.Etcd.Username, c.Etcd.Password = "root", "root-secret"
	}))
	compacted, err := instanceClient(t, root.URL).Compact(ctx, written.ModRev, 1)
	require.NoError(t, err, "etcd's root compacts")
	assert.Equal(t, written.ModRev, compacted.Revision)
	root.Stop()

	// Past the tokens' life, then across a restart of etcd: writes work
	// and the feed goes on. etcd drops an expired token at its next
	// once-a-second sweep: 2 s after its last use it is gone.
	time.Sleep(time.Until(idleSince.Add(2 * time.Second)))
	after, err := c.Put(ctx, "default", "d", json.RawMessage(`4`), client.PutOptions{})
	require.NoError(t, err, "a new token")
	got := ws.Changes(after.ModRev)
	assert.Equal(t, []string{"d"}, keysOf(got))
	require.NoError(t, e.Restart())
	// etcd's tokens lived in its memory: each request needs a new one.
	testkit.Eventually(t, func() bool { return c.Ready(ctx) == nil }, "ready again once etcd is back")
	after, err = c.Put(ctx, "default", "e", json.RawMessage(`5`), client.PutOptions{})
	require.NoError(t, err)
	got = ws.Changes(after.ModRev)
	assert.Equal(t, []string{"e"}, keysOf(got))

	// etcd refusing ctxd's user at run time (its role lost the prefix):
	// 503 unavailable, nothing applied, never outcome_unknown.
	rootCli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, TLS: rootTLS, Username: "root", Password: "root-secret"})
	require.NoError(t, err)
	defer rootCli.Close()
	_, err = rootCli.RoleRevokePermission(ctx, "ctxd", prefix, clientv3.GetPrefixRangeEnd(prefix))
	require.NoError(t, err)
	_, err = c.Put(ctx, "default", "f", json.RawMessage(`6`), client.PutOptions{})
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, ctxd.CodeUnavailable, refused.Code, "%v", err)
	assert.Contains(t, refused.Message, "needs a role with readwrite on etcd.prefix")
	// /readyz says so too, not that etcd "does not answer".
	err = c.Ready(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refuses ctxd's etcd user: etcdserver: permission denied (ctxd's etcd user, etcd.username, needs a role with readwrite on etcd.prefix)")
	assert.NotContains(t, err.Error(), "does not answer")
	// Given back, the prefix serves again, f was never written, and the
	// feed goes on.
	_, err = rootCli.RoleGrantPermission(ctx, "ctxd", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	testkit.Eventually(t, func() bool {
		_, err := c.Get(ctx, "default", "f", client.GetOptions{})
		return client.IsNotFound(err)
	}, "f was never written")
	after, err = c.Put(ctx, "default", "g", json.RawMessage(`7`), client.PutOptions{})
	require.NoError(t, err)
	got = ws.Changes(after.ModRev)
	assert.Equal(t, []string{"g"}, keysOf(got))

	// The controls. Those refused over TLS never connect: they end with
	// the dial timeout, kept short; the others are answered at once. They
	// start at once, each its own instance, so that the waits overlap.
	controls := []struct {
		name, want string
		timeout    time.Duration
		change     func(*configs.Config)
	}{
		{"wrong password", "authentication failed", time.Minute, func(c *configs.Config) { c.Etcd.Password = "wrong" }},
		{"no client certificate", "tls: certificate required", 2 * time.Second, func(c *configs.Config) { c.Etcd.CertFile, c.Etcd.KeyFile = "", "" }},
		{"etcd's CA not trusted", "certificate signed by unknown authority", 2 * time.Second, func(c *configs.Config) { c.Etcd.CAFile = "" }},
		// http:// for an etcd serving TLS: it closes the connection on
		// gRPC's plain-text start, and the client said only "context
		// deadline exceeded".
		{"http:// for a TLS etcd", "closed the connection on gRPC's plain-text start: is etcd serving TLS there? then write https://", 2 * time.Second, func(c *configs.Config) {
			c.Etcd.Endpoints = []string{"http://" + strings.TrimPrefix(e.Endpoint, "https://")}
			c.Etcd.CAFile, c.Etcd.CertFile, c.Etcd.KeyFile = "", "", ""
		}},
		{"another prefix", "permission denied", time.Minute, func(c *configs.Config) { c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t) + "/other") }},
	}
	errs := make([]error, len(controls))
	var wg sync.WaitGroup
	for i, tc := range controls {
		cfg := configs.Defaults()
		cfg.DataDir = t.TempDir()
		secured(&cfg)
		cfg.Etcd.DialTimeout, cfg.Etcd.RequestTimeout = tc.timeout, tc.timeout
		tc.change(&cfg)
		wg.Go(func() {
			s, err := server.New(cfg, zerolog.Nop())
			if err == nil {
				_ = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, tc := range controls {
		require.Error(t, errs[i], tc.name)
		assert.Contains(t, errs[i].Error(), tc.want, tc.name)
	}
}

func keysOf(changes []testkit.Frame) []string {
	keys := make([]string, len(changes))
	for i, c := range changes {
		keys[i] = c.Key
	}
	return keys
}

// ctxd's client certificate for etcd renewed in place (cert-manager,
// Vault, a cron job rewrite the files before the old one expires) is
// used from the next connection on, without a restart: it was read once,
// at start, and the instance failed every request once the old one
// expired. Shown with etcd's common-name users (--client-cert-auth with
// authentication on and no etcd.username): the certificate first names
// the user rot-a, the renewed one rot-b; rot-a is then deleted and etcd
// restarted, so that only a connection made with the renewed certificate
// can write.
func TestEtcdClientCertificateRenewedInPlace(t *testing.T) {
	file, ca, e := startTLSEtcd(t)
	ca.Issue(t, file("admin.pem"), file("admin-key.pem"), "admin-client")
	ca.Issue(t, file("client.pem"), file("client-key.pem"), "rot-a")
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	adminTLS, err := transport.TLSInfo{CertFile: file("admin.pem"), KeyFile: file("admin-key.pem"), TrustedCAFile: ca.File}.ClientConfig()
	require.NoError(t, err)
	rootCfg := clientv3.Config{Endpoints: []string{e.Endpoint}, TLS: adminTLS, DialTimeout: 10 * time.Second}
	require.NoError(t, etcdkit.EnableAuth(rootCfg, "root-secret", "rot-a", "unused", prefix))
	rootCfg.Username, rootCfg.Password = "root", "root-secret"
	root, err := clientv3.New(rootCfg)
	require.NoError(t, err)
	defer root.Close()
	ctx := t.Context()
	_, err = root.UserAdd(ctx, "rot-b", "unused")
	require.NoError(t, err)
	_, err = root.UserGrantRole(ctx, "rot-b", "rot-a") // EnableAuth's role, named after its user
	require.NoError(t, err)

	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{e.Endpoint}
		c.Etcd.Prefix = prefix
		c.Etcd.CAFile, c.Etcd.CertFile, c.Etcd.KeyFile = ca.File, file("client.pem"), file("client-key.pem")
	}))
	c := instanceClient(t, srv.URL)
	_, err = c.Put(ctx, "default", "a", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err, "as rot-a")

	ca.Issue(t, file("client.pem"), file("client-key.pem"), "rot-b") // the renewal
	_, err = root.UserDelete(ctx, "rot-a")
	require.NoError(t, err)
	require.NoError(t, e.Restart()) // every connection made again
	testkit.Eventually(t, func() bool {
		_, err := c.Put(ctx, "default", "b", json.RawMessage(`2`), client.PutOptions{})
		return err == nil
	}, "a write as rot-b, the renewed certificate's user")
}

// etcd.ca_file is read once, at start, unlike the client certificate: a
// CA rewritten in place (a rotation) is not used until a restart, and
// SIGHUP does not read it again (README, etcd.ca_file). So an instance
// goes on reconnecting, with the CA it started with, after the file is
// rewritten with another CA and every connection to etcd is made again.
// (Reading the CA at each connection would need crypto/tls's verification
// done by hand, without the name gRPC dials when it is an IP address:
// not as safe, so not done.)
func TestEtcdCAFileIsReadOnceAtStart(t *testing.T) {
	file, ca, e := startTLSEtcd(t)
	ca.Issue(t, file("client.pem"), file("client-key.pem"), "ctxd") // etcd asks for one
	caFile := file("ctxd-etcd-ca.pem")
	pem, err := os.ReadFile(ca.File)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(caFile, pem, 0o600))

	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{e.Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
		c.Etcd.CAFile, c.Etcd.CertFile, c.Etcd.KeyFile = caFile, file("client.pem"), file("client-key.pem")
	}))
	c := instanceClient(t, srv.URL)
	ctx := t.Context()
	_, err = c.Put(ctx, "default", "a", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)

	other := testkit.NewCA(t, t.TempDir()) // did not sign etcd's certificate
	pem, err = os.ReadFile(other.File)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(caFile, pem, 0o600))
	require.NoError(t, e.Restart()) // every connection made again
	testkit.Eventually(t, func() bool {
		_, err := c.Put(ctx, "default", "b", json.RawMessage(`2`), client.PutOptions{})
		return err == nil
	}, "a write after the reconnection, trusting the CA read at start")
}
