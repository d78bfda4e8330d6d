#!/usr/bin/env bash
# paho-interop.sh HOST PORT [RUNS]
#
# Runs the Eclipse Paho interoperability suites (eclipse/paho.mqtt.testing,
# interoperability/client_test.py for MQTT 3.1.1 and client_test5.py for
# MQTT 5), unmodified, against a running broker, RUNS times in a row
# (default 1), each test in its own process with a timeout, and prints one
# line per test and a summary per suite and run. The suite is EPL code: keep
# its checkout outside this repository and point PAHO_DIR at its
# interoperability folder.
#
#   PAHO_DIR=/path/to/paho.mqtt.testing/interoperability scripts/paho-interop.sh 127.0.0.1 1883 3
#
# Env: PAHO_DIR (required), SUITES ("client_test.py client_test5.py"),
#      TESTS (e.g. "test_will_delay"; default all), TIMEOUT (seconds per test, 60).
# The suites delete every retained message on the broker and use the client
# ids myclientid and myclientid2: do not point them at a production broker.
# Exit status 0 when every test of every run passed.
set -u
HOST=${1:?usage: paho-interop.sh HOST PORT [RUNS]}
PORT=${2:?usage: paho-interop.sh HOST PORT [RUNS]}
RUNS=${3:-1}
PAHO_DIR=${PAHO_DIR:?set PAHO_DIR to paho.mqtt.testing/interoperability}
SUITES=${SUITES:-client_test.py client_test5.py}
TIMEOUT=${TIMEOUT:-60}
TESTS=${TESTS:-}
[ -f "$PAHO_DIR/client_test5.py" ] || { echo "no client_test5.py in $PAHO_DIR" >&2; exit 2; }

# One test, in this process: the suites parse their own argv (and treat
# '-h' as --help, and client_test.py keeps '-p' in argv for unittest), so
# the suite file runs as __main__ with a clean argv and unittest.main runs
# only the chosen test.
read -r -d '' ONE <<'PY'
import os, runpy, sys, unittest
suite, host, port, test = sys.argv[1:5]
os.chdir(os.path.dirname(os.path.abspath(suite)))
sys.path.insert(0, os.getcwd())
main = unittest.main
def run_one(*a, **kw):
    kw.update(argv=[suite, "Test." + test], exit=False, verbosity=2)
    ok = main(*a, **kw).result.wasSuccessful()
    sys.stdout.flush()
    os._exit(0 if ok else 1)  # the suite's client threads may linger
unittest.main = run_one
sys.argv = [suite, "--hostname=" + host, "-p", port]
runpy.run_path(os.path.basename(suite), run_name="__main__")
PY

status=0
for run in $(seq 1 "$RUNS"); do
  for suite in $SUITES; do
    tests=$TESTS
    if [ -z "$tests" ]; then
      tests=$(cd "$PAHO_DIR" && python3 -c "
import sys, unittest; sys.argv=[sys.argv[0]]; sys.path.insert(0, '.')
m = __import__('${suite%.py}')
print(' '.join(unittest.TestLoader().getTestCaseNames(m.Test)))")
    fi
    pass=0 fail=0 failed=""
    for t in $tests; do
      start=$(date +%s.%N)
      out=$(timeout "$TIMEOUT" python3 -c "$ONE" "$PAHO_DIR/$suite" "$HOST" "$PORT" "$t" 2>&1); rc=$?
      secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
      case $rc in
        0) res=PASS; pass=$((pass+1)) ;;
        124) res=TIMEOUT ;;
        *) res=FAIL ;;
      esac
      if [ $res != PASS ]; then
        fail=$((fail+1)); failed="$failed $t"; status=1
        printf '%s\n' "$out" | tail -n 15 | sed 's/^/    | /'
      fi
      printf 'run %s %-16s %-7s %s (%ss)\n' "$run" "$suite" "$res" "$t" "$secs"
    done
    echo "SUMMARY run $run $suite: $pass passed, $fail failed${failed:+ (failed:$failed)}"
  done
done
exit $status
