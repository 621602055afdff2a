# dockscope: the targets CI runs are the ones documented in the README.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The commit, stamped with -X so that --version names it even where Go's own VCS stamping
# is off (-buildvcs=false, a tarball); empty outside git, and the agent falls back.
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
PKGS      := ./...
# Fuzzing budgets are counts of executions (about 20 s each here), not durations: Go 1.26's
# fuzz coordinator can fail a run whose wall-clock -fuzztime ends while a worker is busy,
# "context deadline exceeded" with no failing input (go.dev/issue/75804, fixed in Go 1.27).
# FUZZTIME=10m fuzzes every target for that long instead.
FUZZTIME  ?=
fuzzbudget = -fuzztime $(or $(FUZZTIME),$(1)) -fuzzminimizetime 5s

.PHONY: all build image setup test unit integration integration-engine28 integration-swarm integration-podman integration-rootless integration-cgroupv2 lint fuzz deploy-check fault-churn bench bench-logs soak clean

all: build

## build: the static agent binary in bin/dockscope
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dockscope ./cmd/agent

## image: the agent image dockscope:$(VERSION), FROM scratch (no registry needed);
## DOCKER_GID=<gid> sets the group that may read the Docker socket
image:
	VERSION=$(VERSION) REVISION=$(REVISION) bash scripts/build-image.sh

## setup: install what the tests need (Docker if absent, Prometheus, the OTel Collector build)
setup:
	bash scripts/setup.sh

## test: everything CI runs: lint, unit tests, short fuzzing, deployment checks, integration tests
## (against the machine's Engine, then the Engine-talking ones against Engine 28.5, then the
## Swarm stack on a three-node Swarm, then the Engine-talking ones against rootless Docker and
## Podman, then a cgroup v2 + systemd Docker host in a VM)
test: setup lint unit fuzz deploy-check integration integration-engine28 integration-swarm integration-rootless integration-podman integration-cgroupv2

## unit: tests of pure logic, with the race detector
unit:
	$(GO) test -race -count=1 $(PKGS)

## integration: tests against the real Docker Engine, Prometheus and OTel Collector
integration:
	$(GO) test -race -count=1 -tags integration -timeout 25m -v -p 1 ./test/integration/...

## integration-engine28: the integration tests that talk to the Engine, against Debian's current
## Engine (sid's docker.io 28.5, API 1.51, containerd 2.1) run beside the machine's as a second
## daemon by scripts/engine28.sh (fetched once into ~/.cache/dockscope/engine28; stopped after,
## and its data root removed after a passing run)
ENGINE28_TESTS := ^(TestDaemonRestartLosesNoLogLine|TestSmokeWorkload.*|TestCPUBurnReadsAsOneCore|TestMemoryLimitAndWorkingSet|TestHealthStateFlips|TestExitCodeAndRestarts|TestNewContainerAppearsAndRemovedVanishes|TestFiltersAndLabelAllowlist|TestPrometheusScrapesTheAgent|TestDaemonOutageAndRecovery|TestStatsSourcesAgree|TestLogs.*|TestEventsShippedAsLogRecordsAndOOMKillsCounted|TestBadInputFromTheEngine|TestAgentIsReadOnly|TestDashboardQueries)$$
integration-engine28:
	bash scripts/engine28.sh start
	status=0; eval "$$(bash scripts/engine28.sh env)"; \
		$(GO) test -race -count=1 -tags integration -timeout 20m -v -run '$(ENGINE28_TESTS)' ./test/integration/ || status=$$?; \
	if [ $$status = 0 ]; then bash scripts/engine28.sh clean; else bash scripts/engine28.sh stop; fi; \
	if [ $$status != 0 ]; then echo "integration-engine28: FAILED on Engine 28.5 (scripts/engine28.sh, $$DOCKSCOPE_TEST_DOCKER_HOST)" >&2; fi; \
	exit $$status

## integration-swarm: deploy/swarm-stack.yml on a multi-node Swarm: SWARM_NODES (3) Engines of
## Debian's current docker.io (scripts/engine28.sh's cached binaries), each in its own network
## namespace with its own address, started and removed again by scripts/swarm-nodes.sh
SWARM_NODES ?= 3
integration-swarm:
	DOCKSCOPE_TEST_SWARM_NODES=$(SWARM_NODES) $(GO) test -race -count=1 -tags integration -timeout 10m -v \
		-run '^TestSwarmMultiNode$$' ./test/integration/

## integration-podman: the same Engine-talking tests against Podman's Docker-compatible API
## (`podman system service`, Debian's podman: 4.3 on bookworm) run by scripts/podman.sh with a
## configuration of its own; the tests Podman cannot pass skip with the reason. 4.5-8 minutes,
## start and purge included. A pass removes its storage (scripts/podman.sh purge); a failure keeps it.
integration-podman:
	bash scripts/podman.sh start
	status=0; eval "$$(bash scripts/podman.sh env)"; \
		$(GO) test -race -count=1 -tags integration -timeout 20m -v -run '$(ENGINE28_TESTS)' ./test/integration/ || status=$$?; \
	if [ $$status = 0 ]; then bash scripts/podman.sh purge; else bash scripts/podman.sh stop; \
		echo "integration-podman: FAILED on Podman (scripts/podman.sh, $$DOCKSCOPE_TEST_DOCKER_HOST; its storage kept)" >&2; fi; \
	exit $$status

