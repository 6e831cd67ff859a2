"""What the pages need to know about a run's router and operators beyond their names: which
router is a chance control, which reads what no real router can, which operator is attention,
which mixes no tokens at all (the identity: the no-mixing floor every board carries).

``roles_of`` is the only place in the report that asks; it reads the roles each component
declares (``roles`` in its class, ``ROUTERS.has_role`` / ``OPERATORS.has_role``), statically,
without importing it. A record of a plugin that is not installed here has no roles.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.records import RunRecord
from operators import OPERATORS
from routers import ROUTERS


@dataclass(frozen=True)
class Roles:
    control: bool
    privileged: bool
    unrouted: bool
    method: bool
    learned: bool
    attention: tuple[bool, ...]  # per operator, in --ops order
    no_mixing: tuple[bool, ...] = ()  # per operator: mixes no tokens (the identity)

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

    @property
    def floor(self) -> bool:
        """A single operator that mixes no tokens: the floor every mixer must beat."""
        return self.unrouted and self.no_mixing == (True,)


def roles_of(record: RunRecord) -> Roles:
    """The roles of a record's router and operators."""
    router = record.router

    def has(role: str) -> bool:
        return ROUTERS.has_role(router, role)

    return Roles(control=has("control"), privileged=has("privileged"), unrouted=has("single"),
                 method=has("method"), learned=has("learned"),
                 attention=tuple(OPERATORS.has_role(op, "attention")
                                 for op in record.operators),
                 no_mixing=tuple(OPERATORS.has_role(op, "no-mixing")
                                 for op in record.operators))
