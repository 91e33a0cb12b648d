package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
)

// tokensYAML is a tokens file granting each name its secret and roles.
func tokensYAML(entries ...[3]string) string {
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, e := range entries {
		b.WriteString("  - name: " + e[0] + "\n    hash: " + auth.HashSecret(e[1]) + "\n    roles: [" + e[2] + "]\n")
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// servedSerial dials addr over TLS and returns the serial number of the
// certificate the server presents.
func servedSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspects the certificate only
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func httpsClient(certs ...*x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// HTTPS end to end with access control: the CLI and the Go client (REST and
// WebSocket) with --cacert and a token; SIGHUP reloads a renewed
// certificate and the tokens file, keeps both when the new files are bad,
// and the server stops cleanly afterwards.
func TestTLSAndTokensReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert1 := testkit.SelfSignedCert(t, certPath, keyPath, "ctxd-1")
	caPath := filepath.Join(dir, "ca1.pem")
	data, err := os.ReadFile(certPath)
	require.NoError(t, err)
	writeFile(t, caPath, string(data))

	admin, ci := auth.NewSecret(), auth.NewSecret()
	tokensPath := writeFile(t, filepath.Join(dir, "tokens.yaml"), tokensYAML([3]string{"ops", admin, "admin"}))
	cfg := writeFile(t, filepath.Join(dir, "ctxd.yaml"), "auth:\n  mode: on\n  tokens_file: "+tokensPath+
		"\ntls:\n  cert_file: "+certPath+"\n  key_file: "+keyPath+"\n")
	srv := startServer(t, filepath.Join(dir, "data"), "--config", cfg)
	base := "https://" + srv.Addr
	assert.Contains(t, srv.Stderr.String(), `"tls":true`)
	assert.Contains(t, srv.Stderr.String(), `"auth":true`)

	// Plain HTTP on the TLS port is refused.
	if res, err := http.Get("http://" + srv.Addr + "/healthz"); err == nil {
		assert.Equal(t, http.StatusBadRequest, res.StatusCode)
		res.Body.Close()
	}

	// The CLI over HTTPS, with the CA and a token.
	env := []string{"CTXD_SERVER=" + base, "CTXD_CACERT=" + caPath}
	r := cli(t, env, "", "put", "greeting", "hello")
	assert.Equal(t, 1, r.code, "no token: %s", r.stderr)
	assert.Contains(t, r.stderr, "access token")
	r = cli(t, env, "", "put", "greeting", "hello", "--token", admin)
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, append(env, "CTXD_TOKEN="+admin), "", "get", "greeting")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "hello\n", r.stdout)
	r = cli(t, []string{"CTXD_SERVER=" + base, "CTXD_TOKEN=" + admin}, "", "get", "greeting")
	assert.Equal(t, 3, r.code, "an unknown CA must be refused")
	assert.Contains(t, r.stderr, "certificate is not trusted: give the CA that signed it", "and the hint names the cause")
	// A list of instances whose first is down: the CA and the token go
	// with the request to the next, a watch included.
	down := "https://" + testkit.FreeAddr(t)
	r = cli(t, []string{"CTXD_SERVER=" + down + "," + base, "CTXD_CACERT=" + caPath, "CTXD_TOKEN=" + admin}, "", "get", "greeting")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "hello\n", r.stdout)
	watch := exec.Command(bin, "watch", "--from-rev", "0", "-o", "json")
	watch.Env = testEnv("CTXD_SERVER="+down+","+base, "CTXD_CACERT="+caPath, "CTXD_TOKEN="+admin)
	var printed testkit.SyncBuffer
	watch.Stdout = &printed
	require.NoError(t, watch.Start())
	testkit.Eventually(t, func() bool { return strings.Contains(printed.String(), `"key":"greeting"`) }, "the watch over wss on the second instance")
	require.NoError(t, watch.Process.Kill())
	_ = watch.Wait()

	// The Go client: REST and a watch over wss, with the token.
	cl, err := client.New(base, client.WithHTTPClient(httpsClient(cert1)), client.WithToken(admin))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A REST call first: the transport sets HTTP/2 up (adding "h2" to its
	// TLS config), which the WebSocket must not inherit.
	_, err = cl.Get(ctx, "", "greeting", client.GetOptions{})
	require.NoError(t, err)
	from := uint64(0)
	got := make(chan client.WatchEvent, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = cl.Watch(wctx, client.WatchOptions{FromRev: &from}, func(ev client.WatchEvent) error {
			select {
			case got <- ev:
			default:
			}
			return nil
		})
	}()
	select {
	case ev := <-got:
		assert.Equal(t, "greeting", ev.Key)
	case <-ctx.Done():
		t.Fatal("the watch over wss got nothing")
	}
	stopWatch()
	<-watched
	noToken, err := client.New(base, client.WithHTTPClient(httpsClient(cert1)))
	require.NoError(t, err)
	_, err = noToken.Get(ctx, "", "greeting", client.GetOptions{})
	assert.True(t, client.IsUnauthorized(err), "%v", err)

	// Renew the certificate and add a token; SIGHUP.
	cert2 := testkit.SelfSignedCert(t, certPath, keyPath, "ctxd-2")
	writeFile(t, tokensPath, tokensYAML([3]string{"ops", admin, "admin"}, [3]string{"ci", ci, "read"}))
	srv.Signal(syscall.SIGHUP)
	waitFor(t, "the renewed certificate", func() bool { return servedSerial(t, srv.Addr).Cmp(cert2.SerialNumber) == 0 })
	waitFor(t, "the tokens reloaded", func() bool { return strings.Contains(srv.Stderr.String(), "SIGHUP: tokens reloaded") })
	ci2, err := client.New(base, client.WithHTTPClient(httpsClient(cert2)), client.WithToken(ci))
	require.NoError(t, err)
	rec, err := ci2.Get(ctx, "", "greeting", client.GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `"hello"`, string(rec.Value))
	_, err = ci2.Put(ctx, "", "greeting", json.RawMessage(`"x"`), client.PutOptions{})
	assert.True(t, client.IsForbidden(err), "%v", err)

	// Bad files: the server keeps what it had and goes on.
	writeFile(t, certPath, "not a certificate")
	writeFile(t, tokensPath, "tokens: [")
	srv.Signal(syscall.SIGHUP)
	waitFor(t, "the failed reloads logged", func() bool {
		s := srv.Stderr.String()
		return strings.Contains(s, "TLS certificate not reloaded") && strings.Contains(s, "tokens file not reloaded")
	})
	// The tokens file's error names the file and where auth.tokens_file
	// was set, as at the start: it said only "tokens file: yaml: ...".
	assert.Contains(t, srv.Stderr.String(), "config: auth.tokens_file (file "+cfg+", line 3): "+tokensPath+": tokens file: yaml: ")
	// The certificate's names where tls.cert_file and tls.key_file were
	// set, as at the start: it named the files only.
	assert.Contains(t, srv.Stderr.String(), "config: tls.cert_file (file "+cfg+", line 5): with tls.key_file (set by file "+cfg+
		", line 6): load TLS certificate "+certPath+" and key "+keyPath+": ")
	assert.Equal(t, 0, servedSerial(t, srv.Addr).Cmp(cert2.SerialNumber))
	_, err = ci2.Get(ctx, "", "greeting", client.GetOptions{})
	require.NoError(t, err)

	srv.Signal(syscall.SIGTERM)
	assert.Equal(t, 0, srv.Wait(20*time.Second), srv.Stderr.String())
}

