#!/usr/bin/env bash
# CI for the example plugin. Run from the repository root, in the environment where the harness
# is installed (`pip install -e ".[dev]"`): installs the plugin, shows that the harness lists,
# checks and runs its operator, router and task, then uninstalls it and shows the built-ins
# intact and the plugin gone.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIST=chiaroscuro-example-plugin
tmp="$(mktemp -d)"
cleanup() {
    # never leave the plugin installed behind a failed step
    python -m pip uninstall -y -q "$DIST" >/dev/null 2>&1 || true
    rm -rf "$tmp" examples/plugin/*.egg-info
}
trap cleanup EXIT

echo "== install the plugin (entry points only; no dependency is downloaded)"
python -m pip install -q -e examples/plugin --no-deps

echo "== python -m harness list"
python -m harness list >"$tmp/list.txt" 2>"$tmp/list.err"
cat "$tmp/list.txt"
for name in dwconv flatness copy; do
    grep -Eq "^$name +$DIST " "$tmp/list.txt" \
        || { echo "FAIL: '$name' is not listed with origin $DIST"; exit 1; }
done
# a plugin that failed to load is a "warning: plugin '...' ... skipped" line; a slow import's
# "loading ... plugin '...' (still importing ...)" notice is not a failure
if grep -Eq "warning: plugin '[^']+' .*skipped" "$tmp/list.err"; then
    cat "$tmp/list.err"; echo "FAIL: a plugin failed to load"; exit 1
fi
echo "ok: dwconv, flatness and copy are listed with origin $DIST"

echo "== the conformance suite on the plugin's operator and router"
python -m harness conformance --ops dwconv --router flatness
python -m pytest -q -p no:cacheprovider examples/plugin/tests

echo "== python -m harness check with the plugin's components"
python -m harness check --preset smoke --ops dwconv --router single --task copy
python -m harness check --preset smoke --ops dwconv,attn --router flatness --task copy

echo "== a short run with the plugin's operator, router and task"
python -m harness run --preset smoke --task copy --router flatness --ops dwconv,attn \
    --out "$tmp/runs" --cache-dir "$tmp/cache"
python - "$tmp/runs" "$DIST" <<'PY'
import json, pathlib, sys
(path,) = pathlib.Path(sys.argv[1]).glob("*.json")
record = json.loads(path.read_text())
assert record["operators"] == ["dwconv", "attn"], record["operators"]
assert record["router"] == "flatness" and record["task"] == "copy"
plugins = record["environment"]["plugins"]
assert all(plugins[k].startswith(sys.argv[2]) for k in
           ("operator:dwconv", "router:flatness", "task:copy")), plugins
print(f"ok: record {path.name}, test accuracy {record['metrics']['test']['accuracy']:.3f}")
PY

echo "== uninstall the plugin"
python -m pip uninstall -y -q "$DIST"
python -m harness list >"$tmp/list.txt"
for name in dct attn entropy single; do
    grep -Eq "^$name +built-in " "$tmp/list.txt" \
        || { cat "$tmp/list.txt"; echo "FAIL: built-in '$name' missing"; exit 1; }
done
if grep -q "$DIST" "$tmp/list.txt"; then
    cat "$tmp/list.txt"; echo "FAIL: plugin rows still listed after uninstalling"; exit 1
fi
status=0
python -m harness run --preset smoke --task copy --ops dwconv >/dev/null 2>"$tmp/err" || status=$?
[ "$status" -eq 2 ] && grep -q "unknown task 'copy'" "$tmp/err" \
    || { cat "$tmp/err"; echo "FAIL: expected 'unknown task' (exit 2), got exit $status"; exit 1; }
echo "ok: built-ins intact, plugin gone"
echo "plugin CI: all steps passed"
