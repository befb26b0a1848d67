"""The dashboard's files are served by the API's app; the API does not depend on them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from central.app import create_app
from central.tests.conftest import make_settings


@pytest.fixture
def app_with(migrated):
    apps = []

    def build(dist):
        app = create_app(make_settings(web_dist=str(dist)))
        apps.append(app)
        return TestClient(app)
    yield build
    for app in apps:
        app.state.engine.dispose()


def test_built_dashboard_is_served(app_with, tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "assets" / "big-abc123.js").write_text("console.log('a fairly repetitive bundle');\n" * 500)
    client = app_with(tmp_path)
    for path in ("/", "/device?device_id=m1", "/quality", "/raw?seq=1"):
        r = client.get(path)
        assert r.status_code == 200 and "<div id=root>" in r.text, path
        assert r.headers["cache-control"] == "no-cache"
    asset = client.get("/assets/index-abc123.js")
    assert asset.status_code == 200 and asset.text == "console.log(1)"
    assert "immutable" in asset.headers["cache-control"]
    assert client.get("/assets/missing.js").status_code == 404
    big = client.get("/assets/big-abc123.js", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip" and big.text.count("repetitive") == 500
    assert int(big.headers["content-length"]) < 2000 and "immutable" in big.headers["cache-control"]
    # API routes are untouched by the dashboard's
    assert client.get("/api/v1/gateways").status_code == 401
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/api/v1/nothing").status_code == 404


def test_without_a_build_the_api_works_and_pages_say_how_to_build(app_with, tmp_path):
    client = app_with(tmp_path / "absent")
    r = client.get("/")
    assert r.status_code == 503 and "npm ci &amp;&amp; npm run build" in r.text
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/gateways").status_code == 401