// SIGHUP with a tokens file that no longer holds a token closes, within
// the reload, the /v1/watch and Socket.IO connections opened with it:
// an error naming token_revoked, then close 1008 with reason
// token_revoked. A connection whose token is still there stays open.
func TestRevokedTokenClosesRealtimeOnSIGHUP(t *testing.T) {
	t.Parallel()
	srv, tokensPath, admin, board := startWithOpsAndBoard(t)
	wsBase := "ws" + strings.TrimPrefix(srv.URL, "http")
	hdr := func(secret string) http.Header { return http.Header{"Authorization": {"Bearer " + secret}} }
	kept := testkit.DialWatch(t, wsBase+"/v1/watch", hdr(admin))
	kept.Expect("subscribed")
	watch := testkit.DialWatch(t, wsBase+"/v1/watch?token="+board, nil)
	watch.Expect("subscribed")

	sio, _, err := websocket.DefaultDialer.Dial(wsBase+"/socket.io/?EIO=4&transport=websocket", nil)
	require.NoError(t, err)
	defer sio.Close()
	read := func() (string, error) {
		require.NoError(t, sio.SetReadDeadline(time.Now().Add(testkit.Deadline)))
		_, p, err := sio.ReadMessage()
		return string(p), err
	}
	p, err := read()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(p, "0{"), "the Engine.IO open packet: %q", p)
	require.NoError(t, sio.WriteMessage(websocket.TextMessage, []byte(`40{"token":"`+board+`"}`)))
	p, err = read()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(p, "40{"), "the Socket.IO CONNECT answer: %q", p)
	p, err = read()
	require.NoError(t, err)
	require.Contains(t, p, "context_snapshot")

	// The Go client's watch too: its error is the 401 it is.
	cl, err := client.New(srv.URL, client.WithToken(board))
	require.NoError(t, err)
	connected, clientDone := make(chan uint64, 1), make(chan error, 1)
	go func() {
		clientDone <- cl.Watch(t.Context(), client.WatchOptions{OnConnect: func(rev uint64) { connected <- rev }}, func(client.WatchEvent) error { return nil })
	}()
	select {
	case <-connected:
	case err := <-clientDone:
		t.Fatalf("the client's watch ended before the reload: %v", err)
	}

	writeFile(t, tokensPath, tokensYAML([3]string{"ops", admin, "admin"}))
	srv.Signal(syscall.SIGHUP)

	select {
	case err := <-clientDone:
		assert.True(t, client.IsUnauthorized(err), "the client's watch ends unauthorized: %v", err)
	case <-time.After(testkit.Deadline):
		t.Fatal("the client's watch goes on with a revoked token")
	}
	m := watch.Expect("error")
	assert.Equal(t, "token_revoked", m.Code)
	_, err = watch.NextErr()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "token_revoked", ce.Text)

	var packets []string
	for {
		p, err := read()
		if err != nil {
			require.ErrorAs(t, err, &ce, "after %q", packets)
			break
		}
		if p != "2" && !strings.HasPrefix(p, `42["client_stats"`) { // pings, the clients' count
			packets = append(packets, p)
		}
	}
	require.Len(t, packets, 2, "%q", packets)
	assert.Contains(t, packets[0], `42["error",`)
	assert.Contains(t, packets[0], `"code":"token_revoked"`)
	assert.Equal(t, "41", packets[1], "a Socket.IO DISCONNECT")
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "token_revoked", ce.Text)
	waitFor(t, "the reload logged", func() bool { return strings.Contains(srv.Stderr.String(), `"revoked":1`) })

	kept.SendJSON(map[string]any{"type": "ping", "id": 1})
	assert.Equal(t, "pong", kept.Expect("pong").Type, "an unchanged token goes on")
	srv.Signal(syscall.SIGTERM)
	assert.Equal(t, 0, srv.Wait(20*time.Second), srv.Stderr.String())
}

