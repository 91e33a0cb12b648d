# ctxd: `make run` starts the server, `make test` runs the checks. See README.md.

GO          ?= go
BIN         := bin/ctxd
# The etcd peer of `ctxd perf --compare etcd`: a module of its own
# (cmd/ctxd-etcd-peer/go.mod), so that ctxd neither links nor requires etcd.
ETCD_PEER   := bin/ctxd-etcd-peer
ETCD_PEER_DIR := cmd/ctxd-etcd-peer
# The one-command local cluster (3 etcd members, 3 ctxd instances): a module
# of its own for the same reason (cmd/ctxd-cluster/go.mod).
CLUSTER     := bin/ctxd-cluster
CLUSTER_DIR := cmd/ctxd-cluster
VERSION     := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
STATICCHECK := bin/staticcheck
STATICCHECK_VERSION := v0.7.0

.PHONY: build run cluster cluster-test test test-tools bench fuzz perf load powerloss powerloss-etcd fmt lint clean

## build: compile ./bin/ctxd, stamped with the version from git describe ("dev" without git), and beside it
## ./bin/ctxd-etcd-peer, the embedded etcd of `ctxd perf --compare etcd`, and ./bin/ctxd-cluster (make cluster)
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ctxd
	cd $(ETCD_PEER_DIR) && $(GO) build -o $(CURDIR)/$(ETCD_PEER) .
	cd $(CLUSTER_DIR) && $(GO) build -o $(CURDIR)/$(CLUSTER) .

## run: build, then serve on 127.0.0.1:8080 with data in ./data and readable logs (extra flags: make run ARGS='--addr 127.0.0.1:9090')
run: build
	./$(BIN) serve --data ./data --log-format console $(ARGS)

## cluster: build, then a local cluster until Ctrl-C: 3 etcd members (each a process of its own) and 3 ctxd instances
## on them (http://127.0.0.1:8081-8083, one etcd prefix); data and logs in ./data/cluster (kept across runs; remove
## the folder to start afresh). Other ports or sizes: make cluster ARGS='--ctxd-port 9081 --members 5'
cluster: build
	./$(CLUSTER) --ctxd $(BIN) $(ARGS)

## cluster-test: the long cluster tests (3 etcd members, 3 ctxd instances; thousands of operations, several leader
## and instance kills); make test runs the short ones
cluster-test:
	CTXD_LONG_CLUSTER=1 $(GO) test -race -count=1 -run '^TestCluster' -v -timeout 30m ./robustness/

## test: go vet, then every test with the race detector (3 packages at a time: many tests wait on fsyncs and timeouts)
# The packages whose tests take longest go first: go test starts packages in
# the order given (./... adds the rest), so that none of them is left to run
# alone at the end while the other core idles. Longest first, as measured
# (wall seconds of a full run under -race -p 3, .ci/run on a clean clone,
# 2026-12-07): robustness 190, store/etcd 148, httpapi/e2e 106, cmd/ctxd
# 96, store/bolt 92, realtime/socketio 59, httpapi 57, server 45, perf 44,
# realtime 41.
SLOW_PKGS = ./robustness/ ./store/etcd/ ./httpapi/e2e/ ./cmd/ctxd/ ./store/bolt/ ./realtime/socketio/ ./httpapi/ \
	./server/ ./perf/ ./realtime/

test: test-tools
	$(GO) vet ./...
	cd $(ETCD_PEER_DIR) && $(GO) vet ./...
	cd $(CLUSTER_DIR) && $(GO) vet ./... && $(GO) test ./...
	$(GO) test -race -p 3 $(SLOW_PKGS) ./...

## test-tools: the Framework0 shell test and the README's examples (cmd/ctxd) run curl and jq, the dashboard tests
## (httpapi/e2e) Chromium, the Socket.IO test (realtime/socketio) Python's socketio.AsyncClient: install curl, jq,
## chromium, python3-socketio and python3-aiohttp when they are missing (apt-get, as root in CI; CTXD_CHROMIUM names
## another browser)
test-tools:
	@command -v curl >/dev/null 2>&1 || { \
		echo "curl is missing: installing it with apt-get" >&2; \
		{ apt-get update -qq && apt-get install -y -qq curl >/dev/null; } || \
		{ echo "could not install curl: install it (apt-get install curl) and run make test again" >&2; exit 1; }; }
	@command -v jq >/dev/null 2>&1 || { \
		echo "jq is missing: installing it with apt-get" >&2; \
		{ apt-get update -qq && apt-get install -y -qq jq >/dev/null; } || \
		{ echo "could not install jq: install it (apt-get install jq) and run make test again" >&2; exit 1; }; }
	@[ -n "$$CTXD_CHROMIUM" ] || [ -x /usr/bin/chromium ] || { \
		echo "chromium is missing: installing it with apt-get" >&2; \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		{ echo "could not install chromium: install it (apt-get install chromium) and run make test again" >&2; exit 1; }; }
	@python3 -c 'import socketio, aiohttp' >/dev/null 2>&1 || /usr/bin/python3 -c 'import socketio, aiohttp' >/dev/null 2>&1 || { \
		echo "python3-socketio or python3-aiohttp is missing (the Framework0 async client test): installing them with apt-get" >&2; \
		{ apt-get update -qq && apt-get install -y -qq python3-socketio python3-aiohttp >/dev/null; } || \
		{ echo "could not install them: apt-get install python3-socketio python3-aiohttp, and run make test again" >&2; exit 1; }; }

