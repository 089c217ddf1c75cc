# Wharf: `make run` starts a node, `make test` runs every test.
GO      ?= go
BIN     := bin/wharf
ARGS    ?=

# testcontainers: the reaper image cannot be pulled here, and /.dockerenv
# would otherwise make it dial a gateway that does not exist.
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= localhost

.PHONY: all build run test unit integration vet docker clean-containers clean-images bench cluster cluster-down cluster-status

all: build

build:
	$(GO) build -o $(BIN) ./cmd/wharf

## run: start Docker if needed, build, and serve on 127.0.0.1:8080 with the embedded store
run: docker build
	./$(BIN) serve $(ARGS)

# Unit packages, the slowest first: go test runs two packages at a time here
# and starts them in this order, so the long ones do not run last and alone.
UNIT_PKGS = $$($(GO) list ./store ./images/runner ./mgmt ./builder ./modstore ./sandbox ./cli ./netpolicy ./... \
	| grep -v -e /integration -e /images$$)
# go vet ./... runs every analyzer before the tests, so go test's own subset
# (-vet) would only repeat it. Integration tests that only wait (npm,
# container starts) call t.Parallel: -parallel bounds how many run at once.
UNIT_FLAGS        = -count=1 -race -vet=off -timeout 10m
INTEGRATION_FLAGS = -count=1 -vet=off -parallel 4 -timeout 25m

## test: vet, unit tests (race detector) and integration tests against a real engine
test: docker vet
	$(GO) test $(UNIT_FLAGS) $(UNIT_PKGS)
	$(GO) test $(INTEGRATION_FLAGS) ./images/ ./integration/...

unit: vet
	$(GO) test $(UNIT_FLAGS) $(UNIT_PKGS)

integration: docker vet
	$(GO) test $(INTEGRATION_FLAGS) -v ./images/ ./integration/...

vet:
	$(GO) vet ./...

docker:
	@scripts/ensure-docker.sh

## clean-containers: remove every Wharf container and network on this engine (all nodes)
clean-containers:
	-docker ps -aq --filter label=wharf.node | xargs -r docker rm -f
	-docker network ls -q --filter label=wharf.node | xargs -r docker network rm

## clean-images: remove the Wharf images (runtime, cluster node, HAProxy) no container uses; the next start rebuilds what it needs
clean-images:
	-docker images -q --filter label=wharf.image | sort -u | xargs -r docker image rm
	-docker images -q --filter label=wharf.cluster.image | sort -u | xargs -r docker image rm

## bench: every figure against its same-run baseline; prints a table, writes bench/results.json (not part of make test)
##        make bench ARGS='-quick' | ARGS='-only warm,cold' | ARGS='-raised-cpus 1'
bench: docker
	$(GO) run ./bench/cmd/wharfbench $(ARGS)

## cluster: a local cluster on this engine: wharf store, two nodes in containers, HAProxy (deploy/local)
cluster: docker
	$(GO) run ./deploy/local/cmd/wharf-cluster up $(ARGS)

## cluster-down: drain the local cluster's nodes and remove everything it created
cluster-down:
	$(GO) run ./deploy/local/cmd/wharf-cluster down $(ARGS)

cluster-status:
	$(GO) run ./deploy/local/cmd/wharf-cluster status $(ARGS)