// A token whose rights a reload changed (here a grant: read to write)
// has its connections closed too, but the Go client's Watch reconnects
// at once with it and goes on with the new rights; it ended with 401
// although the token was valid (a removed token's still ends: above).
func TestAChangedTokensWatchGoesOn(t *testing.T) {
	t.Parallel()
	srv, tokensPath, admin, board := startWithOpsAndBoard(t)
	cl, err := client.New(srv.URL, client.WithToken(board))
	require.NoError(t, err)
	writer, err := client.New(srv.URL, client.WithToken(admin))
	require.NoError(t, err)
	connected, reconnected, got := make(chan uint64, 4), make(chan error, 4), make(chan string, 4)
	clientDone := make(chan error, 1)
	go func() {
		clientDone <- cl.Watch(t.Context(), client.WatchOptions{
			OnConnect:   func(rev uint64) { connected <- rev },
			OnReconnect: func(err error, _ time.Duration) { reconnected <- err },
		}, func(ev client.WatchEvent) error {
			if ev.Type == client.EventChange {
				got <- ev.Key
			}
			return nil
		})
	}()
	select {
	case <-connected:
	case err := <-clientDone:
		t.Fatalf("the client's watch ended before the reload: %v", err)
	}

	writeFile(t, tokensPath, tokensYAML([3]string{"ops", admin, "admin"}, [3]string{"board", board, "write"}))
	srv.Signal(syscall.SIGHUP)
	select {
	case err := <-reconnected:
		assert.ErrorContains(t, err, "token_revoked")
	case err := <-clientDone:
		t.Fatalf("the watch of a changed token ended: %v", err)
	}
	select {
	case <-connected:
	case err := <-clientDone:
		t.Fatalf("the watch of a changed token ended: %v", err)
	}
	_, err = writer.Put(t.Context(), "default", "after-reload", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	select {
	case k := <-got:
		assert.Equal(t, "after-reload", k)
	case err := <-clientDone:
		t.Fatalf("the watch ended: %v", err)
	case <-time.After(testkit.Deadline):
		t.Fatal("no change after the reconnection")
	}
	srv.Signal(syscall.SIGTERM)
	assert.Equal(t, 0, srv.Wait(20*time.Second), srv.Stderr.String())
}

// startWithOpsAndBoard starts a server with access control on and two
// tokens, ops (admin) and board (read), in the tokens file at tokensPath
// (a test rewrites it and sends SIGHUP).
func startWithOpsAndBoard(t *testing.T) (srv *serverProcess, tokensPath, admin, board string) {
	t.Helper()
	dir := t.TempDir()
	admin, board = auth.NewSecret(), auth.NewSecret()
	tokensPath = writeFile(t, filepath.Join(dir, "tokens.yaml"), tokensYAML([3]string{"ops", admin, "admin"}, [3]string{"board", board, "read"}))
	srv = startServer(t, filepath.Join(dir, "data"), "--config",
		writeFile(t, filepath.Join(dir, "ctxd.yaml"), "auth:\n  mode: on\n  tokens_file: "+tokensPath+"\n"))
	return srv, tokensPath, admin, board
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, cond, "waiting for %s", what)
}

