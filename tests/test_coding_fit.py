"""Double coding through a real fit (slow: real sampling): the disputed episodes are held back,
the floor fails the gate naming the field, the version records how every episode was coded."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from forecasting.domain.episodes import validate_episodes
from forecasting.registry import Registry
from forecasting.services.fits import fit_and_register
from forecasting.store import connect

pytestmark = pytest.mark.slow


def test_a_real_refit_holds_back_disputes_and_fails_below_the_floor(
        fitted_instance, codebook, tmp_path):
    shutil.copytree(fitted_instance.settings.instance_path, tmp_path / "instance")
    settings = replace(fitted_instance.settings, instance_path=tmp_path / "instance",
                       database_url=f"sqlite:///{tmp_path / 'instance' / 'forecasting.sqlite3'}",
                       registry_path=tmp_path / "instance" / "models",
                       coding_alpha_floor=(("level", 0.95),))
    database = connect(settings.database_url)
    try:
        stored = database.episodes.list(limit=120)
        second = []
        for i, record in enumerate(stored):
            row = {k: record[k] for k in ("trigger_id", "trigger_type", "trigger_date",
                                           "severity", "alignment", "partner", "intel_type",
                                           "level", "confidence")}
            row |= {"sources": " | ".join(record["sources"]), "coder": "second-coder"}
            if i % 6 == 0:  # every sixth one a level apart
                row["level"] = 1 if record["level"] == 0 else record["level"] - 1
            second.append(row)
        summary = database.episodes.import_episodes(
            validate_episodes(list(enumerate(second, 2)), codebook), actor="second-coder",
            codebook_version=codebook.version)
        assert summary.coded == 120 and summary.revised == 0
        outcome = fit_and_register(settings, database, Registry(settings.registry_path),
                                   codebook)
        version = outcome.version
        coding = version.metadata["coding"]
        assert coding["counts"]["disputed"] == 20 and len(coding["held_back"]) == 20
        assert version.episodes == database.episodes.count() - 20
        assert coding["counts"]["agreed"] == 100
        assert version.verdict == "fail" and not outcome.promoted
        [reason] = [r for r in version.reasons if r.startswith("coding ")]
        assert reason.startswith("coding level: Krippendorff's alpha") and "0.95" in reason
        assert Registry(settings.registry_path).current().version == \
            fitted_instance.version.version
    finally:
        database.dispose()
