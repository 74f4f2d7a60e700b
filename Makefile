# Everyday commands. A fresh machine needs only: make run   (or)   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# make bench: the long-history workload at 40 % (3.1 million events, about 30 minutes here); YEAR_SCALE=1 is 7.8 million
YEAR_SCALE ?= 0.4
.PHONY: run test unit integration up down lint venv clean prometheus bench

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

up: venv  ## start local Kafka (KRaft, 127.0.0.1:9092) and Redis (127.0.0.1:6379) if not running; install promtool
	ops/kafka.sh up
	ops/redis.sh up
	ops/prometheus.sh install

down:  ## stop what `make up` (and `make prometheus`) started
	ops/prometheus.sh down
	ops/redis.sh down
	ops/kafka.sh down

prometheus: up  ## a Prometheus server on 127.0.0.1:9090 scraping `make run`, with the alert rules loaded
	ops/prometheus.sh up

run: up  ## the worker in the foreground on its embedded defaults
	$(BIN)/loyalty worker

lint: venv
	$(BIN)/ruff check .

unit: venv
	ops/prometheus.sh install
	$(BIN)/pytest -m "not integration" -q

integration: up
	$(BIN)/pytest -m integration -q

test: up lint  ## the whole suite: unit and property tests, then integration tests on the real broker
	$(BIN)/pytest -q

bench: up  ## throughput, latency, recovery vs a plain aiokafka loop and Quix Streams -> docs/benchmarks.md
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.flash_sale $(FLASH_ARGS)
	$(BIN)/python -m bench.run --workload year --scale $(YEAR_SCALE) --only service,fair --doc '' $(YEAR_ARGS)

clean: down
	rm -rf .local
