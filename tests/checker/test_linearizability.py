"""The linearizability checker's specification: hand-made histories that are and are not linearizable for each
model, and generated histories from a real sequential execution with random concurrency."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pygmy.checker import COUNTER, REGISTER, UNKNOWN, Model, Operation, Stock, check, stock_model


def op(client: int, input: Any, call: float, ret: float | None, output: Any = None) -> Operation:
    return Operation(client=client, input=input, call=call, output=output, ret=ret)


def write(client: int, value: Any, call: float, ret: float | None) -> Operation:
    return op(client, ("write", value), call, ret)


def read(client: int, value: Any, call: float, ret: float | None) -> Operation:
    return op(client, ("read", None), call, ret, value)


def linearizable(history: Sequence[Operation], model: Model) -> bool | None:
    return check(history, model, timeout=5.0).ok


# --- register --------------------------------------------------------------------------------------------------


def test_sequential_register_history_is_linearizable() -> None:
    history = [read(0, None, 0, 1), write(0, 1, 2, 3), read(1, 1, 4, 5), write(1, 2, 6, 7), read(0, 2, 8, 9)]
    assert linearizable(history, REGISTER) is True


@pytest.mark.parametrize("seen", [1, 2])
def test_reads_overlapping_two_writes_may_see_either(seen: int) -> None:
    history = [write(0, 1, 0, 10), write(1, 2, 1, 11), read(2, seen, 2, 12)]
    assert linearizable(history, REGISTER) is True


def test_two_readers_may_not_see_concurrent_writes_in_opposite_orders_after_both_finish() -> None:
    history = [
        write(0, 1, 0, 5),
        write(1, 2, 0, 5),
        read(2, 1, 6, 7),
        read(3, 2, 8, 9),
    ]
    assert linearizable(history, REGISTER) is False


def test_read_overlapping_a_write_may_see_old_or_new_value() -> None:
    assert linearizable([write(0, 1, 0, 1), write(0, 2, 2, 6), read(1, 1, 3, 4)], REGISTER) is True
    assert linearizable([write(0, 1, 0, 1), write(0, 2, 2, 6), read(1, 2, 3, 4)], REGISTER) is True


def test_stale_read_after_completed_write_is_not_linearizable() -> None:
    history = [write(0, 1, 0, 1), write(0, 2, 2, 3), read(1, 1, 4, 5)]
    assert linearizable(history, REGISTER) is False


def test_new_value_then_old_value_on_later_read_is_not_linearizable() -> None:
    # A read that saw the new value pins the write; a later read may not go back in time.
    history = [write(0, 1, 0, 1), write(0, 2, 2, 10), read(1, 2, 3, 4), read(2, 1, 5, 6)]
    assert linearizable(history, REGISTER) is False


def test_read_of_a_value_before_its_write_was_invoked_is_not_linearizable() -> None:
    history = [read(1, 7, 0, 1), write(0, 7, 2, 3)]
    assert linearizable(history, REGISTER) is False


def test_read_and_write_that_only_touch_in_time_count_as_concurrent() -> None:
    assert linearizable([read(1, 7, 0, 1), write(0, 7, 1, 2)], REGISTER) is True


def test_unknown_outcome_write_observed_later_is_linearizable() -> None:
    history = [write(0, 1, 0, 1), write(1, 2, 2, None), read(2, 1, 3, 4), read(2, 2, 50, 51)]
    assert linearizable(history, REGISTER) is True


def test_unknown_outcome_write_never_observed_is_linearizable() -> None:
    history = [write(0, 1, 0, 1), write(1, 2, 2, None), read(2, 1, 3, 4), read(2, 1, 50, 51)]
    assert linearizable(history, REGISTER) is True


def test_unknown_outcome_write_cannot_take_effect_before_it_was_invoked() -> None:
    history = [read(2, 2, 0, 1), write(1, 2, 2, None)]
    assert linearizable(history, REGISTER) is False


def test_unknown_outcome_write_takes_effect_at_most_once() -> None:
    history = [write(1, 2, 0, None), read(0, 2, 1, 2), write(0, 3, 3, 4), read(0, 2, 5, 6)]
    assert linearizable(history, REGISTER) is False


def test_a_failed_compare_and_set_can_be_the_only_sign_that_a_lost_write_took_effect() -> None:
    history = [write(0, 1, 0, 1), write(1, 2, 2, None), op(0, ("cas", (1, 3)), 3, 4, False), write(0, 5, 5, 6)]
    assert linearizable(history + [read(0, 5, 7, 8)], REGISTER) is True
    assert linearizable(history + [read(0, 3, 7, 8)], REGISTER) is False


def test_many_lost_writes_nobody_saw_do_not_slow_down_finding_a_stale_read() -> None:
    lost = [write(c, 100 + c, c, None) for c in range(40)]
    history = lost + [write(50, 1, 0, 1), write(50, 2, 50, 51), read(51, 1, 52, 53)]
    assert check(history, REGISTER, timeout=5.0).ok is False


def test_compare_and_set_succeeds_only_on_the_expected_value() -> None:
    history = [
        write(0, 1, 0, 1),
        op(0, ("cas", (1, 2)), 2, 3, True),
        op(1, ("cas", (1, 3)), 4, 5, False),
        read(1, 2, 6, 7),
    ]
    assert linearizable(history, REGISTER) is True


def test_two_concurrent_compare_and_sets_from_the_same_value_cannot_both_succeed() -> None:
    history = [write(0, 1, 0, 1), op(0, ("cas", (1, 2)), 2, 5, True), op(1, ("cas", (1, 3)), 2, 5, True)]
    assert linearizable(history, REGISTER) is False


# --- counter ---------------------------------------------------------------------------------------------------


def add(client: int, n: int, call: float, ret: float | None) -> Operation:
    return op(client, ("add", n), call, ret)


def test_sequential_counter_history_is_linearizable() -> None:
    history = [add(0, 1, 0, 1), add(1, 2, 2, 3), read(0, 3, 4, 5)]
    assert linearizable(history, COUNTER) is True


def test_concurrent_adds_may_be_seen_partly_by_an_overlapping_read() -> None:
    history = [add(0, 1, 0, 10), add(1, 2, 0, 10), read(2, 2, 1, 9), read(2, 3, 11, 12)]
    assert linearizable(history, COUNTER) is True


def test_lost_update_on_the_counter_is_not_linearizable() -> None:
    # Two completed increments but the total shows only one: one update was lost.
    history = [add(0, 1, 0, 3), add(1, 1, 1, 4), read(2, 1, 5, 6)]
    assert linearizable(history, COUNTER) is False


def test_unknown_outcome_add_may_count_or_not() -> None:
    assert linearizable([add(0, 5, 0, None), read(1, 0, 1, 2), read(1, 5, 3, 4)], COUNTER) is True
    assert linearizable([add(0, 5, 0, None), read(1, 0, 1, 2), read(1, 0, 3, 4)], COUNTER) is True
    assert linearizable([add(0, 5, 0, None), read(1, 5, 1, 2), read(1, 0, 3, 4)], COUNTER) is False


# --- bookstore stock -------------------------------------------------------------------------------------------


def buy(client: int, item: int, call: float, ret: float | None, output: str | None = "ok") -> Operation:
    return op(client, ("buy", item), call, ret, output)


def lookup(client: int, item: int, copies: int, call: float, ret: float | None) -> Operation:
    return op(client, ("lookup", item), call, ret, copies)


def test_sequential_buys_until_out_of_stock_are_linearizable() -> None:
    history = [buy(0, 1, 0, 1), buy(1, 1, 2, 3), buy(0, 1, 4, 5, "out_of_stock"), lookup(1, 1, 0, 6, 7)]
    assert linearizable(history, stock_model({1: 2})) is True


def test_two_buys_of_the_last_copy_both_ok_is_an_oversell() -> None:
    history = [buy(0, 1, 0, 2), buy(1, 1, 1, 3)]
    result = check(history, stock_model({1: 1}))
    assert result.ok is False
    assert "could not place" in result.explanation


def test_one_of_two_concurrent_buys_of_the_last_copy_may_win() -> None:
    history = [buy(0, 1, 0, 2, "out_of_stock"), buy(1, 1, 1, 3, "ok")]
    assert linearizable(history, stock_model({1: 1})) is True


def test_out_of_stock_while_copies_remain_and_no_buy_is_concurrent_is_not_linearizable() -> None:
    history = [buy(0, 1, 0, 1), buy(1, 1, 2, 3, "out_of_stock"), lookup(0, 1, 1, 4, 5)]
    assert linearizable(history, stock_model({1: 2})) is False


def test_out_of_stock_may_overlap_the_buy_that_took_the_last_copy() -> None:
    history = [buy(0, 1, 0, 10), buy(1, 1, 2, 3, "out_of_stock")]
    assert linearizable(history, stock_model({1: 1})) is True


def test_restock_makes_a_later_buy_succeed() -> None:
    history = [buy(0, 1, 0, 1, "out_of_stock"), op(1, ("restock", (1, 3)), 2, 3), buy(0, 1, 4, 5), lookup(0, 1, 2, 6, 7)]
    assert linearizable(history, stock_model({})) is True


def test_items_are_independent_and_an_oversell_of_one_is_named() -> None:
    history = [buy(0, 1, 0, 1), buy(1, 2, 0, 1), buy(2, 2, 0, 1), lookup(0, 1, 0, 2, 3)]
    result = check(history, stock_model({1: 1, 2: 1}))
    assert result.ok is False
    assert "('buy', 2)" in result.explanation


def test_unknown_outcome_buy_may_or_may_not_have_taken_the_copy() -> None:
    model = stock_model({1: 1})
    assert linearizable([buy(0, 1, 0, None), lookup(1, 1, 0, 5, 6)], model) is True
    assert linearizable([buy(0, 1, 0, None), lookup(1, 1, 1, 5, 6)], model) is True
    assert linearizable([buy(0, 1, 0, None), buy(1, 1, 1, 2), lookup(1, 1, 0, 5, 6)], model) is True


def test_stock_state_is_a_hashable_mapping_that_ignores_zero_counts() -> None:
    assert Stock({1: 0, 2: 3}) == Stock({2: 3})
    assert hash(Stock({1: 0, 2: 3})) == hash(Stock({2: 3}))
    assert Stock({2: 3})[2] == 3 and Stock({2: 3}).get(1, 0) == 0


# --- the checker itself ----------------------------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    assert linearizable([], REGISTER) is True


def test_operation_returning_before_its_call_is_rejected() -> None:
    with pytest.raises(ValueError):
        check([write(0, 1, 5, 4)], REGISTER)


def test_models_accept_any_output_for_an_unknown_outcome() -> None:
    assert REGISTER.step(3, ("read", None), UNKNOWN) == (True, 3)
    assert COUNTER.step(3, ("add", 2), UNKNOWN) == (True, 5)


def test_explanation_names_the_longest_prefix_and_the_operation_that_could_not_be_placed() -> None:
    history = [write(0, 1, 0, 1), write(0, 2, 2, 3), read(1, 1, 4, 5)]
    explanation = check(history, REGISTER).explanation
    assert "2 of 3 operations" in explanation
    assert "client 1: ('read', None) at 4 -> 1 at 5" in explanation


def test_gives_up_with_none_at_its_timeout_pointing_at_where_it_was_stuck() -> None:
    # Many concurrent unknown-outcome adds and an impossible read: the search must explore every subset.
    history = [add(c, 1 << c, 0, None) for c in range(40)] + [read(99, -1, 1, 2)]
    start = time.monotonic()
    result = check(history, COUNTER, timeout=0.2)
    assert time.monotonic() - start < 2.0
    assert result.ok is None
    assert "could not place before its return: client 99: ('read', None) at 1 -> -1 at 2" in result.explanation


# --- generated histories ---------------------------------------------------------------------------------------


def run_concurrently(model: Model, requests: list[tuple[int, Any, float, float, float, bool]]) -> list[Operation]:
    """Execute `requests` (client, input, pause, duration, effect point in [0, 1], outcome lost) against the
    sequential `model`: each client issues its requests one after another, each takes effect at its effect
    point inside its interval, and outputs are what the model gives in effect order."""
    clock: dict[int, float] = {}
    timed = []
    for client, input, pause, duration, effect, lost in requests:
        call = clock.get(client, 0.0) + pause
        ret = call + duration
        clock[client] = ret
        timed.append((call + effect * duration, client, input, call, ret, lost))
    state = model.init()
    history = []
    for _, client, input, call, ret, lost in sorted(timed, key=lambda t: t[0]):
        output = _output(state, input)
        _, state = model.step(state, input, output)
        history.append(Operation(client, input, call, None if lost else output, None if lost else ret))
    return history


def _output(state: Any, input: Any) -> Any:
    """The output the sequential models here give for `input` in `state`."""
    kind, arg = input
    if kind == "read":
        return state
    if kind == "cas":
        return state == arg[0]
    if kind == "lookup":
        return state.get(arg, 0)
    if kind == "buy":
        return "ok" if state.get(arg, 0) > 0 else "out_of_stock"
    return None


def requests(inputs: st.SearchStrategy[Any]) -> st.SearchStrategy[list[tuple[int, Any, float, float, float, bool]]]:
    request = st.tuples(
        st.integers(0, 4),
        inputs,
        st.floats(0, 3),
        st.floats(0.01, 10),
        st.floats(0, 1),
        st.integers(0, 9).map(lambda n: n == 0),  # one request in ten loses its outcome
    )
    return st.lists(request, min_size=1, max_size=30)


REGISTER_INPUTS = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 3)),
    st.tuples(st.just("read"), st.none()),
    st.tuples(st.just("cas"), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)
COUNTER_INPUTS = st.one_of(st.tuples(st.just("add"), st.integers(1, 3)), st.tuples(st.just("read"), st.none()))
STOCK_INPUTS = st.one_of(
    st.tuples(st.just("buy"), st.integers(1, 2)),
    st.tuples(st.just("restock"), st.tuples(st.integers(1, 2), st.integers(1, 2))),
    st.tuples(st.just("lookup"), st.integers(1, 2)),
)
MODELS = [
    ("register", REGISTER, REGISTER_INPUTS, "read", "never written"),
    ("counter", COUNTER, COUNTER_INPUTS, "read", -1),
    ("stock", stock_model({1: 2, 2: 1}), STOCK_INPUTS, "lookup", -1),
]


@pytest.mark.parametrize(("name", "model", "inputs", "read_kind", "impossible"), MODELS, ids=[m[0] for m in MODELS])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_histories_of_a_real_sequential_execution_are_linearizable(
    name: str, model: Model, inputs: st.SearchStrategy[Any], read_kind: str, impossible: Any, data: st.DataObject
) -> None:
    history = run_concurrently(model, data.draw(requests(inputs)))
    result = check(history, model, timeout=5.0)
    assert result.ok is True, result.explanation


@pytest.mark.parametrize(("name", "model", "inputs", "read_kind", "impossible"), MODELS, ids=[m[0] for m in MODELS])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_one_read_corrupted_to_an_impossible_value_is_caught(
    name: str, model: Model, inputs: st.SearchStrategy[Any], read_kind: str, impossible: Any, data: st.DataObject
) -> None:
    history = run_concurrently(model, data.draw(requests(inputs)))
    reads = [i for i, o in enumerate(history) if o.input[0] == read_kind and o.ret is not None]
    if not reads:
        history.append(Operation(9, (read_kind, 1 if read_kind == "lookup" else None), 0.0, impossible, 1.0))
    else:
        i = data.draw(st.sampled_from(reads))
        o = history[i]
        history[i] = Operation(o.client, o.input, o.call, impossible, o.ret)
    result = check(history, model, timeout=5.0)
    assert result.ok is False


def linearizable_by_brute_force(history: Sequence[Operation], model: Model) -> bool:
    """The definition, run literally: some order of the known operations and some subset of the unknown ones
    respects real time and is a legal run of the model."""
    known = [o for o in history if o.ret is not None]
    unknown = [o for o in history if o.ret is None]
    for size in range(len(unknown) + 1):
        for taken in itertools.combinations(unknown, size):
            for order in itertools.permutations(known + list(taken)):
                if _respects_real_time(order) and _legal_run(order, model):
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    return all(b.ret is None or b.ret >= a.call for n, a in enumerate(order) for b in order[n + 1 :])


def _legal_run(order: Sequence[Operation], model: Model) -> bool:
    state = model.init()
    for o in order:
        legal, state = model.step(state, o.input, UNKNOWN if o.ret is None else o.output)
        if not legal:
            return False
    return True


ANY_OUTPUT = st.sampled_from([None, 0, 1, 2, True, False, "ok", "out_of_stock"])
SMALL_MODELS = [("register", REGISTER, REGISTER_INPUTS), ("counter", COUNTER, COUNTER_INPUTS), ("stock", stock_model({1: 1}), STOCK_INPUTS)]


@pytest.mark.parametrize(("name", "model", "inputs"), SMALL_MODELS, ids=[m[0] for m in SMALL_MODELS])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_verdict_agrees_with_brute_force_on_small_arbitrary_histories(
    name: str, model: Model, inputs: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    # Arbitrary outputs and overlaps, so about half of these are not linearizable; a third lose their outcome.
    operation = st.builds(
        lambda client, input, call, length, output, lost: Operation(
            client, input, call, output, None if lost else call + length
        ),
        st.integers(0, 2),
        inputs,
        st.integers(0, 8),
        st.integers(0, 4),
        ANY_OUTPUT,
        st.integers(0, 2).map(lambda n: n == 0),
    )
    history = data.draw(st.lists(operation, max_size=6))
    assert check(history, model).ok is linearizable_by_brute_force(history, model)


# --- scale -----------------------------------------------------------------------------------------------------


def simulated_register_run(n_ops: int, clients: int, seed: int) -> list[Operation]:
    """A register history shaped like a simulator run: `clients` clients, overlapping requests, some lost."""
    rng = random.Random(seed)
    reqs = []
    for k in range(n_ops):
        input = ("write", rng.randrange(5)) if rng.random() < 0.5 else ("read", None)
        reqs.append((rng.randrange(clients), input, rng.uniform(0, 1), rng.uniform(0.1, 3), rng.random(), k % 50 == 0))
    return run_concurrently(REGISTER, reqs)


def test_a_simulator_sized_history_is_checked_quickly() -> None:
    history = simulated_register_run(5000, 10, seed=1)
    start = time.monotonic()
    result = check(history, REGISTER, timeout=30.0)
    elapsed = time.monotonic() - start
    assert result.ok is True, result.explanation
    assert elapsed < 10.0  # about 0.1 s on an idle core; the bound only catches an exponential regression


def test_a_violation_at_the_end_of_a_long_history_is_found_not_given_up_on() -> None:
    # The hard case: proving there is no linearization means exploring every configuration before the violation.
    history = simulated_register_run(600, 10, seed=2)
    last_read = max(i for i, o in enumerate(history) if o.input[0] == "read" and o.ret is not None)
    o = history[last_read]
    history[last_read] = Operation(o.client, o.input, o.call, "never written", o.ret)
    result = check(history, REGISTER, timeout=30.0)
    assert result.ok is False
    assert "could not place" in result.explanation
