"""`learning-svc demo`: realistic jobs with real placeholder images, loaded once."""

from PIL import Image

from learning_svc import create_app
from learning_svc.demo import load_demo


def test_demo_loads_jobs_with_images_once(settings):
    assert load_demo(settings, 8) == 8
    assert load_demo(settings, 8) == 0  # a second run serves what is there instead of conflicting
    app = create_app(settings)
    try:
        client = app.test_client()
        jobs = client.get("/api/jobs?limit=50").get_json()["jobs"]
        assert len(jobs) == 8
        with_outputs = [job for job in jobs if job["outputs"]]
        assert with_outputs
        for job in with_outputs:
            for output in job["outputs"]:
                path = settings.output_root / output
                if path.exists():
                    assert Image.open(path).size == (384, 512)
        thumb = client.get(f"/api/jobs/{with_outputs[-1]['job_id']}/outputs/0/thumbnail")
        assert thumb.status_code == 200 and thumb.mimetype in ("image/jpeg", "image/png")
        assert client.get("/api/ratings").get_json()  # some demo jobs come rated
    finally:
        app.extensions["learning_svc"].close()