## bench: every benchmark, with allocations
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run every fuzz target for FUZZTIME each (make test runs their seeds only).
## Each runs from its own test binary with its corpus under bin/fuzz/corpus:
## plain `go test -fuzz` was seen stalling here on the store's snapshot target.
FUZZTIME ?= 30s
fuzz:
	@mkdir -p bin/fuzz
	@for pkg in $$($(GO) list ./...); do \
		targets=$$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); \
		[ -n "$$targets" ] || continue; \
		for t in $$targets; do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -c -fuzz "^$$t$$" -o bin/fuzz/t.test $$pkg || exit 1; \
			./bin/fuzz/t.test -test.run '^$$' -test.fuzz "^$$t$$" -test.fuzztime $(FUZZTIME) \
				-test.fuzzcachedir bin/fuzz/corpus/$$t || exit 1; \
		done; \
	done

## perf: the performance suite's standard set against an in-process server (about 5 minutes); results in perf-results/<time>/
## (more flags: make perf ARGS='--quick'; ctxd side by side with etcd and a bare net/http handler: make perf ARGS='--compare etcd')
perf: build
	./$(BIN) perf $(ARGS)

## load: the load test for 60 s instead of 3 (256 clients against the built server, under -race; make test runs the short one)
load:
	CTXD_LONG_LOAD=1 $(GO) test -race -run '^TestLoadMixedClients$$' -v -timeout 15m ./cmd/ctxd/

## powerloss: TRIALS power-loss trials (default 50; make test runs 6) of the built server on powerfs, a FUSE file system
## that forgets unsynced writes (needs /dev/fuse and root); each trial's line as it ends, then one summary line, and
## exit 0 only when nothing acknowledged was lost, nothing is unopenable or torn. Full log: bin/powerloss.log.
## A failing trial names its seed: make powerloss TRIALS=1 SEED=<seed> runs it again. Then the store's own power-cut
## test (store/bolt) with a cut before every file change the store makes, not every 10th as in make test.
TRIALS ?= 50
powerloss:
	@mkdir -p bin && rm -f bin/powerloss.txt
	@CTXD_POWERLOSS_TRIALS=$(TRIALS) CTXD_POWERLOSS_SEED=$(SEED) CTXD_POWERLOSS_REPORT=$(CURDIR)/bin/powerloss.txt \
		$(GO) test -count=1 -timeout 0 -v -run '^TestPowerLoss$$' ./robustness/ 2>&1 | tee bin/powerloss.log | \
		grep --line-buffered -E '^ +powerloss_test.go:[0-9]+: (trial [0-9]|(lost|unopenable|torn|inconsistent): )' | \
		sed -u 's/^ *powerloss_test.go:[0-9]*: /  /' || true
	@[ -s bin/powerloss.txt ] || { tail -n 30 bin/powerloss.log; echo "power-loss: the trials did not run (bin/powerloss.log)"; exit 1; }
	@cat bin/powerloss.txt
	@grep -q '^ok' bin/powerloss.log && grep -q ', 0 acknowledged writes lost, 0 unopenable files, 0 torn files$$' bin/powerloss.txt
	@echo "store power cuts, before every change the store makes to its files (make test: every 10th); log: bin/powercut.log"
	@CTXD_POWERCUT_STEP=1 $(GO) test -count=1 -timeout 0 -run '^TestPowerCutKeepsAcknowledgedWrites$$' -v ./store/bolt/ \
		> bin/powercut.log 2>&1; rc=$$?; grep -E 'power cuts|^(ok|FAIL|--- FAIL)' bin/powercut.log; exit $$rc
	@$(MAKE) --no-print-directory powerloss-etcd

## powerloss-etcd: ETCD_TRIALS power-loss trials (default 10; make test runs 1, and its negative control) of ctxd on
## etcd: a 3-member cluster (make cluster's members) keeps its data on one powerfs mount, writers on 3 ctxd instances,
## the power cut for all members at once; exit 0 only when every acknowledged write is back. Log: bin/powerloss-etcd.log;
## a failing trial names its seed: make powerloss-etcd ETCD_TRIALS=1 SEED=<seed>. make powerloss runs it last.
ETCD_TRIALS ?= 10
powerloss-etcd:
	@mkdir -p bin && rm -f bin/powerloss-etcd.txt
	@CTXD_ETCD_POWERLOSS_TRIALS=$(ETCD_TRIALS) CTXD_POWERLOSS_SEED=$(SEED) CTXD_ETCD_POWERLOSS_REPORT=$(CURDIR)/bin/powerloss-etcd.txt \
		$(GO) test -count=1 -timeout 0 -v -run '^TestEtcdPowerLoss$$' ./robustness/ > bin/powerloss-etcd.log 2>&1; rc=$$?; \
		grep -E '^ +etcd_powerloss_test.go:[0-9]+: (trial [0-9]|lost|torn)' bin/powerloss-etcd.log | sed 's/^ *etcd_powerloss_test.go:[0-9]*: /  /'; \
		cat bin/powerloss-etcd.txt 2>/dev/null || { tail -n 30 bin/powerloss-etcd.log; echo "etcd power-loss: the trials did not run"; }; exit $$rc

## fmt: format every Go file in place
fmt:
	gofmt -w $$(find . -name '*.go' -not -path './bin/*')

## lint: no merge conflict markers left in tracked files, then staticcheck (installed into ./bin on first use)
lint: $(STATICCHECK)
	@! git grep -nE '^(<<<<<<<|>>>>>>>) ' -- . ':!*.db' || { echo "lint: merge conflict markers left in the files above" >&2; exit 1; }
	./$(STATICCHECK) ./...
	cd $(ETCD_PEER_DIR) && $(CURDIR)/$(STATICCHECK) ./...
	cd $(CLUSTER_DIR) && $(CURDIR)/$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## clean: remove ./bin (the data folder ./data is left alone)
clean:
	rm -rf bin
