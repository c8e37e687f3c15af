"""The sample stream: sharded by rank, complete per epoch, resumable by step."""

from __future__ import annotations

import itertools

from liss.data.sampler import StreamSampler


def take(sampler: StreamSampler, n: int) -> list:
    return list(itertools.islice(iter(sampler), n))


def test_ranks_are_disjoint_and_complete_over_an_epoch() -> None:
    n, world, local = 12, 2, 3
    seen = []
    for rank in range(world):
        s = StreamSampler(n, 5, seed=0, local_batch=local, rank=rank, world_size=world)
        seen.append({r.position for r in take(s, n // world)})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(n))


def test_every_A_image_once_per_epoch() -> None:
    s = StreamSampler(7, 3, seed=3, local_batch=1)
    refs = take(s, 14)
    assert sorted(r.index_A for r in refs[:7]) == list(range(7))
    assert sorted(r.index_A for r in refs[7:]) == list(range(7))
    assert [r.index_A for r in refs[:7]] != [r.index_A for r in refs[7:]]  # reshuffled
    assert all(0 <= r.index_B < 3 for r in refs)


def test_two_ranks_of_one_equal_one_rank_of_two() -> None:
    single = take(StreamSampler(9, 9, seed=1, local_batch=2), 8)
    rank0 = take(StreamSampler(9, 9, seed=1, local_batch=1, rank=0, world_size=2), 4)
    rank1 = take(StreamSampler(9, 9, seed=1, local_batch=1, rank=1, world_size=2), 4)
    interleaved = [r for pair in zip(rank0, rank1, strict=True) for r in pair]
    assert interleaved == single


def test_resuming_at_a_step_continues_the_same_stream() -> None:
    full = take(StreamSampler(5, 8, seed=2, local_batch=2), 20)
    resumed = take(StreamSampler(5, 8, seed=2, local_batch=2, start_step=4), 12)
    assert resumed == full[8:]


def test_seed_changes_the_stream() -> None:
    a = take(StreamSampler(20, 20, seed=0, local_batch=1), 20)
    b = take(StreamSampler(20, 20, seed=1, local_batch=1), 20)
    assert [r.index_A for r in a] != [r.index_A for r in b]
    assert [r.key_A for r in a] != [r.key_A for r in b]
