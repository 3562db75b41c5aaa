"""Linearizability checking of client histories against sequential models.

Owns the history types (`Operation`, `CheckResult`), the sequential models the simulator and the service tests
check against (`REGISTER`, `COUNTER`, `stock_model`) and `check`, the decision procedure.

The search is Wing and Gong's with Lowe's improvements: the history becomes a doubly-linked list of call and
return events sorted by time; a depth-first search linearizes any call whose return has not yet been passed,
remembers each configuration (set of linearized operations, model state) it has explored so that none is
explored twice, and backtracks when it reaches the return of an operation it has not linearized. Operations whose
outcome is unknown have no return, so they may take effect at any point after their call, or never.
Histories are split first into independent sub-histories when the model knows how (P-compositionality,
Horn and Kroening 2015), since the search is exponential in concurrency, not in length, and smaller is faster.

Refinements of that search (each sound; the tests compare its verdicts with brute force):
- takes a legal read-only operation (model's `read_only`) at once, without branching on it;
- tries pending operations in order of return time, the likeliest order of effect in a replicated service;
- tries unknown outcomes last, and treats a configuration as dead when a failed one with the same known
  operations and state had a subset of its unknown ones; of identical unknown operations it tries only the
  earliest not yet taken.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "COUNTER",
    "REGISTER",
    "UNKNOWN",
    "CheckResult",
    "Model",
    "Operation",
    "Stock",
    "check",
    "stock_model",
]


class _Unknown:
    """The output of an operation whose outcome was never observed."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Operation:
    """One client request as observed from outside: invoked at `call`, answered `output` at `ret`.

    `ret` is None when the client never learnt the outcome (timeout, crash); the operation may then have taken
    effect at any time after `call`, or not at all, and `output` is ignored.
    """

    client: int
    input: Any
    call: float
    output: Any
    ret: float | None


@dataclass(frozen=True)
class CheckResult:
    """The verdict: True, False, or None when the search gave up at its timeout."""

    ok: bool | None
    explanation: str


class Model(Protocol):
    """A sequential specification; states must be hashable (the search caches them).

    Optional extras the checker uses when present:
    - `partition(history) -> list[history]`: split into sub-histories that touch independent state.
    - `read_only(input, output) -> bool`: True when an operation that gave `output` cannot have changed the state,
      in any state where that output is legal (a read; a refused buy; a failed compare-and-set). The search then
      takes it as soon as it is legal without branching, and drops it when its outcome is unknown (output UNKNOWN)
      since it constrains nothing. Saying False is always safe, only slower.
    - `simplify(history) -> history`: an equivalent history (the same verdict) with operations dropped that
      cannot matter, e.g. lost writes nobody saw; unknown outcomes are what makes the search slow.
    """

    def init(self) -> Any: ...

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]: ...


# --- models ----------------------------------------------------------------------------------------------------


class RegisterModel:
    """A single register: ("write", v) -> None, ("read", None) -> v, ("cas", (old, new)) -> bool; starts None."""

    def init(self) -> Any:
        return None

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        kind, arg = input
        if kind == "write":
            return True, arg
        if kind == "read":
            return output is UNKNOWN or output == state, state
        if kind == "cas":
            old, new = arg
            swapped = state == old
            return output is UNKNOWN or output == swapped, new if swapped else state
        raise ValueError(f"register: unknown operation {input!r}")

    def read_only(self, input: Any, output: Any) -> bool:
        return input[0] == "read" or (input[0] == "cas" and output is False)

    def simplify(self, history: Sequence[Operation]) -> list[Operation]:
        """Drop unknown-outcome writes of a value no read returned and no compare-and-set expects.

        Such a write, if it took effect, was overwritten before anyone looked, so the run without it is as
        legal, unless a failed compare-and-set needed it in place (then nothing is dropped); an unknown-outcome
        compare-and-set it made fail can be dropped with it.
        """
        try:
            seen = {op.output for op in history if op.ret is not None and op.input[0] == "read"}
            expected = {op.input[1][0] for op in history if op.input[0] == "cas"}
        except TypeError:  # unhashable values: keep everything
            return list(history)
        if any(op.input[0] == "cas" and op.ret is not None and op.output is False for op in history):
            return list(history)

        def unobserved(op: Operation) -> bool:
            return op.ret is None and op.input[0] == "write" and op.input[1] not in seen and op.input[1] not in expected

        return [op for op in history if not unobserved(op)]


class CounterModel:
    """A counter: ("add", n) -> None, ("read", None) -> total; starts at 0."""

    def init(self) -> Any:
        return 0

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        kind, arg = input
        if kind == "add":
            return True, state + arg
        if kind == "read":
            return output is UNKNOWN or output == state, state
        raise ValueError(f"counter: unknown operation {input!r}")

    def read_only(self, input: Any, output: Any) -> bool:
        return input[0] == "read"


