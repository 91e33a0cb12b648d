package main

import (
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// serviceUser stands for the user a systemd unit runs the server as
// (User=ctxd): nobody, who owns nothing on a test machine.
const serviceUser = 65534

// openFolder is a temp folder every user may enter (the test's own are
// root's alone), holding the ctxd binary, for a server run as
// serviceUser.
func openFolder(t *testing.T) (base, exe string) {
	t.Helper()
	base, err := os.MkdirTemp("", "ctxd-perm-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	exe = filepath.Join(base, "ctxd")
	// A hard link, not a copy: a file this process held open for writing
	// could be inherited by a child another parallel test forks meanwhile,
	// and exec would fail "text file busy" (golang/go#22315).
	if err := os.Link(bin, exe); err != nil {
		require.NoError(t, os.WriteFile(exe, readFile(t, bin), 0o755), "no link (%v): a copy", err)
	}
	return base, exe
}

// ownedByServiceUser checks that every file and folder under dir is
// serviceUser's; after says what ran before.
func ownedByServiceUser(t *testing.T, dir, after string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		assert.Equal(t, [2]uint32{serviceUser, serviceUser}, [2]uint32{st.Uid, st.Gid}, "%s: the owner of %s", after, path)
		return nil
	}))
}

// asServiceUser runs a process as serviceUser.
var asServiceUser = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: serviceUser, Gid: serviceUser}}

// serviceFolder makes the folder dir as `install -d -m 0750 -o ctxd -g
// ctxd` does for the systemd unit.
func serviceFolder(t *testing.T, dir string) string {
	t.Helper()
	require.NoError(t, os.Mkdir(dir, 0o750))
	require.NoError(t, os.Chown(dir, serviceUser, serviceUser))
	return dir
}

// The offline commands an operator runs as root on the data folder of a
// server that runs as a service user (ctxd compact, restore whole or in
// part, into a new folder, migrate) give every file they create there to
// the folder's owner, and the server, as that user, starts on the folder
// after each. They left ctxd.db (and migrate the write-ahead log) to
// root, and the server refused to start.
func TestOfflineCommandsKeepTheDataFolderOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the commands run as root, the server as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	data := serviceFolder(t, filepath.Join(base, "data"))
	backup := filepath.Join(base, "backup.db")

	// serve runs the server as the service user on dir, checks that key a
	// holds want, runs then, and stops it.
	serve := func(dir, want string, then ...string) {
		t.Helper()
		p := testkit.StartServe(t, exe, dir, testkit.ServeOptions{SysProcAttr: asServiceUser})
		env := []string{"CTXD_SERVER=" + p.URL}
		if want != "" {
			assert.Equal(t, want, strings.TrimSpace(cliOK(t, env, "", "get", "a")))
		}
		if len(then) > 0 {
			cliOK(t, env, "", then...)
		}
		p.Signal(syscall.SIGTERM)
		require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())
	}

	p := testkit.StartServe(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser})
	env := []string{"CTXD_SERVER=" + p.URL}
	cliOK(t, env, "", "put", "a", "1")
	id := fromJSON[struct{ ID string }](t, cliOK(t, env, "", "snapshot", "create", "-o", "json")).ID
	cliOK(t, env, "", "snapshot", "get", id, "-o", backup)
	cliOK(t, env, "", "put", "a", "2")
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())

	cliOK(t, nil, "", "compact", "--data", data)
	ownedByServiceUser(t, data, "compact")
	serve(data, "2")

	cliOK(t, nil, "", "restore", "--data", data, "--from", backup, "--ns", "default")
	ownedByServiceUser(t, data, "a partial restore")
	serve(data, "1", "put", "a", "3")

	cliOK(t, nil, "", "restore", "--data", data, "--from", backup)
	ownedByServiceUser(t, data, "a whole restore")
	serve(data, "1")

	fresh := serviceFolder(t, filepath.Join(base, "fresh"))
	cliOK(t, nil, "", "restore", "--data", fresh, "--from", backup)
	ownedByServiceUser(t, fresh, "a restore into a new folder")
	serve(fresh, "1")

	old := serviceFolder(t, filepath.Join(base, "old"))
	dbPath := filepath.Join(old, dbFile)
	require.NoError(t, os.WriteFile(dbPath, readFile(t, filepath.Join("..", "..", "migrations", "testdata", "schema1.db")), 0o600))
	require.NoError(t, os.Chown(dbPath, serviceUser, serviceUser))
	cliOK(t, nil, "", "migrate", "--data", old)
	ownedByServiceUser(t, old, "migrate")
	serve(old, "")
}

