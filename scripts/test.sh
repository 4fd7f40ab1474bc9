#!/usr/bin/env bash
# Runs the whole lepeerchat test suite: formatting and vet, every test under
# the race detector, and short fuzz runs of the protocol decoder and the name
# rules. Needs only Go; fetches modules through the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt, go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test -race"
go test -race -count=1 ./...

echo "== fuzz (short runs)"
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "${FUZZTIME:-15s}" ./signal/
go test -run '^$' -fuzz '^FuzzNormalizeName$' -fuzztime "${FUZZTIME:-15s}" ./room/

echo "== all tests passed"
