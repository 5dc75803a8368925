"""The in-memory orders of held text searches (index/text_search.py) against sorting in Python."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning_svc.index import text_search
from learning_svc.index.project import outputs_text
from learning_svc.index.text_search import _Order

KEYS = [-1.0, 0.5, 3.0, 6.0, 7.25]  # few distinct keys: long tie groups, as with ratings or unknown durations
matches = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 500)), unique_by=lambda m: m[1], max_size=60)


def made(pairs, merge_at: int = text_search.MERGE_AT) -> _Order:
    """An order as a held search is built: the main part sorted at once."""
    order = _Order(merge_at=merge_at)
    for key, job in sorted(pairs):
        order.keys.append(key)
        order.ids.append(job)
    return order


def expected_page(current: dict[int, float], descending, after, n, below):
    ordered = sorted(((key, job) for job, key in current.items()), reverse=descending)
    if after is not None:
        ordered = [p for p in ordered if (p < after if descending else p > after)]
    return [job for _, job in ordered if job < below][:n]


@pytest.mark.parametrize("merge_at", [2, 7, 4096])
@settings(max_examples=150, deadline=None, database=None)
@given(
    built=matches, later=st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 700)), max_size=40), data=st.data()
)
def test_pages_follow_key_then_id_through_additions_and_rerating(built, later, data, merge_at):
    """Jobs added later (new ids) or re-keyed (re-rated: ids already there) go to the tail,
    which is merged into the main part every `merge_at`; every page from any cursor stays
    the sorted order of the current keys."""
    text_search.MERGE_AT, saved = merge_at, text_search.MERGE_AT
    try:
        order, current = made(built), {job: key for key, job in built}
        for key, job in later:
            if job in current:
                order.rekey(job, key)
            else:
                order.add(key, job)
            current[job] = key
        pairs = sorted((key, job) for job, key in current.items())
        descending = data.draw(st.booleans())
        made_up = st.tuples(st.sampled_from([-2.0, 3.0, 9.0]), st.integers(0, 700))
        after = data.draw(st.one_of(st.none(), made_up, *([st.sampled_from(pairs)] if pairs else [])))
        n, below = data.draw(st.integers(1, 20)), data.draw(st.integers(0, 701))
        assert order.page(descending, after, n, below) == expected_page(current, descending, after, n, below)
        for key in KEYS:  # the held count of unrated jobs (key -1) and the like
            assert order.count_key(key, below) == sum(1 for job, k in current.items() if k == key and job < below)
    finally:
        text_search.MERGE_AT = saved


def test_walking_every_page_visits_each_match_once():
    order = made([(float(i % 3), i * 7) for i in range(100)])
    for i in range(100, 130):  # some in the tail
        order.add(float(i % 3), i * 7)
    order.rekey(0, 2.0)  # moves, not doubled
    current = {i * 7: float(i % 3) for i in range(130)} | {0: 2.0}
    for descending in (False, True):
        seen, after = [], None
        while page := order.page(descending, after, 9, below=10**9):
            seen += page
            after = (current[page[-1]], page[-1])
        assert seen == [job for _, job in sorted(((k, j) for j, k in current.items()), reverse=descending)]


@pytest.mark.parametrize("rekeyed", [False, True])
def test_the_tail_is_merged_when_it_reaches_merge_at(rekeyed):
    """Merged by slices when only jobs were added, by one pass when some were re-keyed."""
    order = made([(1.0, 10), (2.0, 20), (2.0, 25)], merge_at=4)
    order.add(0.5, 30)
    order.add(2.0, 22)
    if rekeyed:
        order.rekey(10, 3.0)
    else:
        order.add(3.0, 35)
    assert len(order.tail) == 3 and order.stale == ({10} if rekeyed else set())
    order.add(9.0, 50)
    assert order.tail == [] and not order.stale
    expected = [(0.5, 30), (1.0, 10), (2.0, 20), (2.0, 22), (2.0, 25), (3.0, 35), (9.0, 50)]
    if rekeyed:
        expected = [(0.5, 30), (2.0, 20), (2.0, 22), (2.0, 25), (3.0, 10), (9.0, 50)]
    assert list(zip(order.keys, order.ids)) == expected
    assert list(order.current()) == list(zip(order.keys, order.ids))


def test_a_jobs_images_are_searched_by_their_folders_last_two_names_once_and_their_file_names():
    batch = [
        "/home/ana/sd/outputs/txt2img-images/2024-05-01/00012-1.png",
        "/home/ana/sd/outputs/txt2img-images/2024-05-01/00013-2.png",
    ]
    assert outputs_text(batch) == "txt2img-images/2024-05-01 00012-1.png 00013-2.png"
    windows = ["C:\\Users\\rob\\StableNew\\output\\Pipeline\\run_7\\up 3f.png"]
    assert outputs_text(windows) == "Pipeline/run_7 up 3f.png"
    assert outputs_text(windows, run_id="run_7") == "Pipeline up 3f.png"  # the run's words are the run's
    assert outputs_text(["a.png", "", "/", "dir//b.png", 5, None]) == "dir a.png b.png"  # odd items skipped
    assert outputs_text(None) == outputs_text([]) == outputs_text("x.png") == ""
