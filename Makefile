# adalbert: the two commands for a fresh machine are `make demo` and `make test`.
CARGO ?= cargo
BIN := target/release/adalbert
MODEL := assets/minilm

.PHONY: assets build test lint demo bench clean-assets

assets:
	scripts/fetch-assets

build:
	$(CARGO) build --release -p adalbert-cli

test: assets
	$(CARGO) test --workspace --release

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

demo: assets build
	$(BIN) info --model $(MODEL)
	$(BIN) embed --model $(MODEL) --similarity \
		"A man is eating food." "Someone is having a meal." \
		"The stock market fell sharply today." "Shares dropped at the close of trading."

bench: assets build
	tools/bench/run.sh

clean-assets:
	rm -rf assets
