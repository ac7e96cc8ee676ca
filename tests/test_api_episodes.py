import pytest
from fixtures_api import auth
from helpers import episode_row


def _json_row(**overrides):
    row = episode_row(**overrides)
    return {**row, "severity": int(row["severity"]), "alignment": int(row["alignment"]),
            "level": int(row["level"])}


def test_listing_filters_and_paginates(client):
    page = client.get("/v1/episodes?limit=3&offset=0").get_json()
    assert page["total"] == 8 and len(page["episodes"]) == 3
    rest = client.get("/v1/episodes?limit=10&offset=3").get_json()["episodes"]
    assert len(rest) == 5
    ids = [e["id"] for e in page["episodes"] + rest]
    assert len(set(ids)) == 8
    only = client.get("/v1/episodes?level=1").get_json()
    assert only["total"] == 1 and only["episodes"][0]["intel_type"] == "sources"
    assert client.get("/v1/episodes?partner=GBR").get_json()["total"] == 0
    assert client.get("/v1/episodes?limit=0").status_code == 400
    assert client.get("/v1/episodes?since=yesterday").status_code == 400
    for until in ("0", "1700000000", "2020-1-1"):  # not read as Unix times, nor loosely
        r = client.get(f"/v1/episodes?until={until}")
        assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "until", until


def test_writing_needs_a_token_with_the_coder_role(client, tokens):
    row = _json_row(partner="GBR", intel_type="ct", level=3)
    assert client.post("/v1/episodes", json=row).status_code == 401
    bad = client.post("/v1/episodes", json=row, headers=auth("fct_not-a-token"))
    assert bad.status_code == 401 and "unknown, revoked or expired" in bad.get_json()["detail"]
    assert client.post("/v1/episodes", json=row, headers=auth(tokens["reader"])).status_code == 403
    assert client.post("/v1/episodes", json=row, headers=auth(tokens["modeler"])).status_code == 403
    r = client.post("/v1/episodes", json=row, headers=auth(tokens["coder"]))
    assert r.status_code == 201
    assert r.get_json()["inserted"] == 1


def test_posting_the_same_episode_twice_is_idempotent(client, tokens):
    row = _json_row(partner="GBR", intel_type="ct")
    assert client.post("/v1/episodes", json=row, headers=auth(tokens["coder"])).status_code == 201
    again = client.post("/v1/episodes", json=row, headers=auth(tokens["coder"]))
    assert again.status_code == 200
    assert again.get_json()["unchanged"] == 1


def test_a_batch_with_one_bad_row_writes_nothing_and_lists_every_bad_row(client, tokens):
    batch = [_json_row(partner="GBR", intel_type="ct"),
             _json_row(partner="XXX", intel_type="ct"),
             _json_row(partner="CAN", intel_type="ct", level=9)]
    r = client.post("/v1/episodes", json={"episodes": batch}, headers=auth(tokens["coder"]))
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    errors = r.get_json()["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "partner"), (3, "level")]
    assert client.get("/v1/episodes").get_json()["total"] == 8


def test_a_batch_is_written_whole_and_audited_with_the_token_name(client, tokens):
    batch = [_json_row(partner=p, intel_type="ct") for p in ("GBR", "CAN", "AUS")]
    r = client.post("/v1/episodes", json={"episodes": batch}, headers=auth(tokens["coder"]))
    assert r.get_json()["inserted"] == 3
    url = "/v1/episodes/2017-oval-office-disclosure/CAN/ct"
    record = client.get(url, headers=auth(tokens["reader"])).get_json()
    assert record["history"][0]["changed_by"] == "coder-token"
    # an open read shows what changed and when, not which token changed it
    anonymous = client.get(url).get_json()["history"][0]
    assert "changed_by" not in anonymous and anonymous["revision"] == 1


def test_revising_keeps_the_history(client, tokens):
    url = "/v1/episodes/2017-oval-office-disclosure/ISR/humint"
    before = client.get(url, headers=auth(tokens["reader"])).get_json()
    body = _json_row(level=2, notes="a second source")
    r = client.put(url, json=body, headers=auth(tokens["coder"]))
    assert r.status_code == 200 and r.get_json()["revised"] == 1
    after = client.get(url, headers=auth(tokens["reader"])).get_json()
    assert after["id"] == before["id"] and after["level"] == 2 and after["revision"] == 2
    assert after["history"][-1]["changed_fields"]["level"] == {"from": 0, "to": 2}
    assert after["history"][-1]["changed_by"] == "coder-token"


def test_revising_cannot_change_the_key_or_create_a_new_episode(client, tokens):
    headers = auth(tokens["coder"])
    clash = client.put("/v1/episodes/2017-oval-office-disclosure/ISR/humint",
                       json=_json_row(partner="GBR"), headers=headers)
    assert clash.status_code == 400 and "partner" in clash.get_json()["detail"]
    missing = client.put("/v1/episodes/nope/ISR/humint", json=_json_row(), headers=headers)
    assert missing.status_code == 404


@pytest.mark.parametrize("body", [[1, 2], "text", {"episodes": []}, {"episodes": "x"}, 42])
def test_malformed_bodies_are_400_never_500(client, tokens, body):
    r = client.post("/v1/episodes", json=body, headers=auth(tokens["coder"]))
    assert r.status_code == 400


def test_a_body_that_is_not_json_is_400(client, tokens):
    r = client.post("/v1/episodes", data="{nope", content_type="application/json",
                    headers=auth(tokens["coder"]))
    assert r.status_code == 400


def test_an_oversized_request_is_413(app, tokens):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    r = app.test_client().post("/v1/episodes", json={"episodes": [_json_row()] * 20},
                               headers=auth(tokens["coder"]))
    assert r.status_code == 413 and r.mimetype == "application/problem+json"


def test_unknown_episode_is_404(client):
    r = client.get("/v1/episodes/nope/GBR/sigint")
    assert r.status_code == 404 and "no episode with trigger_id='nope'" in r.get_json()["detail"]
