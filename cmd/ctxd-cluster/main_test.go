package main

import (
	"errors"
	"flag"
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
	if err := os.MkdirAll(filepath.Join(data, "etcd", "m1"), 0o755); err != nil {
		t.Fatal(err)
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
