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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.engine.config import RunConfig
from harness.engine.model import Model
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

    def row(self) -> list[str]:
        return [self.name, "pass" if self.passed else "FAIL", self.detail]


def _close(a: Tensor, b: Tensor) -> bool:
    return torch.allclose(a.float(), b.float(), atol=ATOL, rtol=RTOL)


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


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


# -- model-level checks ------------------------------------------------------------------------


def check_causality(model: Model, task: Task, seq_len: int, g: torch.Generator) -> CheckResult:
    batch = random_batch(task, 2, seq_len, g)
    with torch.no_grad():
        ref, _ = model(batch)
        worst, where = 0.0, None
        for t in sorted({0, seq_len // 3, seq_len // 2, seq_len - 2}):
            if t < 0 or t >= seq_len - 1:
                continue
            perturbed = batch.tokens.clone()
            perturbed[:, t + 1 :] = torch.randint(1, task.vocab_size, perturbed[:, t + 1 :].shape,
                                                  generator=g)
            out, _ = model(Batch(perturbed, batch.padding_mask, batch.targets))
            diff = _max_diff(out[:, : t + 1], ref[:, : t + 1])
            if diff > worst:
                worst, where = diff, t
    if worst <= ATOL:
        return CheckResult("causality", True, f"outputs <= t unchanged (max diff {worst:.1e})")
    return CheckResult("causality", False,
                       f"changing tokens after t={where} changed outputs at <= t by {worst:.2e}")


def check_batch_independence(model: Model, task: Task, seq_len: int,
                             g: torch.Generator) -> CheckResult:
    batch = random_batch(task, 4, seq_len, g, padded=True)
    with torch.no_grad():
        together, _ = model(batch)
        worst = 0.0
        for i in range(len(batch)):
            single = Batch(batch.tokens[i : i + 1], batch.padding_mask[i : i + 1],
                           batch.targets[i : i + 1])
            alone, _ = model(single)
            mine = together[i : i + 1]
            if task.causal:  # compare real positions only
                m = batch.padding_mask[i]
                alone, mine = alone[:, m], mine[:, m]
            worst = max(worst, _max_diff(alone, mine))
    if worst <= ATOL:
        return CheckResult("batch independence", True,
                           f"alone == in batch (max diff {worst:.1e})")
    return CheckResult("batch independence", False,
                       f"an example's output changed with the rest of its batch by {worst:.2e}")


def check_routed_equals_dense(model: Model, task: Task, seq_len: int,
                              g: torch.Generator) -> CheckResult:
    batch = random_batch(task, 3, seq_len, g, padded=True)
    results = {}
    for mode in ("routed", "dense"):
        twin = copy.deepcopy(model)
        for layer in twin.mixing_layers:
            layer.execution = mode
        twin.eval()
        logits, aux = twin(batch)
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
    logits, aux = twin(batch)
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
    problems, notes = [], []
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
        else:
            notes.append(f"{name} {declared:.3g}")
    if problems:
        return CheckResult("flop counter", False, "; ".join(problems),
                           tuple(p.split(":")[0] for p in problems))
    return CheckResult("flop counter", True, "agree within 5%: " + ", ".join(notes))


# -- component-level blame ---------------------------------------------------------------------


def _component_leaks(cfg: RunConfig, task: Task, seq_len: int, g: torch.Generator,
                     what: str) -> list[str]:
    """Apply the failed perturbation to each operator and the router alone; return culprits."""
    m, r = cfg.model, cfg.routing
    culprits = []
    x = torch.randn(3, seq_len, m.d_model, generator=g)
    ctx = MixContext(causal=task.causal)

    def leaks(fn: Callable[[Tensor], Tensor]) -> bool:
        with torch.no_grad():
            ref = fn(x)
            if what == "causality":
                t = seq_len // 2
                y = x.clone()
                y[:, t + 1 :] = torch.randn(y[:, t + 1 :].shape, generator=g)
                return not _close(fn(y)[:, : t + 1], ref[:, : t + 1])
            return any(not _close(fn(x[i : i + 1]), ref[i : i + 1]) for i in range(len(x)))

    for name in r.ops:
        op: TokenMixer = OPERATORS.get(name)(m.d_model, m.heads, seq_len, task.causal,
                                             **r.op_options.get(name, {})).eval()
        if leaks(lambda inp, op=op: op(inp, ctx)):
            culprits.append(f"operator '{name}'")
    router: Router = ROUTERS.get(r.router)(m.d_model, len(r.ops), causal=task.causal,
                                           attn_fraction=r.attn_fraction, **r.router_options)
    router.train()
    with torch.no_grad():
        for _ in range(3):
            router(torch.randn(3, seq_len, m.d_model, generator=g), ctx)
    router.eval()
    if leaks(lambda inp: router(inp, ctx).weights):
        culprits.append(f"router '{r.router}'")
    return culprits


# -- entry points ------------------------------------------------------------------------------


def build_checked_model(cfg: RunConfig, task: Task, seq_len: int, seed: int) -> Model:
    torch.manual_seed(seed)
    model = Model(cfg, task, seq_len)
    g = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(random_batch(task, 4, seq_len, g, padded=True))
    return model.eval()


def run_checks(cfg: RunConfig, task: Task, seq_len: int, *, which: tuple[str, ...] | None = None,
               seed: int = 0) -> list[CheckResult]:
    """Run the checks on random inputs of the task's shape. `which` limits them by name."""
    model = build_checked_model(cfg, task, seq_len, seed)
    g = torch.Generator().manual_seed(seed + 2)
    plan: list[tuple[str, Callable[[], CheckResult]]] = []
    if task.causal:
        plan.append(("causality", lambda: check_causality(model, task, seq_len, g)))
    plan += [
        ("batch independence", lambda: check_batch_independence(model, task, seq_len, g)),
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
            culprits = _component_leaks(cfg, task, seq_len, g, name)
            result.culprits = tuple(culprits)
            if culprits:
                result.detail += f"; at fault: {', '.join(culprits)}"
        results.append(result)
    return results
