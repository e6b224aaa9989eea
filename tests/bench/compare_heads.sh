#!/usr/bin/env bash
# Run the same full-size benchmarks on an older commit and on this checkout, alternating, on one machine:
#   tests/bench/compare_heads.sh OLD_REV [DATABASE_SERVER_URL]
# e.g. tests/bench/compare_heads.sh 4c91fb3 (the two-consumer head before the one pipeline). The older commit is
# checked out in a temporary worktree that shares this checkout's .venv; run it on an otherwise idle machine.
# HERALD_COMPARE_TESTS (space-separated test ids) runs others instead; the benchmarks' own size variables apply
# to both heads, e.g. HERALD_BENCH_RULES_SIZE=1000000 HERALD_BENCH_RECIPIENTS=50000 for a moderate run.
set -euo pipefail
cd "$(dirname "$0")/../.."
old_rev=${1:?usage: $0 OLD_REV [DATABASE_SERVER_URL]}
export TEST_DATABASE_URL=${2:-postgresql://postgres@127.0.0.1:5432/postgres}
old=$(mktemp -d)/old
git worktree add --detach "$old" "$old_rev" >/dev/null
ln -s "$PWD/.venv" "$old/.venv"
trap 'git worktree remove --force "$old"' EXIT
run() {  # directory label test
  echo "=== $2 $3 $(date +%T)"
  # A failed run (a shared machine out of database connections) is reported and the alternation goes on.
  (cd "$1" && .venv/bin/pytest -q -m bench -s -p no:cacheprovider "$3" 2>&1 | grep -E "\[bench\]|passed|failed") || true
}
default_tests="tests/bench/test_bench_delivery.py::test_transactional_latency_full
  tests/bench/test_bench_rules.py::test_rules_evaluation_full tests/bench/test_bench_campaign.py::test_campaign_fanout_million"
for test in ${HERALD_COMPARE_TESTS:-$default_tests}; do
  run "$old" "old $old_rev" "$test"
  run "$PWD" "this checkout" "$test"
  run "$PWD" "this checkout" "$test"
  run "$old" "old $old_rev" "$test"
done