// auth.who: token signs changes with the token that made them: without
// access control there is none, and the server refuses to start (exit
// code 2) rather than record the who requests claim; a value that is
// neither declared nor token is refused too.
func TestServeRefusesSigningWithoutTokens(t *testing.T) {
	dir := t.TempDir()
	r := cli(t, []string{"CTXD_AUTH_WHO=token"}, "", "serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "auth.who (env CTXD_AUTH_WHO)")
	assert.Contains(t, r.stderr, "access control is off")

	r = cli(t, []string{"CTXD_AUTH_WHO=token", "CTXD_AUTH_MODE=off"}, "", "serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "auth.mode is off (set by env CTXD_AUTH_MODE)")

	r = cli(t, []string{"CTXD_AUTH_WHO=tokens"}, "", "serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, `invalid who "tokens" (use declared or token)`)
}

// Access control is on by default on an address other machines can reach:
// without a tokens file the server refuses to start (exit code 2); with
// auth.mode: off it starts, with a warning.
func TestServeNeedsTokensOffLoopback(t *testing.T) {
	dir := t.TempDir()
	r := cli(t, nil, "", "serve", "--addr", "0.0.0.0:0", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "auth.tokens_file")
	assert.Contains(t, r.stderr, "ctxd token new")

	r = cli(t, []string{"CTXD_AUTH_MODE=on"}, "", "serve", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "auth.mode is on (set by env CTXD_AUTH_MODE)")

	bad := writeFile(t, filepath.Join(dir, "tokens.yaml"), "tokens:\n  - name: x\n    hash: nope\n    roles: [read]\n")
	r = cli(t, []string{"CTXD_AUTH_MODE=on", "CTXD_AUTH_TOKENS_FILE=" + bad}, "", "serve", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "hash")

	r = cli(t, []string{"CTXD_TLS_CERT_FILE=" + bad, "CTXD_TLS_KEY_FILE=" + bad}, "", "serve", "--data", filepath.Join(dir, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "tls.cert_file")
}

// A CTXD_* variable that names no setting (a misspelling, which would
// leave the setting at its default) is named in a warning at start, with
// the setting meant; the client's own variables are not. A setting that
// has no effect with the others is warned of too.
func TestServeWarnsOfUnknownEnv(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	// The port is taken: serve stops after its first log lines.
	r := cli(t, []string{"CTXD_LIMITS_MAX_TLL=1h", "CTXD_TOKEN=x", "CTXD_SERVER=http://x", "CTXD_HTTP_RATE_BURST=9"}, "",
		"serve", "--addr", busy.Addr().String(), "--data", filepath.Join(t.TempDir(), "data"))
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, `"variable":"CTXD_LIMITS_MAX_TLL","did_you_mean":"CTXD_LIMITS_MAX_TTL"`)
	assert.Contains(t, r.stderr, `"config: http.rate_burst ignored: http.rate_limit is 0 (off)"`)
	assert.NotContains(t, r.stderr, "CTXD_TOKEN")
	assert.NotContains(t, r.stderr, "CTXD_SERVER")

	// The console format colours only a terminal: here a pipe.
	r = cli(t, []string{"CTXD_LOG_FORMAT=console", "CTXD_HTTP_RATE_BURST=9"}, "",
		"serve", "--addr", busy.Addr().String(), "--data", filepath.Join(t.TempDir(), "data"))
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "config: http.rate_burst ignored")
	assert.NotContains(t, r.stderr, "\x1b[", "no colour escapes in a file or a pipe")
}

// ctxd token new --append builds a tokens file the server loads; the
// token it prints works, with the rights given.
func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	tokensPath := filepath.Join(dir, "tokens.yaml")
	r := cli(t, nil, "", "token", "new", "--name", "ops", "--role", "admin", "--append", tokensPath)
	require.Equal(t, 0, r.code, r.stderr)
	admin := strings.TrimSpace(r.stdout)
	require.True(t, strings.HasPrefix(admin, auth.SecretPrefix), admin)
	// The file keeps the mode and owner it had (a server running as
	// another user must still read it after an append as root).
	require.NoError(t, os.Chmod(tokensPath, 0o640))
	asRoot := os.Geteuid() == 0
	if asRoot {
		require.NoError(t, os.Chown(tokensPath, 65534, 65534))
	}
	r = cli(t, nil, "", "token", "new", "--name", "team", "--role", "write", "--ns", "team", "--prefix", "app.", "--append", tokensPath)
	require.Equal(t, 0, r.code, r.stderr)
	fi, err := os.Stat(tokensPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "the mode is kept")
	if asRoot {
		st := fi.Sys().(*syscall.Stat_t)
		assert.Equal(t, [2]uint32{65534, 65534}, [2]uint32{st.Uid, st.Gid}, "the owner is kept")
	}
	team := strings.TrimSpace(r.stdout)
	r = cli(t, nil, "", "token", "new", "--name", "team", "--role", "read", "--append", tokensPath)
	assert.Equal(t, 1, r.code, "a second token of the same name: %s", r.stderr)

	r = cli(t, nil, admin+"\n", "token", "hash")
	require.Equal(t, 0, r.code, r.stderr)
	content, err := os.ReadFile(tokensPath)
	require.NoError(t, err)
	assert.Contains(t, string(content), strings.TrimSpace(r.stdout))
	assert.NotContains(t, string(content), admin)
	assert.Equal(t, 2, cli(t, nil, "short\n", "token", "hash").code)

	srv := startServer(t, filepath.Join(dir, "data"), "--config",
		writeFile(t, filepath.Join(dir, "ctxd.yaml"), "auth:\n  mode: on\n  tokens_file: "+tokensPath+"\n"))
	env := []string{"CTXD_SERVER=" + srv.URL}
	r = cli(t, append(env, "CTXD_TOKEN="+team), "", "put", "app.x", "1", "-n", "team")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, append(env, "CTXD_TOKEN="+team), "", "put", "other", "1", "-n", "team")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "forbidden")
	r = cli(t, env, "", "snapshot", "create", "--token", admin)
	require.Equal(t, 0, r.code, r.stderr)
	res, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
}

