package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --etcd-port 0 picks new ports at each run: with members born on other
// ports in the data folder it would never form a quorum, so it is refused
// at once, naming the folder to remove. On an empty folder it is fine.
func TestFreeEtcdPortsNeedAFreshDataFolder(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	args := []string{"--ctxd", self, "--data", data, "--etcd-port", "0"}
	if _, err := parse(args); err != nil {
		t.Fatalf("an empty data folder: %v", err)
	}
	for _, m := range []string{"m1", "m2", "m3"} { // the default --members 3
		if err := os.MkdirAll(filepath.Join(data, "etcd", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err = parse(args)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(data, "etcd")) {
		t.Fatalf("members born on other ports: want an error naming %s, got %v", filepath.Join(data, "etcd"), err)
	}
	if _, err := parse(append(args[:4], "--etcd-port", "2379")); err != nil {
		t.Fatalf("fixed ports with kept data: %v", err)
	}

	// A folder whose members' ports are recorded: only those ports.
	fixed := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fixed, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fixed, "etcd", bornPortFile), []byte("2379\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--ctxd", self, "--data", fixed}
	if _, err := parse(append(base, "--etcd-port", "2379")); err != nil {
		t.Fatalf("the ports the members were born with: %v", err)
	}
	for _, port := range []string{"18260", "0"} {
		_, err := parse(append(base, "--etcd-port", port))
		if err == nil || !strings.Contains(err.Error(), "born with --etcd-port 2379") {
			t.Fatalf("--etcd-port %s on members born with 2379: want a refusal naming it, got %v", port, err)
		}
	}
	if err := os.WriteFile(filepath.Join(fixed, "etcd", bornPortFile), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parse(append(base, "--etcd-port", "2379")); err == nil || !strings.Contains(err.Error(), "born on free ports") {
		t.Fatalf("members born on free ports: want a refusal, got %v", err)
	}

	if _, err := parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: want flag.ErrHelp (exit 0), got %v", err)
	}
}

// A data folder whose cluster was made with another --members is
// refused at once (exit 2), naming the folder and its member count: the
// old members would wait for their own quorum for the whole start bound
// while new ones formed another cluster. The same count is fine.
func TestMembersMustMatchTheDataFolder(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	etcdDir := filepath.Join(data, "etcd")
	for _, m := range []string{"m1", "m2", "m3"} {
		if err := os.MkdirAll(filepath.Join(etcdDir, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Ports of this test's own, should a start begin (it must not).
	base := []string{"--ctxd", self, "--data", data, "--etcd-port", "19310", "--ctxd-port", "19320"}
	if _, err := parse(append(base, "--members", "3")); err != nil {
		t.Fatalf("the count the folder was made with: %v", err)
	}
	for _, n := range []string{"1", "5"} {
		err := run(context.Background(), append(base, "--members", n), io.Discard)
		if err == nil || !strings.Contains(err.Error(), etcdDir) || !strings.Contains(err.Error(), "made with --members 3") {
			t.Fatalf("--members %s on a 3-member folder: want a refusal naming %s and 3, got %v", n, etcdDir, err)
		}
		if code := exitCode(err); code != 2 {
			t.Fatalf("--members %s on a 3-member folder: exit code %d, want 2", n, code)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "ctxd1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused start wrote to the data folder: %v", err)
	}
}
