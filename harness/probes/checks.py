"""Invariant checks any combination must pass, measured empirically on random inputs.

Declarations can be wrong (a plugin operator may say it is causal and peek at t+1), so every
check perturbs inputs and looks at outputs; it needs no knowledge of the code under test.

- causality (causal tasks): changing tokens after t leaves outputs at <= t unchanged;
- batch independence: an example's output does not depend on the rest of its batch;
- routed == dense: executing only routed tokens equals computing everything and selecting,
  outputs and gradients;
- finite: outputs, loss and every gradient are finite;
- flop counter: each operator's analytic FLOPs agree with torch.utils.flop_counter.

When the model-level causality or batch-independence check fails, the same perturbation is
applied to each operator and to the router alone, so the message names the component at fault.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from harness.core.config import RunConfig
from harness.engine.model import Model
from harness.probes.conformance.common import perturb_parameters
from operators import OPERATORS, MixContext, TokenMixer
from routers import ROUTERS, Router
from tasks import Batch, Task

# float32 on CPU: reordered reductions differ by ~1e-6; anything above this is a real leak
ATOL, RTOL = 1e-4, 1e-4
FLOP_TOLERANCE = 0.05  # analytic vs counted, relative


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    culprits: tuple[str, ...] = ()
    # False: nothing here could be measured (an operator whose FLOPs torch's counter cannot
    # see): shown as "n/a", never as a pass
    applicable: bool = True

    def row(self) -> list[str]:
        return [self.name, self.verdict, self.detail]

    @property
    def verdict(self) -> str:
        return "FAIL" if not self.passed else ("pass" if self.applicable else "n/a")


def _max_diff(a: Tensor, b: Tensor) -> float:
    """Largest |a - b|; equal non-finite values (NaN and NaN, inf and inf) count as equal, a
    non-finite value against anything else as an infinite difference (a NaN must not hide a
    leak: NaN > tolerance is False)."""
    if not a.numel():
        return 0.0
    a, b = a.float(), b.float()
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    diff = torch.where(same, torch.zeros_like(a), (a - b).abs())
    return float(torch.nan_to_num(diff, nan=math.inf).max())


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


class _SameState:
    """Forward passes that start from the same state: buffers (router thresholds move in
    training mode) restored and the RNG re-seeded before each, so two outputs differ only
    because their inputs do."""

    def __init__(self, model: nn.Module, seed: int):
        self.model, self.seed = model, seed
        self.device = next(model.parameters()).device
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def restore(self) -> None:
        with torch.no_grad():
            for n, b in self.model.named_buffers():
                b.copy_(self.buffers[n])

    def __call__(self, batch: Batch) -> Tensor:
        return self.run(lambda: self.model(batch.to(self.device))[0])

    def run(self, compute: Callable[[], Tensor]) -> Tensor:
        self.restore()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            out = compute()
        return out.detach().float().cpu()


def _take(batch: Batch, rows: slice) -> Batch:
    values = (getattr(batch, f.name) for f in fields(batch))
    return Batch(*(v[rows] if v is not None else None for v in values))  # optional fields


def _join(a: Batch, b: Batch) -> Batch:
    pairs = ((getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    return Batch(*(torch.cat([x, y]) if x is not None and y is not None else None
                   for x, y in pairs))  # optional fields (needs_attention) may be absent


def _tolerance(ref: Tensor) -> float:
    """ATOL + RTOL x the largest finite |value| of ref. One pass: boolean indexing (a nonzero
    and a gather) of the guard's (32, 128, 8192) logits took 0.8 s a call."""
    if not ref.numel():
        return ATOL
    magnitude = torch.where(torch.isfinite(ref), ref.abs(), 0.0).max()
    return ATOL + RTOL * float(magnitude)


def _where(mode: str, batch_size: int, seq_len: int) -> str:
    grad = "autograd on" if mode == "train" else "no autograd"
    return f"{mode} mode, {grad}, batch {batch_size} x {seq_len}"


