#!/usr/bin/env bash
# Runs the whole lepeerchat test suite: formatting and vet, the type check
# of the browser client, every test under the race detector (the browser
# tests in e2e/ need Chromium at /usr/bin/chromium: without it they skip,
# unless CI is set), and short fuzz runs of the protocol decoder, the
# relay's scanner of signals and the name rules. Needs Go and Node; fetches
# Go modules through the Go module proxy and TypeScript (pinned in
# web/package-lock.json) through npm.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt, go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== type check of the web client (tsc --checkJs)"
if [ ! -x web/node_modules/.bin/tsc ]; then
	(cd web && npm ci --no-audit --no-fund)
fi
web/node_modules/.bin/tsc -p web

echo "== unit tests of the web client's pure modules (node --test)"
node --test web/test/

echo "== go test -race"
go test -race -count=1 ./...

echo "== fuzz (short runs)"
# Bounded by a count of executions, not by a duration: with a duration, Go
# can fail the run with a bare "context deadline exceeded" when a worker is
# starved at the deadline on a loaded machine (golang/go#75804).
for target in FuzzDecode FuzzScanSignal FuzzJSONScanner FuzzFrameReader; do
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-200000x}" ./signal/
done
go test -run '^$' -fuzz '^FuzzNormalizeName$' -fuzztime "${FUZZTIME:-200000x}" ./room/

echo "== all tests passed"