## integration-rootless: the integration tests that talk to the Engine, against rootless Docker
## (dockerd-rootless.sh under rootlesskit with slirp4netns, run by the user dockscope-rootless)
## started by scripts/rootless.sh (Engine 28.5 from engine28.sh's cache; ROOTLESS_ENGINE=system
## for the machine's 20.10), plus the agent run as that user. What rootless Docker on cgroup v1
## cannot give (cgroups: CPU, memory, limits, OOM kills) the tests skip, saying so; restarting
## its daemon is skipped too (it lives in rootlesskit's namespaces, no pid file given).
## About 3.5 minutes, start and stop included; after a passing run its data root and user go too.
ROOTLESS_TESTS := ^(TestSmokeWorkload.*|TestCPUBurnReadsAsOneCore|TestMemoryLimitAndWorkingSet|TestHealthStateFlips|TestExitCodeAndRestarts|TestNewContainerAppearsAndRemovedVanishes|TestFiltersAndLabelAllowlist|TestPrometheusScrapesTheAgent|TestDaemonOutageAndRecovery|TestStatsSourcesAgree|TestLogs.*|TestEventsShippedAsLogRecordsAndOOMKillsCounted|TestBadInputFromTheEngine|TestAgentIsReadOnly|TestRootlessDockerAgentAsItsUser)$$
integration-rootless:
	bash scripts/rootless.sh start
	status=0; eval "$$(bash scripts/rootless.sh env)"; \
		$(GO) test -race -count=1 -tags integration -timeout 20m -v -run '$(ROOTLESS_TESTS)' ./test/integration/ || status=$$?; \
	if [ $$status = 0 ]; then bash scripts/rootless.sh clean; else bash scripts/rootless.sh stop; fi; \
	if [ $$status != 0 ]; then echo "integration-rootless: FAILED on rootless Docker (scripts/rootless.sh, $$DOCKSCOPE_TEST_DOCKER_HOST)" >&2; fi; \
	exit $$status

## integration-cgroupv2: the agent on a real cgroup v2 host with Docker's systemd cgroup driver:
## a Debian trixie VM (kernel 6.12, Docker 26.1) under qemu's software emulation, booted by
## scripts/cgroupv2-vm.sh, runs TestCgroupV2VM* (both stats sources agree, logs, events) inside.
## Its root file system is built once into ~/.cache/dockscope/cgroupv2-vm (debootstrap).
integration-cgroupv2:
	bash scripts/cgroupv2-vm.sh run

## lint: gofmt and go vet (with and without the integration tag)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration ./test/...

## deploy-check: alert rules and their promtool unit tests, the Grafana dashboard's queries,
## and the Helm chart (lint --strict, template, strict decoding into the Kubernetes types)
deploy-check:
	bash deploy/alerts/check.sh
	bash scripts/helm-check.sh

## fuzz: a short run of every fuzz target (the config parser, the log demuxer and merger,
## the stats JSON decoding, the cgroup and /proc parsers, the cgroup resolution, the /metrics
## label escaper and value formatter)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' $(call fuzzbudget,150000x) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzDemux$$' $(call fuzzbudget,400000x) ./collector/logparse/
	$(GO) test -run '^$$' -fuzz '^FuzzStatsDecode$$' $(call fuzzbudget,250000x) ./collector/
	$(GO) test -run '^$$' -fuzz '^FuzzCgroupFiles$$' $(call fuzzbudget,150000x) ./collector/
	$(GO) test -run '^$$' -fuzz '^FuzzCgroupResolve$$' $(call fuzzbudget,150000x) ./collector/
	$(GO) test -run '^$$' -fuzz '^FuzzAssemble$$' $(call fuzzbudget,300000x) ./collector/logparse/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendLabel$$' $(call fuzzbudget,50000x) ./exporters/prometheus/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendFloat$$' $(call fuzzbudget,50000x) ./exporters/prometheus/

## fault-churn: the churn fault test at its full size (2,000 containers, ~18 minutes here; CI runs 300)
fault-churn:
	DOCKSCOPE_CHURN=2000 $(GO) test -race -count=1 -tags integration -timeout 60m -run '^TestFaultChurn$$' -v ./test/integration/

## bench: the overhead benchmark (see README, Performance); about 16 minutes
bench:
	$(GO) run ./bench/overhead -n 50,200,500 -window 60s -scrape-every 15s -plot docs/overhead.svg

## bench-logs: the log throughput benchmark (see README, Performance); about 5 minutes
bench-logs: setup
	$(GO) run ./bench/logs

## soak: dockscope for 30 minutes under container churn, steady logs and a collector stopped
## for 20 s every 2 min; samples RSS, goroutines and fds (soak.csv, soak.svg), checks every line
soak: setup
	$(GO) run ./bench/soak -csv docs/soak.csv -plot docs/soak.svg

clean:
	rm -rf bin