def check_causality(model: Model, task: Task, seq_len: int, g: torch.Generator,
                    batch_size: int = 2, modes: tuple[str, ...] = MODES) -> CheckResult:
    """Changing the tokens after t leaves outputs at <= t unchanged, at several t (the last
    ones included: a leak may start late in the sequence). Each example of a perturbed batch
    is cut at its own t, so one forward tests up to `batch_size` cuts."""
    batch = random_batch(task, batch_size, seq_len, g)
    cuts = {0, seq_len // 2, seq_len - 2,
            int(torch.randint(0, max(seq_len - 1, 1), (1,), generator=g))}
    cuts = sorted(t for t in cuts if 0 <= t < seq_len - 1)
    rounds = [cuts[i:i + batch_size] for i in range(0, len(cuts), batch_size)]
    forward = _SameState(model, int(torch.randint(0, 2**31, (1,), generator=g)))
    worst, at = 0.0, ""
    for mode in modes:
        with probe_mode(model, mode):
            ref = forward(batch)
            tol = _tolerance(ref)
            for ts in rounds:
                cut = [ts[i % len(ts)] for i in range(batch_size)]  # example i: after cut[i]
                tokens = batch.tokens.clone()
                noise = torch.randint(1, task.vocab_size, tokens.shape, generator=g)
                later = torch.arange(seq_len)[None, :] > torch.tensor(cut)[:, None]
                out = forward(Batch(torch.where(later, noise, tokens), batch.padding_mask,
                                    batch.targets))
                for i, t in enumerate(cut):
                    diff = _max_diff(out[i, : t + 1], ref[i, : t + 1])
                    if diff > tol and diff > worst:
                        worst, at = diff, f"t={t}, {_where(mode, batch_size, seq_len)}"
    forward.restore()
    if not at:
        return CheckResult("causality", True,
                           f"outputs <= t unchanged ({', '.join(modes)}; batch {batch_size} x "
                           f"{seq_len})")
    return CheckResult("causality", False,
                       f"changing tokens after {at} changed outputs at <= t by {worst:.2e}")


