"""Leader election rules of the core: pre-vote, voting, terms, check-quorum."""

from __future__ import annotations

import random

from pygmy.raft.core import RaftConfig, RaftCore
from pygmy.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    HardState,
    RequestVote,
    RequestVoteResponse,
    Role,
)

from .conftest import CONFIG, Cluster, drain, entries, make_core


def time_out(core: RaftCore) -> None:
    for _ in range(core.config.election_ticks * 2):
        core.tick()
        if core.role is not Role.FOLLOWER:
            return
    raise AssertionError("no election timeout")


def test_a_follower_that_times_out_asks_for_pre_votes_without_bumping_its_term() -> None:
    core = make_core(1, hard_state=HardState(term=4))
    time_out(core)
    rd = drain(core)
    assert core.role is Role.PRE_CANDIDATE and core.term == 4
    assert {(m.dst, m.term, m.pre_vote) for m in rd.messages} == {(2, 5, True), (3, 5, True)}


def test_pre_vote_requests_do_not_change_the_receivers_term_or_vote() -> None:
    core = make_core(2, hard_state=HardState(term=4, vote=3))
    core.step(RequestVote(1, 2, 5, last_log_index=0, last_log_term=0, pre_vote=True))
    rd = drain(core)
    assert (core.term, core.vote) == (4, 3)
    assert rd.messages == [RequestVoteResponse(2, 1, 5, granted=True, pre_vote=True)]


def test_election_timeouts_are_randomized_from_the_given_rng_only() -> None:
    def ticks_to_campaign(seed: int) -> int:
        core = RaftCore(1, [1, 2, 3], CONFIG, random.Random(seed))
        for ticks in range(1, 100):
            core.tick()
            if core.role is not Role.FOLLOWER:
                return ticks
        raise AssertionError

    spread = {ticks_to_campaign(seed) for seed in range(20)}
    assert len(spread) > 1 and all(CONFIG.election_ticks <= t < 2 * CONFIG.election_ticks for t in spread)
    assert ticks_to_campaign(7) == ticks_to_campaign(7)


def test_a_candidate_with_a_quorum_of_votes_leads_and_appends_a_noop_of_its_term(three: Cluster) -> None:
    three.elect(1)
    leader = three[1]
    assert leader.term == 1 and leader.status().leader == 1
    noop = three.applied[2][-1]
    assert (noop.kind, noop.term) == (EntryKind.NOOP, 1)


def test_adopt_a_higher_term_even_when_rejecting_a_vote() -> None:
    core = make_core(2, hard_state=HardState(term=3), entries=entries(1, 3))
    stale_log = RequestVote(1, 2, 7, last_log_index=1, last_log_term=1)
    core.step(stale_log)
    rd = drain(core)
    assert core.term == 7 and core.vote is None
    assert rd.messages == [RequestVoteResponse(2, 1, 7, granted=False)]
    assert rd.hard_state == HardState(7, None, 0)


def test_a_vote_grant_goes_out_only_with_the_term_and_vote_persisted_in_the_same_ready() -> None:
    core = make_core(2, hard_state=HardState(term=3))
    core.step(RequestVote(1, 2, 4, last_log_index=0, last_log_term=0))
    rd = core.ready()
    grants = [m for m in rd.messages if isinstance(m, RequestVoteResponse) and m.granted]
    assert grants and rd.hard_state == HardState(term=4, vote=1, commit=0)  # hashicorp/raft #661
    assert rd.must_sync


def test_the_planted_vote_bug_sends_the_grant_while_the_disk_keeps_the_old_term_and_vote() -> None:
    core = make_core(2, hard_state=HardState(term=3), bugs=frozenset({"vote_before_persist"}))
    core.step(RequestVote(1, 2, 4, last_log_index=0, last_log_term=0))
    rd = drain(core)
    assert RequestVoteResponse(2, 1, 4, granted=True) in rd.messages
    assert rd.hard_state is None  # a crash now forgets both the new term and the vote


def test_a_vote_granted_between_ready_and_advance_waits_for_the_next_ready() -> None:
    core = make_core(2, hard_state=HardState(term=3))
    in_flight = core.ready() if core.has_ready() else None
    core.step(RequestVote(1, 2, 4, last_log_index=0, last_log_term=0))
    if in_flight:
        core.advance(in_flight)
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1
    assert any(isinstance(m, RequestVoteResponse) and m.granted for m in rd.messages)


def test_a_node_votes_for_one_candidate_per_term_even_after_a_restart() -> None:
    core = make_core(3)
    core.step(RequestVote(1, 3, 1, last_log_index=0, last_log_term=0))
    persisted = drain(core).hard_state
    assert persisted is not None and persisted.vote == 1
    restarted = make_core(3, hard_state=persisted)
    restarted.step(RequestVote(2, 3, 1, last_log_index=0, last_log_term=0))
    assert drain(restarted).messages == [RequestVoteResponse(3, 2, 1, granted=False)]


