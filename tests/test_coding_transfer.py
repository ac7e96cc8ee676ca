"""Moving the coders' work between instances: `forecast export` carries the episodes,
`forecast coding export|import` their codings and adjudications (forecasting.services.coding).
An instance rebuilt from both holds the same coding state; the import is all or nothing and
names each field at fault."""

from __future__ import annotations

import json

import pytest
from fixtures_api import cli_on
from fixtures_store import RecordingRefits
from helpers import csv_text
from test_coding import BOB, KEY, _file

from forecasting.services import coding as coding_service
from forecasting.services.episodes import import_file
from forecasting.store import connect
from forecasting.store.codings import CodingsImportError

ALICE = {t: level for t, level in BOB.items()} | {"humint": 1, "cyber": 0}


@pytest.fixture
def source(database, codebook, settings, tmp_path):
    """alice's and bob's codings of six episodes (two disputed), one of them adjudicated."""
    queue = RecordingRefits(settings)
    for coder, levels in (("alice", ALICE), ("bob", BOB)):
        import_file(database, codebook, queue, _file(tmp_path, coder, levels), actor=coder)
    coding_service.adjudicate(database, codebook, queue, KEY, {"level": "3"},
                              "two sources say the stream was suspended", actor="carol")
    return database


@pytest.fixture
def target(tmp_path):
    db = connect(f"sqlite:///{tmp_path / 'target.sqlite3'}", migrate=True)
    yield db
    db.dispose()


def _copy_episodes(source, target, codebook, settings, tmp_path):
    """What `forecast export` then `forecast import` do."""
    path = tmp_path / "export.csv"
    path.write_text(csv_text(list(source.episodes.iter_rows())))
    import_file(target, codebook, RecordingRefits(settings), path, actor="mover")


def _state(database):
    """Each episode's coding status, coders' values and adjudication, by natural key."""
    return {entry["key"]: (entry["status"],
                           {c: v["values"] for c, v in entry["codings"].items()},
                           entry["adjudication"] and {k: entry["adjudication"][k]
                                                      for k in ("adjudicator", "reason", "values")})
            for entry in database.codings.state().values()}


def test_codings_and_adjudications_round_trip_with_the_episodes(
        source, target, codebook, settings, tmp_path):
    document = coding_service.export_codings(source, codebook)
    assert len(document["codings"]) == 12 and len(document["adjudications"]) == 1
    _copy_episodes(source, target, codebook, settings, tmp_path)
    assert _state(target) == {}  # the episode export alone loses the coders' work
    queue = RecordingRefits(settings)
    summary = coding_service.import_codings(target, codebook, queue,
                                            json.loads(json.dumps(document)), actor="mover")
    assert (summary["codings"], summary["adjudications"], summary["unchanged"]) == (12, 1, 0)
    assert queue.requests == [("episodes", "mover")]
    assert _state(target) == _state(source)
    statuses = sorted(s for s, _, _ in _state(target).values())
    assert statuses == ["adjudicated", "agreed", "agreed", "agreed", "agreed", "disputed"]
    assert coding_service.disagreements(target) == coding_service.disagreements(source) | {
        "disagreements": [d | {"episode_id": t["episode_id"]} for d, t in zip(
            coding_service.disagreements(source)["disagreements"],
            coding_service.disagreements(target)["disagreements"], strict=True)]}
    assert coding_service.export_codings(target, codebook) == document
    again = coding_service.import_codings(target, codebook, queue, document, actor="mover")
    assert (again["codings"], again["adjudications"], again["unchanged"]) == (0, 0, 13)
    assert len(queue.requests) == 1  # nothing new, no refit


def test_a_bad_document_is_refused_whole_naming_each_field(
        source, target, codebook, settings, tmp_path):
    document = coding_service.export_codings(source, codebook)
    document["codings"][1]["values"]["level"] = 7
    document["codings"][2]["recorded_at"] = "yesterday"
    document["codings"][3]["values"]["coder"] = "mallory"
    del document["adjudications"][0]["reason"]
    _copy_episodes(source, target, codebook, settings, tmp_path)
    with pytest.raises(CodingsImportError, match="nothing was imported") as refused:
        coding_service.import_codings(target, codebook, RecordingRefits(settings), document,
                                      actor="mover")
    fields = [e["field"] for e in refused.value.errors]
    assert fields == ["codings[1].values.level", "codings[2].recorded_at",
                      "codings[3].values.coder", "adjudications[0].reason"]
    assert _state(target) == {}


def test_codings_of_episodes_not_stored_or_coded_otherwise_are_refused(
        source, target, codebook, settings, tmp_path):
    document = coding_service.export_codings(source, codebook)
    with pytest.raises(CodingsImportError, match=r"codings\[0\]: no episode trigger_id=") as e:
        coding_service.import_codings(target, codebook, RecordingRefits(settings), document,
                                      actor="mover")
    assert "import the episodes first" in str(e.value)
    _copy_episodes(source, target, codebook, settings, tmp_path)
    # the target's own second coder of one episode: the file's codings cannot be appended
    import_file(target, codebook, RecordingRefits(settings),
                _file(tmp_path, "dave", {"sigint": 2}), actor="dave")
    with pytest.raises(CodingsImportError, match="does not start with") as conflict:
        coding_service.import_codings(target, codebook, RecordingRefits(settings), document,
                                      actor="mover")
    assert [e["field"] for e in conflict.value.errors] == ["codings[0]"]
    assert {c for _, by_coder, _ in _state(target).values() for c in by_coder} == {
        "alice", "dave"}


def test_forecast_coding_export_and_import_move_them_between_instances(
        api_settings, twin_settings, tmp_path):
    """The CLI's face: the template's instance has no codings; a file refused names the field."""
    exported = tmp_path / "codings.json"
    result = cli_on(api_settings)("coding", "export", exported)
    assert result.exit_code == 0, result.output
    document = json.loads(exported.read_text())
    assert document["format"] == "forecast-codings/1" and document["codings"] == []
    done = cli_on(twin_settings)("coding", "import", exported, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["codings"] == 0
    exported.write_text(json.dumps(document | {"format": "other"}))
    refused = cli_on(twin_settings)("coding", "import", exported)
    assert refused.exit_code == 1
    assert "format: 'other'; expected 'forecast-codings/1'" in refused.output