// A server run by hand as root on a service user's data folder gives
// what it creates there (the snapshots and dumps folders, their files,
// lock and claim files) to the folder's owner, and the service, as that
// user, then takes snapshots and dumps there. They were root's: the
// service could not write either folder, and refused to start.
func TestARootServerLeavesTheDataFolderToItsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the server runs as root, then as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	data := serviceFolder(t, filepath.Join(base, "data"))
	p := testkit.StartServe(t, exe, data, testkit.ServeOptions{Env: append(testkit.CleanEnv(), "CTXD_SNAPSHOTS_INTERVAL=1h")})
	env := []string{"CTXD_SERVER=" + p.URL}
	cliOK(t, env, "", "put", "a", "1")
	cliOK(t, env, "", "snapshot", "create")
	cliOK(t, env, "", "dump", "--server-side", "--filename", "by-root")
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())
	ownedByServiceUser(t, data, "a root-run server")

	p = testkit.StartServe(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser})
	env = []string{"CTXD_SERVER=" + p.URL}
	cliOK(t, env, "", "snapshot", "create")
	cliOK(t, env, "", "dump", "--server-side", "--filename", "by-service")
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())
}

// A database the server's user may not open (left to root by an offline
// command of an older release) is reported as such, with the owner to
// fix, not as a damaged file to restore or move away: the file is
// intact. The same for its write-ahead log, and for a ctxd.db that is a
// link to a file in another folder: the advice names both folders (it
// named only the linked file's, not the data folder that holds the log).
func TestServeOnFilesItsUserCannotOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the files are root's, the server runs as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	for _, c := range []struct {
		name, rootOwns string
		linked         bool // ctxd.db links to a file in another folder
	}{
		{"database", dbFile, false},
		{"write-ahead log", "wal", false},
		{"linked database", dbFile, true},
	} {
		data := serviceFolder(t, filepath.Join(base, strings.ReplaceAll(c.name, " ", "-")))
		chownAdvice := "chown -R ctxd: " + data
		if c.linked {
			elsewhere := serviceFolder(t, data+"-elsewhere")
			require.NoError(t, os.Symlink(filepath.Join(elsewhere, dbFile), filepath.Join(data, dbFile)))
			chownAdvice = "chown -R ctxd: " + elsewhere + " " + data + " && chmod -R u+rwX " + elsewhere + " " + data
		}
		serveAsServiceUser(t, exe, data, func(env []string) { cliOK(t, env, "", "put", "a", "1") })
		require.NoError(t, os.Chown(filepath.Join(data, c.rootOwns), 0, 0))

		_, err := testkit.StartServeErr(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser})
		require.Error(t, err, c.name)
		msg := err.Error()
		assert.Contains(t, msg, "permission denied", c.name)
		assert.Contains(t, msg, chownAdvice, c.name)
		assert.NotContains(t, msg, "damaged", c.name)
		assert.NotContains(t, msg, "acknowledged writes could be missing", c.name)
		assert.Contains(t, msg, "exit status 1", c.name)

		// As the advice says: the data are all there.
		require.NoError(t, os.Chown(filepath.Join(data, c.rootOwns), serviceUser, serviceUser))
		serveAsServiceUser(t, exe, data, func(env []string) {
			assert.Equal(t, "1", strings.TrimSpace(cliOK(t, env, "", "get", "a")), c.name)
		})
	}
}