class Stock(Mapping[int, int]):
    """An immutable, hashable item -> copies mapping; items at zero are left out so equal stock compares equal."""

    __slots__ = ("_counts", "_hash")

    def __init__(self, counts: Mapping[int, int]) -> None:
        self._counts = {item: n for item, n in counts.items() if n != 0}
        self._hash = hash(frozenset(self._counts.items()))

    def __getitem__(self, item: int) -> int:
        return self._counts[item]

    def __iter__(self) -> Iterator[int]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Stock):
            return self._hash == other._hash and self._counts == other._counts
        return isinstance(other, Mapping) and self._counts == {k: v for k, v in other.items() if v != 0}

    def __repr__(self) -> str:
        return f"Stock({self._counts!r})"

    def with_count(self, item: int, n: int) -> Stock:
        return Stock({**self._counts, item: n})


class StockModel:
    """The bookstore's stock: ("buy", item) -> "ok" | "out_of_stock", ("restock", (item, n)) -> None,
    ("lookup", item) -> copies. Items never interact, so histories are checked one item at a time."""

    def __init__(self, initial: Mapping[int, int]) -> None:
        self._initial = Stock(initial)

    def init(self) -> Any:
        return self._initial

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        kind, arg = input
        if kind == "buy":
            copies = state.get(arg, 0)
            if copies > 0:
                return output is UNKNOWN or output == "ok", state.with_count(arg, copies - 1)
            return output is UNKNOWN or output == "out_of_stock", state
        if kind == "restock":
            item, n = arg
            return True, state.with_count(item, state.get(item, 0) + n)
        if kind == "lookup":
            return output is UNKNOWN or output == state.get(arg, 0), state
        raise ValueError(f"stock: unknown operation {input!r}")

    def read_only(self, input: Any, output: Any) -> bool:
        return input[0] == "lookup" or (input[0] == "buy" and output == "out_of_stock")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        by_item: dict[Hashable, list[Operation]] = defaultdict(list)
        for op in history:
            kind, arg = op.input
            by_item[arg[0] if kind == "restock" else arg].append(op)
        return list(by_item.values())


REGISTER: Model = RegisterModel()
COUNTER: Model = CounterModel()


def stock_model(initial: Mapping[int, int]) -> Model:
    """The bookstore model starting from `initial` copies per item (items not named start at 0)."""
    return StockModel(initial)


# --- the search ------------------------------------------------------------------------------------------------


def check(
    history: Sequence[Operation], model: Model, *, timeout: float | None = 10.0, max_steps: int | None = None
) -> CheckResult:
    """Decide whether `history` is linearizable with respect to `model`.

    Gives up after `timeout` seconds, or after `max_steps` steps of the search: a budget in steps gives the
    same verdict on any machine under any load (what a simulation that must replay exactly needs).
    """
    _validate(history)
    deadline = None if timeout is None else time.monotonic() + timeout
    budget = [max_steps if max_steps is not None else -1]  # steps left for all sub-histories; -1: no limit
    partition = getattr(model, "partition", None)
    parts: list[Sequence[Operation]] = list(partition(history)) if partition else [history]
    gave_up = ""
    simplify = getattr(model, "simplify", None)
    for number, part in enumerate(parts, 1):
        result = _search(simplify(part) if simplify else part, model, deadline, budget)
        if result.ok is False:
            where = f"in sub-history {number} of {len(parts)}: " if len(parts) > 1 else ""
            return CheckResult(False, where + result.explanation)
        if result.ok is None and not gave_up:
            gave_up = result.explanation
    if gave_up:
        lost = sum(op.ret is None for op in history)
        limit = f"{timeout} s" if budget[0] != 0 else f"{max_steps} steps"
        summary = f"gave up after {limit}: {len(history)} operations, {lost} of unknown outcome"
        return CheckResult(None, f"{summary}; {gave_up}")
    return CheckResult(True, f"linearizable: {len(history)} operations in {len(parts)} independent sub-histories")


def _validate(history: Sequence[Operation]) -> None:
    for op in history:
        if op.ret is not None and not op.call <= op.ret:
            raise ValueError(f"operation returns before it is called: {op!r}")