def test_a_vote_is_refused_to_a_candidate_whose_log_is_less_up_to_date() -> None:
    core = make_core(2, hard_state=HardState(term=2), entries=entries(1, 2))
    core.step(RequestVote(1, 2, 3, last_log_index=5, last_log_term=1))
    assert drain(core).messages == [RequestVoteResponse(2, 1, 3, granted=False)]


def test_with_check_quorum_a_node_that_heard_from_a_leader_recently_ignores_vote_requests() -> None:
    core = make_core(2, hard_state=HardState(term=1))
    core.step(AppendEntries(1, 2, 1, 0, 0, (), 0))
    drain(core)
    core.step(RequestVote(3, 2, 2, last_log_index=9, last_log_term=1))
    core.step(RequestVote(3, 2, 2, last_log_index=9, last_log_term=1, pre_vote=True))
    assert core.term == 1 and drain(core).messages == []


def test_a_transfer_vote_request_overrides_the_leader_lease() -> None:
    core = make_core(2, hard_state=HardState(term=1))
    core.step(AppendEntries(1, 2, 1, 0, 0, (), 0))
    drain(core)
    core.step(RequestVote(3, 2, 2, last_log_index=9, last_log_term=1, transfer=True))
    assert drain(core).messages == [RequestVoteResponse(2, 3, 2, granted=True)]


def test_a_leader_that_hears_from_no_quorum_within_an_election_timeout_steps_down(three: Cluster) -> None:
    three.elect(1)
    leader = three[1]
    for _ in range(2 * CONFIG.election_ticks):
        leader.tick()
        drain(leader)  # its messages are lost: nobody answers
    assert leader.role is Role.FOLLOWER and leader.term == 1


def test_a_leader_with_a_live_quorum_keeps_leading(three: Cluster) -> None:
    three.elect(1)
    three.cut = lambda m: 3 in (m.src, m.dst)
    three.tick_all(3 * CONFIG.election_ticks)
    assert three[1].role is Role.LEADER


def test_ignore_replies_from_older_terms() -> None:
    core = make_core(1, hard_state=HardState(term=5))
    time_out(core)
    drain(core)  # pre-candidate for term 6
    core.step(RequestVoteResponse(2, 1, 4, granted=True, pre_vote=True))
    core.step(RequestVoteResponse(3, 1, 5, granted=True))
    assert core.role is Role.PRE_CANDIDATE and core.term == 5


def test_ignore_append_replies_from_older_terms(three: Cluster) -> None:
    three.elect(1)
    three[2].step(AppendEntries(3, 2, 9, 0, 0, (), 0))  # some later leader elsewhere: node 2 is now in term 9
    drain(three[2])
    leader = three[1]
    before = leader.status()
    leader.step(AppendEntriesResponse(2, 1, 0, success=True, match_index=50))
    assert leader.status() == before


def test_a_deposed_leader_learns_the_new_term_from_a_rejected_append() -> None:
    follower = make_core(2, hard_state=HardState(term=6))
    follower.step(AppendEntries(1, 2, 5, 0, 0, (), 0))
    reply = drain(follower).messages
    assert reply == [AppendEntriesResponse(2, 1, 6, success=False)]


def test_without_pre_vote_a_timeout_starts_an_election_in_the_next_term() -> None:
    core = make_core(1, config=RaftConfig(pre_vote=False), hard_state=HardState(term=2))
    time_out(core)
    rd = drain(core)
    assert core.role is Role.CANDIDATE and core.term == 3 and core.vote == 1
    assert rd.hard_state == HardState(3, 1, 0)
    assert all(isinstance(m, RequestVote) and not m.pre_vote and m.term == 3 for m in rd.messages)


def test_refusing_stale_candidates_of_ever_higher_terms_does_not_keep_a_better_log_from_campaigning() -> None:
    # Without pre-vote, candidates with outdated logs may campaign again and again. Each bumps this node's term;
    # if each also restarted its election clock, the one node that could win would never stand (seen in sim
    # seed 1258 at 3 nodes). Only a leader's message or a granted vote restarts it (Ongaro's thesis, §3.4).
    core = make_core(2, config=RaftConfig(pre_vote=False), hard_state=HardState(term=2), entries=entries(1, 2))
    term = 2
    for tick in range(core.config.election_ticks * 2):
        if tick % (core.config.election_ticks - 1) == 0:
            term += 1
            core.step(RequestVote(1, 2, term, last_log_index=1, last_log_term=1))
            assert drain(core).messages == [RequestVoteResponse(2, 1, term, granted=False)]
        core.tick()
        if core.role is Role.CANDIDATE:
            return
    raise AssertionError("the node with the better log never campaigned")
