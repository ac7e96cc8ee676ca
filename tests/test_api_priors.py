from fixtures_api import auth

from forecasting.model.priors import load_priors
from forecasting.settings import DEFAULT_PRIORS_DIR

DEFAULT = load_priors(DEFAULT_PRIORS_DIR / "default.toml").to_dict()


def test_the_shipped_priors_are_active_until_a_modeler_submits_others(client):
    body = client.get("/v1/priors").get_json()
    # the shipped file by name: an open read shows no path of the server's disk
    assert body["source"] == "default priors file default.toml"
    assert body["priors"] == DEFAULT and len(body["content_hash"]) == 64


def test_submitting_priors_needs_a_modeler_and_queues_a_refit(client, tokens):
    changed = {**DEFAULT, "sigma_pt": {"dist": "HalfNormal", "kwargs": {"sigma": 0.2}}}
    body = {"priors": changed, "note": "tighter interactions"}
    assert client.put("/v1/priors", json=body).status_code == 401
    assert client.put("/v1/priors", json=body, headers=auth(tokens["coder"])).status_code == 403
    r = client.put("/v1/priors", json=body, headers=auth(tokens["modeler"]))
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["priors"]["sigma_pt"]["kwargs"] == {"sigma": 0.2}
    assert doc["source"] == "prior set #1" and doc["refit"]["reason"] == "priors"
    assert doc["history"][0]["created_by"] == "modeler-token"
    assert doc["history"][0]["note"] == "tighter interactions"
    anonymous = client.get("/v1/priors").get_json()["history"][0]
    assert "created_by" not in anonymous and anonymous["note"] == "tighter interactions"
    again = client.put("/v1/priors", json=body, headers=auth(tokens["modeler"])).get_json()
    assert again["source"] == "prior set #1" and again.get("refit") is None  # no change


def test_invalid_priors_are_refused_naming_the_key(client, tokens):
    bad_scale = {**DEFAULT, "sigma_bloc": {"dist": "HalfNormal", "kwargs": {"sigma": -1.0}}}
    r = client.put("/v1/priors", json={"priors": bad_scale}, headers=auth(tokens["modeler"]))
    assert r.status_code == 400 and "sigma_bloc" in r.get_json()["detail"]
    unknown = {**DEFAULT, "sigma_bloc": {"dist": "Banana", "kwargs": {}}}
    r = client.put("/v1/priors", json={"priors": unknown}, headers=auth(tokens["modeler"]))
    assert r.status_code == 400 and "Banana" in r.get_json()["detail"]
    missing = {k: v for k, v in DEFAULT.items() if k != "cutpoints"}
    r = client.put("/v1/priors", json={"priors": missing}, headers=auth(tokens["modeler"]))
    assert r.status_code == 400 and "cutpoints" in r.get_data(as_text=True)
    assert client.get("/v1/priors").get_json()["priors"] == DEFAULT


def test_the_prior_predictive_check_needs_a_modeler_and_saves_nothing(client, tokens):
    # the heaviest request there is: not for anonymous callers or coders
    assert client.post("/v1/priors/check", json={"priors": DEFAULT}).status_code == 401
    assert client.post("/v1/priors/check", json={"priors": DEFAULT},
                       headers=auth(tokens["coder"])).status_code == 403
    r = client.post("/v1/priors/check", json={"priors": DEFAULT}, headers=auth(tokens["modeler"]))
    assert r.status_code == 200
    summary = r.get_json()["prior_predictive"]
    assert "any_restriction" in summary
    assert client.get("/v1/priors").get_json()["source"].endswith("default.toml")