// --append onto a tokens file written in YAML's other spellings adds the
// token: an empty list ("tokens: []", "tokens: ~": valid files, emptied
// by hand or a template), a file of comments only, a list indented
// otherwise than by 2 ("- name:" right under "tokens:", as PyYAML and yq
// write it). Each failed with a YAML error. A list in flow style that
// holds tokens is refused, saying to write it in block style, and left as
// it was.
func TestTokenAppendToOtherYAMLSpellings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hash := auth.HashSecret(auth.NewSecret())
	for i, file := range []string{
		"tokens: []\n",
		"# emptied by hand\ntokens: [ ]  # none yet\n",
		"tokens: ~",
		"# only a comment\n",
		"tokens:\n- name: ci\n  hash: " + hash + "\n  roles: [read]\n  namespaces: [team]\n",
		"tokens:\n    - name: ci\n      hash: " + hash + "\n      roles: [read]\n",
	} {
		path := writeFile(t, filepath.Join(dir, fmt.Sprintf("tokens%d.yaml", i)), file)
		r := cli(t, nil, "", "token", "new", "--name", "ops", "--role", "write", "--ns", "team", "--append", path)
		require.Equal(t, 0, r.code, "%q: %s", file, r.stderr)
		ts, err := auth.LoadTokens(path)
		require.NoError(t, err, file)
		assert.NotNil(t, ts.Lookup(strings.TrimSpace(r.stdout)), file)
		assert.Equal(t, strings.Count(file, "name:")+1, ts.Len(), "%q: the tokens it had are kept", file)
		for _, line := range strings.Split(file, "\n") {
			if _, comment, ok := strings.Cut(line, "#"); ok {
				assert.Contains(t, string(readFile(t, path)), "#"+comment, "%q: the comments are kept", file)
			}
		}
	}

	for _, file := range []string{
		"tokens: [{name: ci, hash: " + auth.HashSecret(auth.NewSecret()) + ", roles: [read]}]\n",
		"{tokens: []}\n",
		"tokens: [\n]\n",
	} {
		path := writeFile(t, filepath.Join(dir, "flow.yaml"), file)
		r := cli(t, nil, "", "token", "new", "--name", "ops", "--role", "admin", "--append", path)
		assert.Equal(t, 1, r.code, "%q: %s", file, r.stderr)
		assert.Contains(t, r.stderr, path+": the entry cannot be added: line 1: ", file)
		assert.Contains(t, r.stderr, "flow style", file)
		assert.Contains(t, r.stderr, `write it in block style, "tokens:" then one "  - name: ..." item per token`, file)
		assert.Equal(t, file, string(readFile(t, path)), "left as it was")
	}
}

