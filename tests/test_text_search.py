"""The in-memory orders of held text searches (index/text_search.py) against sorting in Python."""
from hypothesis import given, settings, strategies as st

from learning_svc.index.text_search import _Order

# Few distinct keys, so that tie groups are long, as with unknown durations or one completed_at.
matches = st.lists(st.tuples(st.sampled_from([-1.0, 0.5, 3.0, 7.25]), st.integers(0, 500)),
                   unique_by=lambda m: m[1], max_size=60)


def expected_page(pairs, descending, after, n, below):
    ordered = sorted(pairs, reverse=descending)
    if after is not None:
        ordered = [p for p in ordered if (p < after if descending else p > after)]
    return [job for _, job in ordered if job < below][:n]


@settings(max_examples=300, deadline=None, database=None)
@given(matches, st.data())
def test_pages_follow_key_then_id_from_any_cursor(pairs, data):
    order = _Order()
    for key, job in pairs:  # inserted in any order, as late jobs arrive
        order.insert(key, job)
    assert list(zip(order.keys, order.ids)) == sorted(pairs)
    descending = data.draw(st.booleans())
    made_up = st.tuples(st.sampled_from([-1.0, 3.0, 9.0]), st.integers(0, 500))
    after = data.draw(st.one_of(st.none(), made_up, *([st.sampled_from(pairs)] if pairs else [])))
    n, below = data.draw(st.integers(1, 20)), data.draw(st.integers(0, 501))
    assert order.page(descending, after, n, below) == expected_page(pairs, descending, after, n, below)


def test_walking_every_page_visits_each_match_once():
    pairs = [(float(i % 3), i * 7) for i in range(100)]
    order = _Order()
    for key, job in reversed(pairs):
        order.insert(key, job)
    for descending in (False, True):
        seen, after = [], None
        while page := order.page(descending, after, 9, below=10**9):
            seen += page
            after = (float((page[-1] // 7) % 3), page[-1])
        assert seen == [job for _, job in sorted(pairs, reverse=descending)]


@settings(max_examples=200, deadline=None, database=None)
@given(matches, st.data())
def test_moved_jobs_take_their_new_key(pairs, data):
    """Re-rating moves a job from its tie group to another (or leaves it where it is)."""
    order = _Order()
    for key, job in pairs:
        order.insert(key, job)
    current = dict((job, key) for key, job in pairs)
    for _ in range(data.draw(st.integers(0, 10))):
        if not current:
            break
        job = data.draw(st.sampled_from(sorted(current)))
        current[job] = data.draw(st.sampled_from([-1.0, 0.5, 3.0, 7.25, 6.0]))
        order.move(job, current[job])
        assert list(zip(order.keys, order.ids)) == sorted((key, job) for job, key in current.items())
