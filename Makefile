# adalbert: the two commands for a fresh machine are `make demo` and `make test`.
CARGO ?= cargo
BIN := target/release/adalbert
MODEL := assets/minilm

.PHONY: albert assets build test test-slurm lint fuzz demo bench bench-serve bench-scale soak clean-assets results-adapters results-hardware results-compression results-distill results-study

assets:
	scripts/fetch-assets

build:
	$(CARGO) build --release -p adalbert-cli

test: assets
	$(CARGO) test --workspace --release

# The tiny study on a real one-node Slurm cluster started here (root; installs slurm-wlm and
# munge with apt-get if missing): 3 shards + merge through deploy/slurm, compared with one
# process. See scripts/test-slurm.
test-slurm: build
	$(CARGO) build --release -p adalbert-experiment --example tiny_study
	scripts/test-slurm

lint:
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

# Every fuzz target of fuzz/ (cargo-fuzz, nightly) for FUZZ_SECONDS each; fails on any crash.
# Installs cargo-fuzz $(CARGO_FUZZ_VERSION) if missing. See scripts/fuzz and README "Guarantees".
FUZZ_SECONDS ?= 120
CARGO_FUZZ_VERSION ?= 0.13.2
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) CARGO_FUZZ_VERSION=$(CARGO_FUZZ_VERSION) scripts/fuzz

# The embedded default experiment: trains, compresses, simulates and writes runs/demo/report.
# The demo's second backbone: a small ALBERT distilled from all-MiniLM-L6-v2 for
# DEMO_ALBERT_STEPS steps (about 2 minutes on 2 cores; seed 42), so that Table 1 shows
# adapter-ALBERT on an ALBERT. It is far from converged; `make albert` builds the real student.
DEMO_ALBERT := runs/demo-albert
DEMO_ALBERT_STEPS ?= 80
demo: assets build
	$(BIN) info --model $(MODEL)
	@test -f $(DEMO_ALBERT)/distill.json || { set -x; $(BIN) distill --teacher $(MODEL) --out $(DEMO_ALBERT) \
		--embedding-size 128 --applications 6 --steps $(DEMO_ALBERT_STEPS) --warmup-steps 8 --seed 42 --resume; }
	$(BIN) run configs/demo.toml --out runs/demo --resume

# Issue 3's study; the report is copied into results/ (adapters.md + CSVs + figure).
results-adapters: assets build
	$(BIN) run configs/adapters.toml --out runs/adapters --resume
	cp runs/adapters/report/table1_tasks.csv results/adapters.csv
	cp runs/adapters/report/sweep_adapter_size.csv results/adapters_sweep.csv
	sed 's/fig_adapter_size.svg/adapters_size.svg/' runs/adapters/report/report.md > results/adapters.md
	cp runs/adapters/report/fig_adapter_size.svg results/adapters_size.svg