class _Events:
    """The history's events sorted by time: a doubly-linked list, with O(1) removal, of the calls and returns of
    the operations whose outcome is known, and apart from it the calls of those whose outcome is unknown.

    Events are integers in time order; `head` is a sentinel before the first. A call sorts before a return at the
    same instant, so operations that merely touch count as concurrent (the lenient reading).
    """

    def __init__(self, ops: Sequence[Operation]) -> None:
        keyed = [(op.call, 0, i) for i, op in enumerate(ops)]
        keyed += [(op.ret, 1, i) for i, op in enumerate(ops) if op.ret is not None]
        keyed.sort()
        size = len(keyed)
        self.head = size
        self.op = [i for _, _, i in keyed]
        self.is_call = [kind == 0 for _, kind, _ in keyed]
        self.call_of = [0] * len(ops)  # each operation's call event
        self.ret_of = [-1] * size  # for the call event of a known outcome, its return event
        self.unknown_calls: list[int] = []  # calls of operations with unknown outcome, in time order
        self.next = [-1] * (size + 1)
        self.prev = [-1] * (size + 1)
        last = self.head
        for event, (_, kind, i) in enumerate(keyed):
            if kind == 0:
                self.call_of[i] = event
                if ops[i].ret is None:
                    self.unknown_calls.append(event)
                    continue
            else:
                self.ret_of[self.call_of[i]] = event
            self.next[last], self.prev[event] = event, last
            last = event

    def _unlink(self, event: int) -> None:
        before, after = self.prev[event], self.next[event]
        self.next[before] = after
        if after != -1:
            self.prev[after] = before

    def _relink(self, event: int) -> None:
        before, after = self.prev[event], self.next[event]
        self.next[before] = event
        if after != -1:
            self.prev[after] = event

    def lift(self, call: int) -> None:
        """Remove a linearized operation's call and return."""
        self._unlink(call)
        self._unlink(self.ret_of[call])

    def unlift(self, call: int) -> None:
        """Undo `lift` (relinking in reverse order restores the list exactly)."""
        self._relink(self.ret_of[call])
        self._relink(call)


class _Failed:
    """Configurations the search has fully explored without success: (known operations linearized, state) ->
    the sets of unknown-outcome operations linearized with them.

    A configuration is dead if a failed one has the same known set and state and a subset of its unknown set:
    whatever completes it would complete that one too, by never applying the extra unknown operations.
    """

    def __init__(self) -> None:
        self._unknown_sets: dict[tuple[int, Any], list[int]] = {}

    def add(self, known: int, unknown: int, state: Any) -> None:
        self._unknown_sets.setdefault((known, state), []).append(unknown)

    def covers(self, known: int, unknown: int, state: Any) -> bool:
        subsets = self._unknown_sets.get((known, state))
        return subsets is not None and any(failed & unknown == failed for failed in subsets)


@dataclass
class _Stuck:
    """The deepest point where the search failed: how many operations it had placed, the last few, the state,
    and the operation whose return it reached without being able to place it."""

    depth: int = -1
    recent: tuple[int, ...] = ()
    state: Any = None
    blocked: int | None = None


_RECENT = 8  # how many operations of the longest prefix the explanation names


