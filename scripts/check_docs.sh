#!/usr/bin/env bash
# The docs checks: the book in docs/ builds with mdbook (the version scripts/setup.sh installs,
# HTML in target/book), and scripts/check_docs.py finds no broken internal link, no page left out
# of docs/SUMMARY.md and a README.md of at most 200 lines.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MDBOOK="${MDBOOK:-${PRESCALE_CACHE:-$HOME/.cache/prescale}/mdbook-0.4.52/bin/mdbook}"
"$MDBOOK" build docs
python3 scripts/check_docs.py
