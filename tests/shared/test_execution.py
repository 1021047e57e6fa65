"""Run jobs on PostgreSQL: queueing, validation before queueing, the queueing lock."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.errors import ConfigError, ParameterError, UnknownRobotError
from shared.execution import conninfo, enqueue_run, robot_lock, robot_queue, waiting_jobs
from shared.settings import load_settings
from shared.store import Store, cluster_runs

POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def test_conninfo_is_the_libpq_form_of_the_url() -> None:
    assert conninfo("postgresql+psycopg://kansli:hemligt@db.example:5433/robots") == (
        "postgresql://kansli:hemligt@db.example:5433/robots")
    with pytest.raises(ConfigError, match="PostgreSQL"):
        conninfo("sqlite:///var/data/kansli.db")
    assert robot_queue("intake_forms") == "kansli.intake_forms"
    assert robot_lock("intake_forms") == "robot:intake_forms"


@pytest.mark.postgres
@POSTGRES
def test_a_bad_parameter_or_robot_fails_before_anything_is_queued(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANSLI_EXECUTION", "procrastinate")
    settings = load_settings(robots_package="tests.sample_robots")
    with pytest.raises(ParameterError, match="count"):
        enqueue_run(settings, "counting", {"count": "många"})
    with pytest.raises(UnknownRobotError):
        enqueue_run(settings, "no_such_robot")
    store = Store(database_url)
    assert store.list_runs() == []


@pytest.mark.postgres
@POSTGRES
def test_a_queueing_lock_keeps_a_second_copy_from_waiting(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANSLI_EXECUTION", "procrastinate")
    settings = load_settings(robots_package="tests.sample_robots")
    first = enqueue_run(settings, "counting", {"count": 2}, trigger="schedule:nightly",
                        queueing_lock="schedule:nightly")
    second = enqueue_run(settings, "counting", {"count": 2}, trigger="schedule:nightly",
                         queueing_lock="schedule:nightly")
    assert first is not None and second is None
    store = Store(database_url)
    statuses = {record.status for record in store.list_runs()}
    assert statuses == {"queued", "skipped"}
    skipped = store.list_runs(status="skipped")[0]
    assert "already waiting for a worker" in (skipped.error or "")
    jobs = waiting_jobs(store)
    assert [(job["robot"], job["run_id"], job["served"]) for job in jobs] == [("counting", first, False)]
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(cluster_runs).where(cluster_runs.c.run_id == first)).one()
    assert row.queue == "kansli.counting" and row.job_id == jobs[0]["job_id"] and row.worker is None


def test_a_secret_parameter_is_refused_not_queued_masked() -> None:
    from pydantic import SecretStr

    from shared.execution import _refuse_secrets
    from shared.registry import RobotParams

    class Params(RobotParams):
        token: SecretStr | None = None

    _refuse_secrets("hemlig", Params())
    with pytest.raises(ParameterError, match="parameter 'token' is a secret"):
        _refuse_secrets("hemlig", Params(token=SecretStr("abc")))