// A write-ahead log folder its user may not create files in (mode 0500)
// stops the server at start, naming the folder. Before, the server
// started and took writes into the log's first segment, and its next
// segment failed the store: every write 503 from then on, at 64 MiB of
// writes into a deployment that had looked healthy.
func TestServeOnALogFolderItCannotWriteIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the server runs as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	data := serviceFolder(t, filepath.Join(base, "data"))
	serveAsServiceUser(t, exe, data, func(env []string) { cliOK(t, env, "", "put", "a", "1") })
	wal := filepath.Join(data, "wal")
	require.NoError(t, os.Chmod(wal, 0o500))

	_, err := testkit.StartServeErr(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the log's folder "+wal+" must take new files")
	assert.Contains(t, err.Error(), "permission denied")
	assert.Contains(t, err.Error(), "exit status 1")

	require.NoError(t, os.Chmod(wal, 0o700))
	serveAsServiceUser(t, exe, data, func(env []string) {
		assert.Equal(t, "1", strings.TrimSpace(cliOK(t, env, "", "get", "a")))
	})
}

// A defrag in a data folder that has become read-only to the server's
// user (its files still writable), and a snapshot in such a snapshots
// folder, answer 503 unavailable naming the folder and the cause: an
// operator's to fix. They answered 500 internal, the cause in the log only.
func TestMaintenanceInAFolderItMayNotWriteIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the server runs as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	data := serviceFolder(t, filepath.Join(base, "data"))
	p := testkit.StartServe(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser})
	cliOK(t, []string{"CTXD_SERVER=" + p.URL}, "", "put", "a", "1")
	snaps := filepath.Join(data, configs.SnapshotsSubdir)
	for _, dir := range []string{data, snaps} {
		require.NoError(t, os.Chmod(dir, 0o500))
	}
	for _, c := range []struct{ path, op, dir string }{
		{"/v1/defrag", "defrag", data},
		{"/v1/snapshots", "snapshot", snaps},
	} {
		res, err := http.Post(p.URL+c.path, "", nil)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		body := string(b)
		assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode, body)
		assert.Contains(t, body, `"code":"unavailable"`)
		assert.Contains(t, body, c.op+": the server may not write in the folder "+c.dir+" (permission denied)", "the folder and the cause")
	}
	for _, dir := range []string{data, snaps} {
		require.NoError(t, os.Chmod(dir, 0o750))
	}
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())
}

// ctxd dump -o over an existing file: run as root, the file keeps its
// owner (root's here, in a folder of the service user's, where a new file
// is the user's); run as the user over a file of root's in the user's
// folder, it succeeds and the file is the user's, as a rename makes it
// (giving it back, which only root may, failed the dump).
func TestDumpOutputKeepsTheReplacedFilesOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: files of two users")
	}
	t.Parallel()
	base, exe := openFolder(t)
	srv := startServer(t, t.TempDir())
	out := serviceFolder(t, filepath.Join(base, "out"))
	path := filepath.Join(out, "ctx.json")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o644)) // root's
	env := []string{"CTXD_SERVER=" + srv.URL}
	cliOK(t, env, "", "dump", "-o", path)
	st := mustStat(t, path)
	assert.Equal(t, [2]uint32{0, 0}, [2]uint32{st.Uid, st.Gid}, "as root: the replaced file's owner stays")

	cmd := exec.Command(exe, "dump", "-o", path)
	cmd.Env = append(testEnv(), env...)
	cmd.SysProcAttr = asServiceUser
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, "as the folder's user: %s", output)
	st = mustStat(t, path)
	assert.Equal(t, [2]uint32{serviceUser, serviceUser}, [2]uint32{st.Uid, st.Gid}, "as the user: the user's")
}

func mustStat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t)
}