def check_batch_independence(model: Model, task: Task, seq_len: int, g: torch.Generator,
                             batch_size: int = 4, modes: tuple[str, ...] = MODES) -> CheckResult:
    """An example's output is the same in a batch of `batch_size` as alone (the last example:
    it would see every other one through a running mean over the batch) and when the second
    half of its batch is replaced by other examples (the first half would see later ones)."""
    batch = random_batch(task, batch_size, seq_len, g, padded=True)
    fresh = random_batch(task, batch_size, seq_len, g, padded=True)
    half = max(batch_size // 2, 1)
    forward = _SameState(model, int(torch.randint(0, 2**31, (1,), generator=g)))
    worst, at = 0.0, ""
    for mode in modes:
        with probe_mode(model, mode):
            together = forward(batch)
            tol = _tolerance(together)
            last = slice(batch_size - 1, batch_size)
            variants = [("alone", last, _take(batch, last), slice(0, 1))]
            if batch_size > 1:
                keep, other = slice(0, half), slice(half, None)
                variants.append(("with other examples", keep,
                                 _join(_take(batch, keep), _take(fresh, other)), keep))
            for how, rows, variant, out_rows in variants:
                diff = _max_diff(forward(variant)[out_rows], together[rows])
                if diff > tol and diff > worst:
                    worst, at = diff, f"{how}, {_where(mode, batch_size, seq_len)}"
    forward.restore()
    if not at:
        return CheckResult("batch independence", True,
                           f"alone == in batch == with other examples ({', '.join(modes)}; "
                           f"batch {batch_size} x {seq_len})")
    return CheckResult("batch independence", False,
                       f"an example's output changed with the rest of its batch ({at}) by "
                       f"{worst:.2e}")


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
        grads = {n: p.grad.detach().clone() for n, p in twin.named_parameters()
                 if p.grad is not None}
        results[mode] = (logits.detach(), grads)
    (out_r, grad_r), (out_d, grad_d) = results["routed"], results["dense"]
    out_diff = _max_diff(out_r, out_d)
    grad_diff = max((_max_diff(grad_r[n], grad_d[n]) for n in grad_d if n in grad_r), default=0.0)
    missing = set(grad_d) ^ set(grad_r)
    passed = out_diff <= ATOL and grad_diff <= ATOL and not missing
    detail = f"max diff outputs {out_diff:.1e}, gradients {grad_diff:.1e}"
    if missing:
        detail += f"; gradients missing for {sorted(missing)[:3]}"
    return CheckResult("routed == dense", passed, detail)


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


# -- component-level blame ---------------------------------------------------------------------


def _component_leaks(cfg: RunConfig, task: Task, seq_len: int, g: torch.Generator,
                     what: str, batch_size: int = 4) -> list[str]:
    """Apply the failed perturbation to each operator and the router alone, moved away from
    their initial parameters, in both modes; return the culprits."""
    m, r = cfg.model, cfg.routing
    b = max(batch_size, 2)
    x = torch.randn(b, seq_len, m.d_model, generator=g)
    other = torch.randn(b, seq_len, m.d_model, generator=g)
    ctx = MixContext(causal=task.causal)
    culprits: list[str] = []

    def leaks(module: nn.Module, fn: Callable[[Tensor], Tensor]) -> bool:
        perturb_parameters(module, g)
        same = _SameState(module, 0) if any(True for _ in module.parameters()) else None
        call = (lambda inp: same.run(lambda: fn(inp))) if same else (lambda inp: fn(inp).detach())
        for mode in MODES:
            with probe_mode(module, mode):
                ref = call(x)
                tol = _tolerance(ref)
                if what == "causality":
                    for t in (seq_len // 2, seq_len - 2):
                        y = x.clone()
                        y[:, t + 1:] = other[:, t + 1:]
                        if _max_diff(call(y)[:, : t + 1], ref[:, : t + 1]) > tol:
                            return True
                else:
                    h = b // 2
                    mixed = torch.cat([x[:h], other[h:]])
                    if (_max_diff(call(x[-1:]), ref[-1:]) > tol
                            or _max_diff(call(mixed)[:h], ref[:h]) > tol):
                        return True
        return False

    for name in r.ops:
        op: TokenMixer = OPERATORS.get(name)(m.d_model, m.heads, seq_len, task.causal,
                                             **r.op_options.get(name, {}))
        if leaks(op, lambda inp, op=op: op(inp, ctx)):
            culprits.append(f"operator '{name}'")
    router: Router = ROUTERS.get(r.router)(m.d_model, len(r.ops), causal=task.causal,
                                           attn_fraction=r.attn_fraction, **r.router_options)
    if hasattr(router, "calibrate"):
        router.calibrate(True)
        with torch.no_grad():
            router(torch.randn(b, seq_len, m.d_model, generator=g), ctx)
        router.calibrate(False)
    if leaks(router, lambda inp: router(inp, ctx).weights):
        culprits.append(f"router '{r.router}'")
    return culprits


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
        result = fn()
        if not result.passed and name in ("causality", "batch independence"):
            blame(result, cfg, task, seq_len, g, batch_size)
        results.append(result)
    return results


def blame(result: CheckResult, cfg: RunConfig, task: Task, seq_len: int, g: torch.Generator,
          batch_size: int) -> None:
    """Name the component(s) behind a failed leak check in its detail. A causality failure
    can come from the rest of the batch (each example is cut at its own t), so the other
    perturbation is tried when the first finds no culprit."""
    other = "batch independence" if result.name == "causality" else "causality"
    for what in (result.name, other):
        culprits = _component_leaks(cfg, task, seq_len, g, what, batch_size)
        if culprits:
            result.culprits = tuple(culprits)
            how = "" if what == result.name else f" (it fails {what} alone)"
            result.detail += f"; at fault: {', '.join(culprits)}{how}"
            return
