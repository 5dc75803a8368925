"""End to end over the real waitress server: post the samples, rate, restart, reindex."""

from conftest import sample_records


def test_post_samples_rate_and_list(live_server):
    records = sample_records()
    for record in records:
        response = live_server.post_job(record)
        assert response.status_code == 201, response.text
        assert response.headers["Location"].startswith("/api/jobs/")
    listing = live_server.http.get(live_server.url + "/api/jobs?limit=500").json()
    assert len(listing["jobs"]) == len(records)
    assert listing["next_cursor"] is None
    job_id = records[0]["job_id"]
    assert live_server.rate(job_id, 4).json()["rating"] == 4
    assert live_server.http.get(live_server.url + "/api/ratings").json() == {job_id: 4}