// ctxd token new --append, run as root as README shows it, makes a new
// tokens file in the service's configuration folder (/etc/ctxd: root's,
// of the service's group, 0750, as the unit's install steps make it)
// that the server, as the service user, reads at its start and at a
// reload: root's, of the folder's group, 0640. It was 0600, which the
// group may not read: the server stopped at its start (exit 2,
// permission denied). In a folder of root's own group a new file stays
// 0600.
func TestANewTokensFileIsReadByTheService(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the command runs as root, the server as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	etc := filepath.Join(base, "etc")
	require.NoError(t, os.Mkdir(etc, 0o750))
	require.NoError(t, os.Chown(etc, 0, serviceUser))
	tokens := filepath.Join(etc, "tokens.yaml")
	admin := strings.TrimSpace(cliOK(t, nil, "", "token", "new", "--name", "ops", "--role", "admin", "--append", tokens))
	st := mustStat(t, tokens)
	assert.Equal(t, [2]uint32{0, serviceUser}, [2]uint32{st.Uid, st.Gid}, "root's, of the folder's group")
	assert.Equal(t, os.FileMode(0o640), os.FileMode(st.Mode).Perm())

	config := writeFile(t, filepath.Join(etc, "ctxd.yaml"), "auth:\n  mode: on\n  tokens_file: "+tokens+"\n")
	require.NoError(t, os.Chown(config, 0, serviceUser))
	require.NoError(t, os.Chmod(config, 0o640))
	data := serviceFolder(t, filepath.Join(base, "data"))
	p := testkit.StartServe(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser, Args: []string{"--config", config}})
	env := []string{"CTXD_SERVER=" + p.URL}
	cliOK(t, append(env, "CTXD_TOKEN="+admin), "", "put", "a", "1")

	// A token appended while it serves is read at the reload.
	board := strings.TrimSpace(cliOK(t, nil, "", "token", "new", "--name", "board", "--role", "read", "--append", tokens))
	p.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool {
		return cli(t, append(env, "CTXD_TOKEN="+board), "", "get", "a").stdout == "1\n"
	})
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())

	own := filepath.Join(t.TempDir(), "tokens.yaml")
	cliOK(t, nil, "", "token", "new", "--name", "ops", "--role", "admin", "--append", own)
	assert.Equal(t, os.FileMode(0o600), os.FileMode(mustStat(t, own).Mode).Perm(), "in root's own folder")
}

// A file of the configuration that the service's user may not read (a
// tokens file, the config file, a TLS key: root's, 0600) stops the
// server at its start with what to do, naming the file, as the database's
// owner error does: it said only "permission denied".
func TestUnreadableConfigFilesNameTheFix(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the files are root's, the server runs as another user")
	}
	t.Parallel()
	base, exe := openFolder(t)
	etc := filepath.Join(base, "etc")
	require.NoError(t, os.Mkdir(etc, 0o755))
	tokens := writeFile(t, filepath.Join(etc, "tokens.yaml"), "tokens: []\n") // 0600, root's
	cert, key := filepath.Join(etc, "cert.pem"), filepath.Join(etc, "key.pem")
	testkit.SelfSignedCert(t, cert, key, "127.0.0.1")
	require.NoError(t, os.Chmod(cert, 0o644))
	require.NoError(t, os.Chmod(key, 0o600))
	readable := func(name, content string) string {
		path := writeFile(t, filepath.Join(etc, name), content)
		require.NoError(t, os.Chmod(path, 0o644))
		return path
	}
	for _, c := range []struct {
		name, config, denied string
	}{
		{"tokens file", readable("tokens.config.yaml", "auth:\n  mode: on\n  tokens_file: "+tokens+"\n"), tokens},
		{"config file", writeFile(t, filepath.Join(etc, "ctxd.yaml"), "addr: 127.0.0.1:0\n"), filepath.Join(etc, "ctxd.yaml")},
		{"TLS key", readable("tls.config.yaml", "tls:\n  cert_file: "+cert+"\n  key_file: "+key+"\n"), key},
	} {
		data := serviceFolder(t, filepath.Join(base, strings.ReplaceAll(c.name, " ", "-")))
		_, err := testkit.StartServeErr(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser, Args: []string{"--config", c.config}})
		require.Error(t, err, c.name)
		msg := err.Error()
		assert.Contains(t, msg, "permission denied", c.name)
		assert.Contains(t, msg, "this process (uid 65534, gid 65534) may not read it", c.name)
		assert.Contains(t, msg, "chgrp ctxd "+c.denied+" && chmod g+r "+c.denied, c.name)
		assert.Contains(t, msg, "exit status 2", c.name)
	}
}

// serveAsServiceUser starts the server on data as the service user, runs
// use with the environment that names it to the CLI, and stops it
// (SIGTERM: a clean stop).
func serveAsServiceUser(t *testing.T, exe, data string, use func(env []string)) {
	t.Helper()
	p := testkit.StartServe(t, exe, data, testkit.ServeOptions{SysProcAttr: asServiceUser})
	use([]string{"CTXD_SERVER=" + p.URL})
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(30*time.Second), p.Stderr.String())
}