// --append through a symbolic link (a tokens file that configuration
// management keeps elsewhere, linked where the server looks) writes the
// link's target, in the target's folder, and keeps the link: the rename
// replaced the link with a regular file, and the target never had the
// token.
func TestTokenAppendThroughALink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed, etc := filepath.Join(dir, "managed"), filepath.Join(dir, "etc")
	require.NoError(t, os.Mkdir(managed, 0o700))
	require.NoError(t, os.Mkdir(etc, 0o700))
	target := filepath.Join(managed, "tokens.yaml")
	cliOK(t, nil, "", "token", "new", "--name", "ops", "--role", "admin", "--append", target)
	link := filepath.Join(etc, "tokens.yaml")
	require.NoError(t, os.Symlink("../managed/tokens.yaml", link))

	board := strings.TrimSpace(cliOK(t, nil, "", "token", "new", "--name", "board", "--role", "read", "--append", link))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link is still a link")
	ts, err := auth.LoadTokens(target)
	require.NoError(t, err)
	assert.Equal(t, 2, ts.Len(), "the target has both tokens")
	assert.NotNil(t, ts.Lookup(board))
	assert.Equal(t, []string{"tokens.yaml"}, testkit.DirNames(t, etc), "nothing else in the link's folder")
	assert.Equal(t, []string{"tokens.yaml"}, testkit.DirNames(t, managed), "no temp file left in the target's")

	dangling := filepath.Join(etc, "gone.yaml")
	require.NoError(t, os.Symlink("../managed/gone.yaml", dangling))
	r := cli(t, nil, "", "token", "new", "--name", "x", "--role", "read", "--append", dangling)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, dangling+": a symbolic link to nothing")
}

