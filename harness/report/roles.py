"""What the pages need to know about a run's router and operators beyond their names: which
router is a chance control, which reads what no real router can, which operator is attention.

``roles_of`` is the only place in the report that tests router or operator names; every page
asks it. When the registries declare roles, this one function reads them instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.records import RunRecord

_CONTROLS = ("random",)  # routes at random at a matched share: the chance control
_PRIVILEGED = ("oracle",)  # reads the task's ground truth: an upper bound, never a real router
_UNROUTED = ("single",)  # one operator on every token: nothing to route
_METHODS = ("entropy",)  # the method under test (the paper's router): listed first
_LEARNED = ("learned", "meta", "mod")  # learn their decisions in training
_ATTENTION = ("attn", "xformers")  # softmax attention, whatever the kernel


@dataclass(frozen=True)
class Roles:
    control: bool
    privileged: bool
    unrouted: bool
    method: bool
    learned: bool
    attention: tuple[bool, ...]  # per operator, in --ops order

    @property
    def routed(self) -> bool:
        """A router that decides something (not a control, not a single operator)."""
        return len(self.attention) > 1 and not (self.control or self.unrouted)

    @property
    def order(self) -> int:
        """Where the router's rows go in a listing: privileged, method, control, learned,
        then the rest."""
        for rank, role in enumerate((self.privileged, self.method, self.control, self.learned)):
            if role:
                return rank
        return 4


def roles_of(record: RunRecord) -> Roles:
    """The roles of a record's router and operators."""
    router = record.router
    return Roles(control=router in _CONTROLS, privileged=router in _PRIVILEGED,
                 unrouted=router in _UNROUTED, method=router in _METHODS,
                 learned=router in _LEARNED,
                 attention=tuple(op in _ATTENTION for op in record.operators))