def _search(history: Sequence[Operation], model: Model, deadline: float | None, budget: list[int]) -> CheckResult:
    """Depth-first search for a linearization of one (sub-)history.

    One function with local variables, not a class, because this loop is the checker's whole running time.
    From each configuration it tries, in order: the pending calls of known outcome (those in the list before the
    first return not yet passed), read-only ones first and then by `_likely_order`; then the pending calls of
    unknown outcome (trying those last keeps the sets of them small, so `_Failed` prunes more). When all fail,
    the configuration is dead and the search backtracks.
    """
    read_only = getattr(model, "read_only", None)
    if read_only is None:
        ops, forced_op = list(history), [False] * len(history)
    else:
        # An unobserved read leaves the state alone whether or not it happened: it could only cost time.
        ops = [op for op in history if op.ret is not None or not read_only(op.input, UNKNOWN)]
        forced_op = [op.ret is not None and read_only(op.input, op.output) for op in ops]
    remaining = sum(op.ret is not None for op in ops)  # known-outcome operations not yet linearized
    if remaining == 0:
        return CheckResult(True, "nothing to linearize")
    events = _Events(ops)
    nxt, op_of, is_call, head, unknown_calls = events.next, events.op, events.is_call, events.head, events.unknown_calls
    order = [(not forced, _likely_order(op)) for op, forced in zip(ops, forced_op)]
    twin = _earlier_twins(ops, events)
    step = model.step
    state = model.init()
    known = unknown = 0  # bitsets of the linearized operations, by index in `ops`
    failed = _Failed()
    # Each frame: the operation taken, the state before it, whether it was forced, and the cursor to resume from.
    stack: list[tuple[int, Any, bool, list[int], int, int, int]] = []
    stuck = _Stuck()
    # The cursor over this configuration's choices: known candidates[k:], then unknown calls[nth:] before boundary.
    candidates, boundary = _pending(nxt, is_call, op_of, head, order)
    k = nth = 0
    steps = 0
    while True:
        steps += 1
        if budget[0] > 0:
            budget[0] -= 1
        if budget[0] == 0 or (deadline is not None and steps & 1023 == 0 and time.monotonic() > deadline):
            # Where it was stuck deepest is the likeliest place of a violation, if there is one.
            return CheckResult(None, _explain(ops, stuck, "not decided") if stuck.depth >= 0 else "not decided")
        if k < len(candidates):
            i = candidates[k]
            k += 1
            op = ops[i]
            legal, after = step(state, op.input, op.output)
            if not legal:
                continue
            # A legal read-only step can go first in any linearization from here (it is legal now, changes
            # nothing, and nothing pending must precede it), so taking it now loses nothing: it is not a choice.
            forced = forced_op[i]
            if failed.covers(known | (1 << i), unknown, after):
                if forced:
                    k = len(candidates)  # forced into a dead configuration: this one is equivalent, so dead too
                    nth = len(unknown_calls)
                continue
            stack.append((i, state, forced, candidates, k, boundary, nth))
            known |= 1 << i
            state = after
            events.lift(events.call_of[i])
            remaining -= 1
            if remaining == 0:
                return CheckResult(True, "linearizable")
            candidates, boundary = _pending(nxt, is_call, op_of, head, order)
            k = nth = 0
            continue
        if nth < len(unknown_calls) and unknown_calls[nth] < boundary:
            i = op_of[unknown_calls[nth]]
            nth += 1
            if unknown >> i & 1 or (twin[i] >= 0 and not unknown >> twin[i] & 1):
                continue
            legal, after = step(state, ops[i].input, UNKNOWN)
            if legal and not failed.covers(known, unknown | (1 << i), after):
                stack.append((i, state, False, candidates, k, boundary, nth))
                unknown |= 1 << i
                state = after
                candidates, boundary = _pending(nxt, is_call, op_of, head, order)
                k = nth = 0
            continue
        # Every choice failed: this configuration is dead. Undo back to the latest real choice and resume there.
        if len(stack) > stuck.depth:
            stuck = _Stuck(len(stack), tuple(frame[0] for frame in stack[-_RECENT:]), state, op_of[boundary])
        while True:
            if not stack:
                return CheckResult(False, _explain(ops, stuck))
            failed.add(known, unknown, state)
            i, state, forced, candidates, k, boundary, nth = stack.pop()
            if ops[i].ret is None:
                unknown ^= 1 << i
            else:
                known ^= 1 << i
                events.unlift(events.call_of[i])
                remaining += 1
            if not forced:
                break


def _earlier_twins(ops: Sequence[Operation], events: _Events) -> list[int]:
    """For each unknown-outcome operation, the one called just before it with the same input, or -1.

    Twins are interchangeable except that the earlier one may take effect anywhere the later one may, so the
    search only ever tries the earliest twin not yet linearized: with k twins that is k + 1 ways, not 2 ** k.
    """
    twin = [-1] * len(ops)
    latest: dict[Any, int] = {}
    for event in events.unknown_calls:
        i = events.op[event]
        try:
            twin[i] = latest.get(ops[i].input, -1)
            latest[ops[i].input] = i
        except TypeError:  # an unhashable input simply has no twins
            pass
    return twin


def _likely_order(op: Operation) -> float:
    """Which pending operation to try first: the one that most likely took effect first. A replicated service
    applies a command and then answers, so an operation takes effect nearer its return than its call."""
    return op.ret if op.ret is not None else op.call


def _pending(nxt: list[int], is_call: list[bool], op_of: list[int], head: int, order: list[Any]) -> tuple[list[int], int]:
    """The known-outcome operations that may go next, best first, and the first return not yet passed."""
    pending = []
    event = nxt[head]
    while is_call[event]:  # the list ends with a return while any known operation is unplaced
        pending.append(op_of[event])
        event = nxt[event]
    pending.sort(key=order.__getitem__)
    return pending, event


def _describe(op: Operation) -> str:
    outcome = "outcome unknown" if op.ret is None else f"-> {op.output!r} at {op.ret}"
    return f"client {op.client}: {op.input!r} at {op.call} {outcome}"


def _explain(ops: Sequence[Operation], stuck: _Stuck, verdict: str = "not linearizable") -> str:
    lines = [f"{verdict}: the longest linearizable prefix found has {stuck.depth} of {len(ops)} operations"]
    if stuck.recent:
        lines.append(f"  ending with (last {len(stuck.recent)}, in linearization order):")
        lines.extend(f"    {_describe(ops[i])}" for i in stuck.recent)
    lines.append(f"  model state after it: {stuck.state!r}")
    if stuck.blocked is not None:
        lines.append(f"  could not place before its return: {_describe(ops[stuck.blocked])}")
    return "\n".join(lines)