# Issue 15's study on both backbones (configs/study.toml at the scale its `scale` key says):
# results/study.md with its CSVs and figures in results/study/. Needs the ALBERT student at the
# path the config names (`make albert` writes it); a stopped run resumes where it was.
# STUDY_JOBS single-threaded shards run side by side (scripts/run-local-shards; default one per
# core), which keeps every core busy where one process running item after item does not.
STUDY_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
STUDY_ALBERT := $(shell sed -n '/name = "albert-minilm"/{n;s/^path = "\(.*\)"/\1/p}' configs/study.toml)
results-study: assets build
	@test -f "$(STUDY_ALBERT)/config.json" || { echo "results-study: no ALBERT student at '$(STUDY_ALBERT)' (configs/study.toml): run 'make albert' first (about an hour), or point the config's second backbone at one"; exit 1; }
	scripts/run-local-shards configs/study.toml runs/study $(STUDY_JOBS) $(BIN)
	@mkdir -p results/study
	rm -f results/study/*.csv results/study/*.svg
	cp runs/study/report/*.csv runs/study/report/*.svg results/study/
	sed -e 's#](fig_#](study/fig_#g' -e 's#`\([a-z0-9_]*\.csv\)`#`study/\1`#g' runs/study/report/report.md > results/study.md

# The accuracy joined to energy is the post-training compression study (results/compression.csv,
# all-MiniLM-L6-v2 subsets), until the study of adapter sizes and plans writes its own CSV.
results-hardware: build
	$(BIN) simulate --report results/ --accuracy results/compression.csv \
		--accuracy-backbone minilm --accuracy-adapter houlsby:64 \
		--accuracy-note "the post-training compression study (results/compression.md): houlsby:64 bundles on all-MiniLM-L6-v2, evaluated on the first 300 dev examples of three offline-suite tasks (bbc-topic has 222), dev metric, not GLUE. It is a first figure from subsets, not the final study of adapter sizes and plans."

# Issue 4's study: houlsby:64 bundles (trained here if missing, on subsets) evaluated on the
# compressed all-MiniLM-L6-v2; sweep in configs/compression/minilm.toml.
COMPRESSION_TASKS := movie-polarity tweet-sentiment bbc-topic
results-compression: assets build
	@mkdir -p runs/bundles
	@for t in $(COMPRESSION_TASKS); do \
		test -f runs/bundles/$$t.bundle.safetensors || \
		$(BIN) train --model $(MODEL) --task $$t --adapter houlsby:64 --max-train 2000 \
			--max-eval 500 --max-len 64 --epochs 2 --seed 42 \
			--out runs/bundles/$$t.bundle.safetensors || exit 1; \
	done
	$(BIN) compress --sweep configs/compression/minilm.toml --resume

# Issue 14: our own ALBERT, all-MiniLM-L6-v2 distilled with the default recipe (E 128, one
# shared layer applied 6 times, 2000 steps with 100 of warm-up, seed 42: deterministic for the
# seed) into assets/albert-minilm, when it is missing. About 55 minutes on 2 idle cores;
# --resume continues an interrupted build from its run state (written every 5 minutes).
ALBERT_DIR := assets/albert-minilm
ALBERT_CMD = $(BIN) distill --teacher $(MODEL) --out $(ALBERT_DIR) --embedding-size 128 \
	--applications 6 --steps 2000 --warmup-steps 100 --seed 42 --resume
albert: assets build
	@if test -f $(ALBERT_DIR)/distill.json; then \
		echo "$(ALBERT_DIR) exists (delete it to rebuild)"; \
	else \
		echo "$(ALBERT_CMD)"; $(ALBERT_CMD) || exit 1; \
	fi
	@echo "ALBERT student: $(ALBERT_DIR) (a Hugging Face ALBERT directory; distill.json has its recipe and scores)"

# Issue 14's study (tools/distill/study.py): the main student (DISTILL_MAIN, default the one
# `make albert` builds), ablations at DISTILL_K steps each (E 64/128/256, 1 vs 2 groups,
# SVD-only), head-only and houlsby:64 accuracy teacher vs student on three tasks (capped data),
# sizes fp32 and 8-bit bit-mask; CSVs in results/, then results/distill.md. Resumable: runs whose
# outputs exist under runs/distill/study are skipped.
DISTILL_MAIN ?= $(ALBERT_DIR)
DISTILL_K ?= 300
DISTILL_MAX_TRAIN ?= 1000
DISTILL_MAX_EVAL ?= 300
DISTILL_EPOCHS ?= 2
DISTILL_STUDY = python3 tools/distill/study.py --main $(DISTILL_MAIN) --teacher $(MODEL) --bin $(BIN) \
	--steps $(DISTILL_K) --max-train $(DISTILL_MAX_TRAIN) --max-eval $(DISTILL_MAX_EVAL) --epochs $(DISTILL_EPOCHS)
results-distill: assets build $(if $(filter $(ALBERT_DIR),$(DISTILL_MAIN)),albert)
	$(DISTILL_STUDY) --command "make results-distill (DISTILL_MAIN=$(DISTILL_MAIN) DISTILL_K=$(DISTILL_K))"

# Accuracy of each inference path is reported for the task bundles `make results-compression`
# trains (runs/bundles/), when they exist; BENCH_BUNDLE overrides the list.
bench: assets build
	BENCH_BUNDLE="$${BENCH_BUNDLE:-$$(ls runs/bundles/*.bundle.safetensors 2>/dev/null | tr '\n' ' ')}" tools/bench/run.sh

bench-serve: assets build
	crates/serve/bench/bench-serve.sh

# Issue 18: 64 tasks, --max-loaded-tasks 8, one replica vs 3 behind nginx (installed from
# Debian's packages when missing) -> results/serving-scale.md; and a 10-minute soak with
# uploads, deletions and evictions whose RSS must plateau -> results/serving-soak.md.
bench-scale: assets build
	crates/serve/bench/bench-scale.sh

soak: assets build
	crates/serve/bench/soak.sh

clean-assets:
	rm -rf assets