// A snapshots folder the server's user cannot write is a configuration
// error (exit 2, naming snapshots.dir), not a failure a restart may fix
// (exit 1: systemd's Restart=on-failure started it again every 2 s).
// As root the server runs as nobody, for whom the folder is read-only.
func TestServeWithAnUnwritableSnapshotsFolder(t *testing.T) {
	t.Parallel()
	base, exe := openFolder(t)
	snaps, data := filepath.Join(base, "snapshots"), filepath.Join(base, "data")
	require.NoError(t, os.Mkdir(snaps, 0o555))
	require.NoError(t, os.Mkdir(data, 0o777))
	require.NoError(t, os.Chmod(data, 0o777)) // past the umask

	cmd := exec.Command(exe, "serve", "--addr", "127.0.0.1:0", "--data", data)
	cmd.Env = testEnv("CTXD_SNAPSHOTS_DIR=" + snaps)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = asServiceUser
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, stderr.String())
	assert.Equal(t, 2, ee.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "config: snapshots.dir (env CTXD_SNAPSHOTS_DIR)")
}

// A snapshots or dumps folder on a read-only file system (what systemd's
// ProtectSystem=strict makes of every path the unit does not list in
// ReadWritePaths) is a configuration error too (exit 2): it was exit 1,
// which systemd restarted every 2 s, for the snapshots folder, and a
// server that answered every dump 503 for the dumps folder.
func TestServeWithASnapshotsFolderOnAReadOnlyFileSystem(t *testing.T) {
	t.Parallel()
	ro := t.TempDir()
	require.NoError(t, syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=1m"), "the test needs root to mount a read-only file system")
	t.Cleanup(func() { _ = syscall.Unmount(ro, 0) })
	for _, setting := range []string{"snapshots.dir", "dumps.dir"} {
		env := "CTXD_" + strings.ToUpper(strings.ReplaceAll(setting, ".", "_"))
		r := cli(t, []string{env + "=" + filepath.Join(ro, "folder")}, "", "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir())
		assert.Equal(t, 2, r.code, r.stderr)
		assert.Contains(t, r.stderr, "config: "+setting+" (env "+env+")")
		assert.Contains(t, r.stderr, "read-only file system")
	}
	// Not set, the folder is inside data_dir: the error says where that
	// came from.
	data := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(data, "snapshots"), 0o750))
	require.NoError(t, syscall.Mount("tmpfs", filepath.Join(data, "snapshots"), "tmpfs", syscall.MS_RDONLY, "size=1m"))
	t.Cleanup(func() { _ = syscall.Unmount(filepath.Join(data, "snapshots"), 0) })
	r := cli(t, nil, "", "serve", "--addr", "127.0.0.1:0", "--data", data)
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "config: snapshots.dir (not set; data_dir from flag)")

	// The data folder itself too: no restart makes it writable.
	r = cli(t, nil, "", "serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(ro, "data"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "config: data_dir (flag)")
	assert.Contains(t, r.stderr, "read-only file system")
}

// A SIGHUP (systemctl reload) while the server is still starting (here,
// waiting for the lock of a folder another server holds) does not end
// it: SIGHUP's default action is to end the process, which systemd does
// not restart. It goes on and ends as it would have (exit 1: the folder
// is in use).
func TestSIGHUPWhileStarting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startServer(t, dir) // holds the folder's lock
	// 1s, not the default 5 s: long enough for the SIGHUP to come
	// during the wait.
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", dir, "--lock-timeout", "1s")
	cmd.Env = testEnv()
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	waitFor(t, "the second server's first log line", func() bool { return stderr.String() != "" })
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, stderr.String())
	assert.Equal(t, 1, ee.ExitCode(), "%v: %s", ee, stderr.String())
	assert.Contains(t, stderr.String(), "in use by another process")
	assert.Contains(t, stderr.String(), `"level":"error"`, "the failure is a log line too")
}
