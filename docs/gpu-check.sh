#!/usr/bin/env bash
# The GPU checks of issue #12 in one run, for a machine with CUDA and a torch that sees it
# (none has been lent to the sessions that wrote the GPU path, so these have not run yet).
#
#   bash docs/gpu-check.sh [OUT_DIR]       (default: runs/gpu-check, git-ignored)
#
# It needs pydantic beside the machine's own torch, pytest, hypothesis, tabulate, tqdm, scipy
# and matplotlib (datasets only for the hub tasks, which these checks do not load). Where
# nothing can be fetched, carry wheels in .whl/ (git-ignored), made where pip works by
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .whl pydantic==2.14.4 \
#       pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#       typing-extensions==4.16.0
#
# (the versions CI installs today; Python 3.12 is the GPU machine's); they are installed into a
# private folder first. Each step's output goes to OUT_DIR/<step>.log; a step that fails does
# not stop the ones after it, and the exit status is the number of steps that failed. The
# steps' limits add up to 9 minutes, inside one 10-minute command on a lent machine.
set -u
out="${1:-runs/gpu-check}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site .whl/*.whl || exit 90
    export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0
step() {  # step NAME SECONDS COMMAND...: run it under a time limit, log it, count a failure
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    if timeout "$limit" "$@" >"$out/$name.log" 2>&1; then
        echo "   ok"
    else
        echo "   FAILED (status $?): tail of $out/$name.log"
        tail -n 25 "$out/$name.log"
        failed=$((failed + 1))
    fi
}

step env 30 python3 -c "import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0)); assert torch.cuda.is_available()"
# routed == dense on CUDA, bf16 steps, torch.compile, FlexAttention block masks, xformers
step gpu-tests 270 python3 -m pytest -q -x -m gpu -p no:cacheprovider tests
# routed causal attention on CUDA (FlexAttention chosen automatically) against full causal
# attention, and causal dct, ratios in one run
step bench-causal 150 python3 -m harness bench --causal --targets --no-train-step \
    --seq-lens 1024,4096 --ops attn,dct --fractions 1,0.25,0.125 --out "$out" \
    --name bench-gpu-causal
step bench-noncausal 90 python3 -m harness bench --targets --no-train-step \
    --seq-lens 1024,4096 --ops attn,dct --fractions 0.25 --out "$out" --name bench-gpu
echo "$failed step(s) failed; logs and bench JSON in $out"
exit "$failed"
