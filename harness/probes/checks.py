"""Invariant checks any combination must pass, measured empirically on random inputs.

Declarations can be wrong (a plugin operator may say it is causal and peek at t+1), so every
check perturbs inputs and looks at outputs; it needs no knowledge of the code under test.

- causality (causal tasks): changing tokens after t leaves outputs at <= t unchanged;
- batch independence: an example's output does not depend on the rest of its batch;
- routed == dense: executing only routed tokens equals computing everything and selecting,
  outputs and gradients;
- finite: outputs, loss and every gradient are finite;
- flop counter: each operator's analytic FLOPs agree with torch.utils.flop_counter.

When the model-level causality or batch-independence check fails, each router and operator of
that model is asked the same question on its own input (harness/engine/leak_probe.py), so the
message names the component at fault. The leak checks run on any model: fresh copies before
training (harness/runner/guard.py) and the trained instance itself after it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from harness.core.config import RunConfig
from harness.engine.leak_probe import (
    ATOL,
    SameState,
    Trace,
    Variant,
    alone,
    blame,
    future_changed,
    gradients_aside,
    max_diff,
    others_replaced,
    rng_kept,
    trace,
)
from harness.engine.model import Model
from harness.probes.conformance.common import perturb_parameters
from operators import OPERATORS, MixContext
from tasks import Batch, Task

FLOP_TOLERANCE = 0.05  # analytic vs counted, relative


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    culprits: tuple[str, ...] = ()  # the components at fault, for a failed leak check
    # a leak check that passed because its only failures were float32 rounding amplified by a
    # hard decision (harness/engine/leak_probe.py): what was seen, for the record's notes
    rounding: str = ""
    # False: nothing here could be measured (an operator whose FLOPs torch's counter cannot
    # see): shown as "n/a", never as a pass
    applicable: bool = True

    def message(self) -> str:
        """The detail, with the components at fault."""
        return self.detail + (f"; at fault: {', '.join(self.culprits)}" if self.culprits else "")

    def row(self) -> list[str]:
        return [self.name, self.verdict, self.message()]

    @property
    def verdict(self) -> str:
        return "FAIL" if not self.passed else ("pass" if self.applicable else "n/a")


# -- inputs ------------------------------------------------------------------------------------


def random_batch(task: Task, batch_size: int, seq_len: int, generator: torch.Generator,
                 padded: bool = False) -> Batch:
    """Random tokens of the task's shape. Classification batches get right padding of varying
    length when `padded` (padding must not matter); LM batches are full."""
    tokens = torch.randint(1, task.vocab_size, (batch_size, seq_len), generator=generator)
    mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
    if padded and not task.causal:
        for i in range(batch_size):
            keep = int(torch.randint(seq_len // 2, seq_len + 1, (1,), generator=generator))
            mask[i, keep:] = False
    tokens = tokens.masked_fill(~mask, task.pad_id)
    if task.causal:
        targets = torch.randint(0, task.vocab_size, (batch_size, seq_len), generator=generator)
    else:
        n_classes = getattr(task, "num_classes", 2)
        targets = torch.randint(0, n_classes, (batch_size,), generator=generator)
    return Batch(tokens, mask, targets)


# -- model-level leak probes --------------------------------------------------------------------

MODES = ("train", "eval")  # how a run uses the model: training steps, then evaluation


@contextmanager
def probe_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """``train``: training mode with autograd on, as a training step runs the model (the
    harness's own dropout off, so two forwards are comparable); ``eval``: eval mode without
    autograd, as evaluation runs it. A component that peeks only in one of them is seen."""
    was_training = model.training
    model.train(mode == "train")
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    try:
        with torch.enable_grad() if mode == "train" else torch.no_grad():
            yield
    finally:
        model.train(was_training)


@contextmanager
def same_start(model: nn.Module, task: Task, backward: bool = False
               ) -> Iterator[Callable[[Batch], Trace]]:
    """A forward whose every call starts from the state the model had on entry (buffers, RNG),
    so two outputs differ only because their inputs do; in training mode with autograd and
    `backward`, each forward is followed by a backward pass of the task's loss, as a training
    step runs. Leaves the model's state, its gradients and the RNG streams as it found them."""
    device = next(model.parameters()).device
    with rng_kept(device), gradients_aside(model):
        state = SameState(model)

        def forward(batch: Batch) -> Trace:
            state.restore()
            batch = batch.to(device)
            out = model(batch)
            if backward and model.training and torch.is_grad_enabled():
                (task.loss(out.logits, batch) + out.aux_loss).backward()
            return trace(out)

        try:
            yield forward
        finally:
            state.restore()


@dataclass
class _Failure:
    moved: float
    at: str
    ref: Trace
    out: Trace
    variant: Variant
    mode: str


class _Failures:
    """The variants that moved the outputs, with what blame needs."""

    def __init__(self) -> None:
        self.seen: list[_Failure] = []

    def consider(self, ref: Trace, out: Trace, variant: Variant, mode: str, at: str) -> None:
        moved = variant.moved(ref.logits, out.logits)
        if moved > 0:
            self.seen.append(_Failure(moved, at, ref, out, variant, mode))

    def result(self, model: Model, task: Task, batch: Batch, backward: bool, name: str,
               passed: str, failed: str) -> CheckResult:
        """The check's result: the worst failure that is a leak, with the components at fault
        (asked in its mode, from the state the check ran in); a pass with a note when every
        failure was float32 rounding amplified by a hard decision."""
        rounding = ""
        for f in sorted(self.seen, key=lambda f: f.moved, reverse=True):
            with probe_mode(model, f.mode), same_start(model, task, backward):
                found = blame(model, batch, f.ref, f.out, f.variant)
            if not found.rounding:
                return CheckResult(name, False, failed.format(at=f.at, moved=f.moved),
                                   found.culprits)
            rounding = rounding or f"{f.at}: moved by {f.moved:.2e}; {found.rounding}"
        return CheckResult(name, True, passed, rounding=rounding)


def _where(mode: str, batch_size: int, seq_len: int, backward: bool = False) -> str:
    grad = "no autograd" if mode == "eval" else \
        "autograd and a backward pass" if backward else "autograd on"
    return f"{mode} mode, {grad}, batch {batch_size} x {seq_len}"


def _leak_check(name: str, model: Model, task: Task, batch: Batch,
                variants: Callable[[], Iterable[Variant]], modes: tuple[str, ...],
                backward: bool, passed: str, failed: str) -> CheckResult:
    """`name` passes (saying `passed`) when, in every mode, no variant of `batch` moves the
    outputs it must not; else it fails saying `failed` (formatted with the worst variant's
    `at` and `moved`) and names the components at fault. `variants()` gives each mode's
    variants, drawn as the mode runs."""
    batch_size, seq_len = batch.tokens.shape
    failures = _Failures()
    for mode in modes:
        with probe_mode(model, mode), same_start(model, task, backward) as forward:
            ref = forward(batch)
            for variant in variants():
                failures.consider(ref, forward(variant.batch), variant, mode,
                                  f"{variant.how}, {_where(mode, batch_size, seq_len, backward)}")
    return failures.result(model, task, batch, backward, name, passed, failed)


def check_causality(model: Model, task: Task, seq_len: int, g: torch.Generator,
                    batch_size: int = 2, modes: tuple[str, ...] = MODES,
                    backward: bool = False) -> CheckResult:
    """Changing the tokens after t leaves outputs at <= t unchanged, at several t (the last
    ones included: a leak may start late in the sequence). Each example of a perturbed batch
    is cut at its own t, so one forward tests up to `batch_size` cuts. `backward`: a backward
    pass after each training-mode forward."""
    batch = random_batch(task, batch_size, seq_len, g)
    cuts = {0, seq_len // 2, seq_len - 2,
            int(torch.randint(0, max(seq_len - 1, 1), (1,), generator=g))}
    cuts = sorted(t for t in cuts if 0 <= t < seq_len - 1)
    rounds = [cuts[i:i + batch_size] for i in range(0, len(cuts), batch_size)]

    def variants() -> Iterator[Variant]:  # new future tokens in each mode
        for ts in rounds:
            cut = [ts[i % len(ts)] for i in range(batch_size)]  # example i: after cut[i]
            yield future_changed(batch, cut, g, task.vocab_size)

    return _leak_check("causality", model, task, batch, variants, modes, backward,
                       f"outputs <= t unchanged ({', '.join(modes)}; batch {batch_size} x "
                       f"{seq_len})",
                       "{at}: outputs at <= t changed by {moved:.2e}")


def check_batch_independence(model: Model, task: Task, seq_len: int, g: torch.Generator,
                             batch_size: int = 4, modes: tuple[str, ...] = MODES,
                             backward: bool = False) -> CheckResult:
    """An example's output is the same in a batch of `batch_size` as alone (the last example:
    it would see every other one through a running mean over the batch) and when the second
    half of its batch is replaced by other examples (the first half would see later ones)."""
    batch = random_batch(task, batch_size, seq_len, g, padded=True)
    half = max(batch_size // 2, 1)
    variants = [alone(batch, batch_size - 1)]
    if batch_size > 1:
        keep = torch.arange(batch_size) < half
        variants.append(others_replaced(batch, keep, g, task.vocab_size))
    return _leak_check("batch independence", model, task, batch, lambda: variants, modes,
                       backward,
                       f"alone == in batch == with other examples ({', '.join(modes)}; "
                       f"batch {batch_size} x {seq_len})",
                       "an example's output changed with the rest of its batch ({at}) by "
                       "{moved:.2e}")


def check_routed_equals_dense(model: Model, task: Task, seq_len: int,
                              g: torch.Generator) -> CheckResult:
    batch = random_batch(task, 3, seq_len, g, padded=True)
    results = {}
    for mode in ("routed", "dense"):
        twin = copy.deepcopy(model)
        for layer in twin.mixing_layers:
            layer.execution = mode
        twin.eval()
        logits, aux, _ = twin(batch)
        loss = task.loss(logits, batch) + aux
        loss.backward()
        # an operator that no token was routed to does not run, so its parameters get no
        # gradient: that is a gradient of zero, as dense execution computes it (weight 0)
        grads = {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for n, p in twin.named_parameters()}
        results[mode] = (logits.detach(), grads)
    (out_r, grad_r), (out_d, grad_d) = results["routed"], results["dense"]
    out_diff = max_diff(out_r, out_d)
    grad_diff = max((max_diff(grad_r[n], grad_d[n]) for n in grad_d), default=0.0)
    passed = out_diff <= ATOL and grad_diff <= ATOL
    return CheckResult("routed == dense", passed,
                       f"max diff outputs {out_diff:.1e}, gradients {grad_diff:.1e}")


def check_finite(model: Model, task: Task, seq_len: int, g: torch.Generator) -> CheckResult:
    batch = random_batch(task, 3, seq_len, g, padded=True)
    twin = copy.deepcopy(model)
    twin.train()
    logits, aux, _ = twin(batch)
    loss = task.loss(logits, batch) + aux
    loss.backward()
    bad = [n for n, p in twin.named_parameters()
           if p.grad is not None and not torch.isfinite(p.grad).all()]
    if not torch.isfinite(logits).all():
        return CheckResult("finite", False, "non-finite outputs")
    if not torch.isfinite(loss):
        return CheckResult("finite", False, f"loss is {loss.item()}")
    if bad:
        return CheckResult("finite", False, f"non-finite gradients in {bad[:3]}")
    return CheckResult("finite", True, f"outputs, loss {loss.item():.3f} and gradients finite")


def check_flop_counts(cfg: RunConfig, task: Task, seq_len: int) -> CheckResult:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    m = cfg.model
    problems, notes, uncountable = [], [], []
    for name in cfg.routing.ops:
        op = OPERATORS.get(name)(m.d_model, m.heads, seq_len, task.causal,
                                 **cfg.routing.op_options.get(name, {})).eval()
        x = torch.randn(1, seq_len, m.d_model)
        counter = FlopCounterMode(display=False)
        # the math backend: torch has no FLOP formula for the fused CPU attention kernel
        with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            op(x, MixContext(causal=task.causal))
        counted = counter.get_total_flops()
        untracked = getattr(op, "untracked_flops", lambda q, k: 0)(seq_len, seq_len)
        declared = op.flops(seq_len, seq_len) - untracked
        scale = max(counted, declared, 1)
        if abs(counted - declared) / scale > FLOP_TOLERANCE:
            problems.append(f"{name}: declared {declared:.3g} (+{untracked:.3g} uncounted) vs "
                            f"counted {counted:.3g}")
        elif counted == declared == 0 and untracked > 0:
            # all its work is FFTs or elementwise ops: 0 == 0 would verify nothing
            uncountable.append(f"{name} not countable by FlopCounterMode ({untracked:.3g} "
                               f"FLOPs it cannot see)")
        else:
            notes.append(f"{name} {declared:.3g}")
    if problems:
        return CheckResult("flop counter", False, "; ".join(problems),
                           tuple(p.split(":")[0] for p in problems))
    detail = "; ".join(([f"agree within 5%: {', '.join(notes)}"] if notes else []) + uncountable)
    return CheckResult("flop counter", True, detail, applicable=bool(notes))


# -- entry points ------------------------------------------------------------------------------


def build_checked_model(cfg: RunConfig, task: Task, seq_len: int, seed: int,
                        device: torch.device | str = "cpu") -> Model:
    """The run's model with its parameters moved away from their initial values (a leak gated
    by a zero- or identity-initialised parameter shows) and its routers calibrated on random
    batches of the task's shape."""
    from harness.engine.calibrate import calibrate_on

    torch.manual_seed(seed)
    model = Model(cfg, task, seq_len).to(device)
    g = torch.Generator().manual_seed(seed + 1)
    perturb_parameters(model, g)
    calibrate_on(model, [random_batch(task, 4, seq_len, g, padded=True) for _ in range(3)],
                 torch.device(device))
    return model.eval()


def run_checks(cfg: RunConfig, task: Task, seq_len: int, *, which: tuple[str, ...] | None = None,
               seed: int = 0, batch_size: int = 4) -> list[CheckResult]:
    """Run the checks on random inputs of the task's shape. `which` limits them by name."""
    model = build_checked_model(cfg, task, seq_len, seed)
    g = torch.Generator().manual_seed(seed + 2)
    plan: list[tuple[str, Callable[[], CheckResult]]] = []
    if task.causal:
        plan.append(("causality",
                     lambda: check_causality(model, task, seq_len, g, max(batch_size // 2, 2))))
    plan += [
        ("batch independence",
         lambda: check_batch_independence(model, task, seq_len, g, batch_size)),
        ("routed == dense", lambda: check_routed_equals_dense(model, task, seq_len, g)),
        ("finite", lambda: check_finite(model, task, seq_len, g)),
        ("flop counter", lambda: check_flop_counts(cfg, task, seq_len)),
    ]
    results = []
    for name, fn in plan:
        if which is not None and name not in which:
            continue
        results.append(fn())
    return results

