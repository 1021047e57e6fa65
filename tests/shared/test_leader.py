"""Several scheduler daemons on one PostgreSQL database: one leads, the others stand by.

Real daemons as subprocesses, real runs, a real PostgreSQL (``KANSLI_TEST_POSTGRES_URL``); the fire
ledger (``kansli_schedule_fires``) also on SQLite, where one daemon runs alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.leader import LEADER_KEY, planned_key
from shared.scheduler import daemon_status
from shared.settings import load_settings
from shared.store import RunRecord, list_operator_actions, save_schedule_states, schedule_fires
from tests.conftest import KANSLI, kansli
from tests.shared.scheduler.conftest import Daemons, wait_until

pytestmark = pytest.mark.slow

POLL = 1.0
#: A fire's states once its run started here, or was queued for the workers.
RAN = ("spawned", "queued")
#: A takeover: the standby's next poll, then its start as leader, on a loaded 2-core machine.
TAKEOVER_WAIT = POLL + 45.0


class Cluster(Daemons):
    """Daemons with host ids of their own, polling for the lead every second."""

    def __init__(self, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(work, monkeypatch)
        self.env["KANSLI_CLUSTER__LEADER_POLL_S"] = str(POLL)

    def start_host(self, host: str) -> subprocess.Popen[str]:
        shared_env = self.env
        self.env = {**shared_env, "KANSLI_HOST_ID": host}
        try:
            return self.start(wait=False)
        finally:
            self.env = shared_env

    def leader_pid(self) -> int | None:
        return self.alive_pid()

    def fires(self) -> list[Any]:
        with self.store.engine.connect() as connection:
            return list(connection.execute(sa.select(schedule_fires).order_by(schedule_fires.c.planned)))

    def fired_by(self, host: str, schedule_id: str = "tick") -> list[Any]:
        return [row for row in self.fires()
                if row.host == host and row.schedule_id == schedule_id and row.state in RAN]

    def settled(self, before: datetime) -> bool:
        """Every fire planned before ``before`` ran or was recorded: none is left claimed or started."""
        return not [row for row in self.fires() if datetime.fromisoformat(row.planned) < before
                    and row.state in ("claimed", "started")]

    def ended(self, schedule_id: str) -> bool:
        return all(run.status != "running" for run in self.runs(schedule_id))

    def quiet_before(self, schedule_id: str) -> datetime:
        """A moment before which every fire of ``schedule_id`` was claimed, ran and ended: a daemon
        stopped after it may cancel a run, but only one of a later fire (the next fire's row is
        there, so none planned before it is still to be claimed)."""
        before = datetime.now(UTC)
        wait_until(lambda: [row for row in self.fires() if row.schedule_id == schedule_id
                            and datetime.fromisoformat(row.planned) >= before], timeout=60,
                   what=f"a fire of {schedule_id} planned after {before}")
        wait_until(lambda: self.settled(before), timeout=60, what=f"the fires before {before} to be settled")
        ran = {row.run_id for row in self.fires() if row.schedule_id == schedule_id and row.state in RAN
               and datetime.fromisoformat(row.planned) < before}
        wait_until(lambda: all(run.status not in ("running", "queued") for run in self.runs(schedule_id)
                               if run.run_id in ran), timeout=60, what=f"the runs of fires before {before}")
        return before


@pytest.fixture
def cluster(database_url: str, kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    helper = Cluster(kansli_env, monkeypatch)
    try:
        yield helper
    finally:
        helper.cleanup()


def scheduled(schedule_id: str) -> list[dict[str, Any]]:
    """The ``run.scheduled`` events of ``schedule_id`` in every host's audit chain."""
    from shared.audit_trails import AuditTrails

    trails = AuditTrails(load_settings())
    return [e for e in trails.search(event="run.scheduled") if e["data"]["schedule"] == schedule_id]


def assert_each_fire_once(
    cluster: Cluster, schedule_id: str, before: datetime, restarted: bool = False
) -> None:
    """Every fire planned before ``before`` ended one way, and each run ran one planned time once
    (``restarted``: runs may have failed while the database was down)."""
    rows = [row for row in cluster.fires()
            if row.schedule_id == schedule_id and datetime.fromisoformat(row.planned) < before]
    assert not [row for row in rows if row.state in ("claimed", "started")], "a fire was never run"
    runs = {run.run_id: run for run in cluster.runs(schedule_id)}
    started = [row for row in rows if row.state in RAN]
    for row in started:
        status = runs[row.run_id].status
        assert status == "succeeded" or (restarted and status not in ("running", "queued")), row
    events = scheduled(schedule_id)
    planned = Counter(event["data"]["planned"] for event in events)
    assert [key for key, count in planned.items() if count > 1] == [], "a planned time fired twice"
    by_run = {event["run_id"]: event for event in events}
    for row in started:
        event = by_run[row.run_id]
        assert datetime.fromisoformat(event["data"]["planned"]) == datetime.fromisoformat(row.planned)
        assert event["data"]["host"] == row.host


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_daemon_leads_and_the_standby_takes_over_when_it_is_killed(cluster: Cluster) -> None:
    marker = cluster.work / "ticks.txt"
    cluster.write(f'[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "3s"\nmisfire_grace = "60s"\n'
                  f'params = {{ marker = "{marker}" }}\n')
    first = cluster.start_host("host-a")
    wait_until(lambda: cluster.leader_pid() == first.pid, timeout=60, what="host-a to lead")
    second = cluster.start_host("host-b")
    wait_until(lambda: f"standing by: host-a (pid {first.pid}) leads" in cluster.log(1), timeout=60,
               what="host-b to stand by")
    listing = json.loads(kansli("schedules", "--json", env=cluster.env, cwd=cluster.work).stdout)
    assert listing["daemon"]["host"] == "host-a" and listing["daemon"]["leading_since"]
    assert [(s["host"], s["pid"]) for s in listing["standbys"]] == [("host-b", second.pid)]
    text = kansli("schedules", env={**cluster.env, "COLUMNS": "250"}, cwd=cluster.work).stdout
    assert "on host-a" in text and f"standing by: pid {second.pid} on host-b" in text
    wait_until(lambda: len(cluster.fired_by("host-a")) >= 2, timeout=60, what="two fires of host-a")
    first.kill()  # SIGKILL: its connection, and so its lock, dies with it
    first.wait()
    killed = datetime.now(UTC)
    wait_until(lambda: cluster.leader_pid() == second.pid, timeout=TAKEOVER_WAIT, what="host-b to lead")
    wait_until(lambda: len(cluster.fired_by("host-b")) >= 3, timeout=60, what="three fires of host-b")
    # a fire host-a claimed, or marked started, when it was killed is run by host-b
    wait_until(lambda: cluster.settled(killed), timeout=60, what="the fires of host-a to be settled")
    stopping = cluster.quiet_before("tick")
    assert cluster.stop(second) == 0
    assert_each_fire_once(cluster, "tick", stopping)
    marked = [line.split()[0] for line in marker.read_text().split("\n")[:-1]]
    assert len(marked) == len(set(marked))  # no run ran twice
    succeeded = {run.run_id for run in cluster.runs("tick") if run.status == "succeeded"}
    assert succeeded <= set(marked)
    planned = {row.run_id: datetime.fromisoformat(row.planned) for row in cluster.fires()}
    assert all(planned[run_id] >= stopping for run_id in set(marked) - succeeded)  # cancelled by the stop
    leads = [a.details for a in reversed(list_operator_actions(cluster.store)) if a.action == "daemon.lead"]
    assert [lead["host"] for lead in leads] == ["host-a", "host-b"]
    assert leads[-1]["previous"] == f"host-a (pid {first.pid})"
    assert f"leading the schedulers of this database as host-b (pid {second.pid}), after host-a" \
        in cluster.log(1)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_retry_planned_by_a_daemon_killed_in_its_backoff_is_run_once_by_the_next(cluster: Cluster) -> None:
    """SQLite: the same host's daemon started again; PostgreSQL: the standby taking over."""
    when = (datetime.now().astimezone() + timedelta(seconds=2)).isoformat(timespec="seconds")
    cluster.write(f'[[schedule]]\nid = "flaky"\nrobot = "crashing"\nat = "{when}"\nretries = 1\n'
                  'retry_backoff = "60s"\nparams = { message = "nere" }\n')
    first = cluster.start_host("host-a")
    wait_until(lambda: cluster.leader_pid() == first.pid, timeout=60, what="host-a to lead")
    postgres = cluster.store.dialect == "postgresql"
    if postgres:
        standby = cluster.start_host("host-b")
        wait_until(lambda: "standing by" in cluster.log(1), timeout=60, what="host-b to stand by")

    def actions(name: str) -> list[Any]:
        return [a for a in list_operator_actions(cluster.store, "flaky") if a.action == name]

    def both_ended() -> list[RunRecord] | None:
        found = cluster.runs("flaky")
        return found if len(found) == 2 and all(r.status in ("failed", "succeeded") for r in found) else None

    wait_until(lambda: actions("schedule.retry.planned"), timeout=90, what="the retry to be planned")
    [plan] = actions("schedule.retry.planned")
    [failed] = cluster.runs("flaky")
    assert failed.status == "failed" and plan.details["run_id"] == failed.run_id
    first.kill()  # in the backoff: the retry lived only in this daemon's memory before
    first.wait()
    if not postgres:
        standby = cluster.start_host("host-a")
    wait_until(lambda: cluster.leader_pid() == standby.pid, timeout=TAKEOVER_WAIT, what="the next to lead")
    wait_until(both_ended, timeout=120, what="the retry to run and end")
    runs = cluster.runs("flaky")
    retry = next(run for run in runs if run.run_id != failed.run_id)
    assert retry.status == "failed" and datetime.fromisoformat(retry.started_at) >= datetime.fromisoformat(
        plan.details["due"]) - timedelta(seconds=1)  # not before its backoff ended
    [started] = actions("schedule.retry")
    assert started.details == {"run_id": retry.run_id, "retry_of": failed.run_id, "attempt": 1}
    assert "planned by an earlier daemon" in cluster.log(-1)
    assert cluster.stop(standby) == 0
    assert len(cluster.runs("flaky")) == 2  # its one retry used: no third run


def claim_as_dead_leader(
    cluster: Cluster, schedule_id: str, planned: datetime, state: str = "claimed",
    fired_at: datetime | None = None,
) -> None:
    """The row a leader leaves when it dies after claiming a fire (and before starting it)."""
    with cluster.store.engine.begin() as connection:
        connection.execute(schedule_fires.insert().values(
            schedule_id=schedule_id, planned=planned_key(planned), host="host-dead", term="host-dead:0",
            run_id=f"dead-{schedule_id}", state=state, fired_at=planned_key(fired_at or planned)))


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_fire_a_dead_leader_claimed_is_run_once_within_its_grace(cluster: Cluster) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    recent, old = now - timedelta(seconds=5), now - timedelta(minutes=5)
    once = '[[schedule]]\nid = "{}"\nrobot = "{}"\nat = "{}"\nmisfire_grace = "{}"\n\n'
    cluster.write("".join(once.format(name, robot, at.isoformat(), grace) for name, robot, at, grace in (
        ("orphan", "ticker", recent, "1h"), ("too-late", "ticker", old, "1m"),
        ("done", "ticker", recent, "1h"), ("in-place", "counting", recent, "1h")))  # robots of their own:
        # no run of them is skipped by another's robot lock
        + '[[schedule]]\nid = "often"\nrobot = "sleeper"\nevery = "5s"\nmisfire_grace = "1h"\n'
        'params = { seconds = 0 }\n\n'
        f'[[schedule]]\nid = "stuck"\nrobot = "stamp"\nat = "{recent.isoformat()}"\nmisfire_grace = "1h"\n'
        f'params = {{ log = "{cluster.work / "stamps.txt"}", seconds = 0 }}\n')
    # the dead leader had synced these schedules and APScheduler had dropped the one-off jobs; it died
    # before it moved the job of "in-place" on, and "often" on to a time now past
    from shared.registry import discover
    from shared.schedules import load_schedules

    schedules = load_schedules(cluster.folder, discover("tests.sample_robots")).by_id()
    save_schedule_states(cluster.store, [(s.id, s.robot, s.fingerprint()) for s in schedules.values()
                                         if s.id != "in-place"])
    often = now - timedelta(seconds=12)
    store_job(cluster, "often", schedules["often"].trigger(), often)
    for name, planned in (("orphan", recent), ("too-late", old), ("in-place", recent), ("often", often)):
        claim_as_dead_leader(cluster, name, planned)
    claim_as_dead_leader(cluster, "done", recent, state="spawned")  # its run started: never again
    # marked started half a minute ago, no run: the leader died before it started the run's process
    claim_as_dead_leader(cluster, "stuck", recent, state="started", fired_at=now - timedelta(seconds=30))
    daemon = cluster.start_host("host-new")
    wait_until(lambda: all(cluster.runs(name) and cluster.ended(name) for name in (
        "orphan", "too-late", "in-place", "often", "stuck")), timeout=60,
        what="the runs and the late one's record")
    assert cluster.stop(daemon) == 0
    [run] = cluster.runs("orphan")
    assert run.status == "succeeded"
    [event] = scheduled("orphan")
    assert event["run_id"] == run.run_id and event["data"]["planned"] == recent.isoformat()
    assert event["data"]["host"] == "host-new" and event["data"]["taken_over_from"] == "host-dead"
    [missed] = cluster.runs("too-late")
    assert missed.status == "missed"
    assert "claimed by host-dead, which did not start it" in (missed.error or "")
    assert cluster.runs("done") == [] and scheduled("done") == []
    rows = {row.schedule_id: row for row in cluster.fires()}
    assert (rows["orphan"].state, rows["orphan"].host, rows["orphan"].run_id) == ("spawned", "host-new",
                                                                                  run.run_id)
    assert (rows["too-late"].state, rows["too-late"].run_id) == ("missed", missed.run_id)
    assert rows["done"].state == "spawned" and rows["done"].host == "host-dead"
    assert "was claimed by host-dead, which never started it; this leader runs it" in cluster.log()
    [in_place] = cluster.runs("in-place")
    assert (rows["in-place"].state, rows["in-place"].run_id) == ("spawned", in_place.run_id)
    [stuck] = cluster.runs("stuck")
    assert (rows["stuck"].state, rows["stuck"].run_id, stuck.status) == ("spawned", stuck.run_id, "succeeded")
    assert scheduled("in-place")[0]["data"]["taken_over_from"] == "host-dead"
    # "often" missed its fires of 12, 7 and 2 s ago: one run, of the latest; the orphan coalesced into it
    often_rows = [row for row in cluster.fires() if row.schedule_id == "often"]
    assert often_rows[0].planned == planned_key(often) and often_rows[0].state == "coalesced"
    assert scheduled("often")[0]["data"]["planned"] > often.isoformat()
    assert scheduled("often")[0]["run_id"] in {run.run_id for run in cluster.runs("often")}


def store_job(cluster: Cluster, schedule_id: str, trigger: Any, next_run: datetime) -> None:
    """A job in the APScheduler job store as a previous daemon left it."""
    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    from shared.scheduler import JOBS_TABLE, fire_schedule

    jobstore = SQLAlchemyJobStore(engine=cluster.store.engine, tablename=JOBS_TABLE)
    scheduler = BlockingScheduler(timezone=UTC)
    jobstore.start(scheduler, "default")
    jobstore.add_job(Job(scheduler, id=schedule_id, func=fire_schedule, args=[schedule_id], kwargs={},
                         trigger=trigger, executor="default", name=schedule_id, misfire_grace_time=3600,
                         coalesce=True, max_instances=1, next_run_time=next_run))


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_leader_whose_lock_connection_dies_stops_firing_and_stands_by(cluster: Cluster) -> None:
    """The lock's connection killed on the server (as a network cut would): no fire from it after."""
    cluster.write('[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "3s"\nmisfire_grace = "60s"\n')
    first = cluster.start_host("host-a")
    wait_until(lambda: cluster.leader_pid() == first.pid, timeout=60, what="host-a to lead")
    second = cluster.start_host("host-b")
    wait_until(lambda: "standing by: host-a" in cluster.log(1), timeout=60, what="host-b to stand by")
    wait_until(lambda: len(cluster.fired_by("host-a")) >= 1, timeout=60, what="a fire of host-a")
    with cluster.store.engine.connect() as connection:
        killed = connection.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'kansli scheduler host-a'")).scalar_one()
    assert killed == 1
    cut = datetime.now(UTC)
    wait_until(lambda: "LOST the lead of the schedulers" in cluster.log(0), timeout=60,
               what="host-a to notice")
    lost_line = [line for line in cluster.log(0).splitlines() if "LOST the lead" in line][0]
    assert "no new fires from this daemon" in lost_line
    wait_until(lambda: len([row for row in cluster.fires() if row.state in RAN
                            and datetime.fromisoformat(row.fired_at) > cut]) >= 2, timeout=60,
               what="fires after the cut")
    assert lock_holders(cluster) == 1
    stopping = cluster.quiet_before("tick")
    assert cluster.stop(first) == 0 and cluster.stop(second) == 0
    assert_each_fire_once(cluster, "tick", stopping)


def postgres_cluster() -> tuple[str, str] | None:
    """The local PostgreSQL cluster (version, name) this test may restart, if any."""
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0 or not Path("/etc/postgresql").is_dir():
        return None
    for version in sorted(Path("/etc/postgresql").iterdir(), reverse=True):
        if (version / "main").is_dir():
            return version.name, "main"
    return None


def accepting() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0


def lock_holders(cluster: Cluster) -> int:
    classid, objid = (LEADER_KEY >> 32) & 0xFFFFFFFF, LEADER_KEY & 0xFFFFFFFF
    with cluster.store.engine.connect() as connection:
        return int(connection.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c "
            "AND objid = :o AND objsubid = 1 AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"), {"c": classid, "o": objid}).scalar_one())


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_schedulers_reconnect_after_a_postgresql_restart(cluster: Cluster) -> None:
    """Restarts the machine's PostgreSQL (other tests on it see their connections drop): slow, rare."""
    found = postgres_cluster()
    if found is None:
        pytest.skip("needs root and a local pg_ctlcluster cluster to restart")
    cluster.write('[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "3s"\nmisfire_grace = "60s"\n')
    first = cluster.start_host("host-a")
    wait_until(lambda: cluster.leader_pid() == first.pid, timeout=60, what="host-a to lead")
    second = cluster.start_host("host-b")
    wait_until(lambda: "standing by: host-a" in cluster.log(1), timeout=60, what="host-b to stand by")
    wait_until(lambda: len(cluster.fired_by("host-a")) >= 2, timeout=60, what="two fires")
    subprocess.run(["pg_ctlcluster", *found, "restart"], check=True, timeout=120)
    restarted = datetime.now(UTC)
    wait_until(accepting, timeout=120, what="PostgreSQL to accept connections")
    wait_until(lambda: "LOST the lead of the schedulers" in cluster.log(0), timeout=60,
               what="the leader to notice")

    def fired_after_restart() -> int:
        try:
            return len([row for row in cluster.fires() if row.state in RAN
                        and datetime.fromisoformat(row.fired_at) > restarted])
        except sa.exc.OperationalError:
            return 0  # the test's own pool meets the restart too

    wait_until(lambda: fired_after_restart() >= 2, timeout=120, what="fires after the restart")
    assert lock_holders(cluster) == 1
    status = daemon_status(cluster.store)
    assert status is not None and status.alive and status.pid in (first.pid, second.pid)
    stopping = cluster.quiet_before("tick")
    assert cluster.stop(first) == 0 and cluster.stop(second) == 0
    assert_each_fire_once(cluster, "tick", stopping - timedelta(seconds=1), restarted=True)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_with_procrastinate_the_leader_queues_its_fires_for_the_workers(cluster: Cluster) -> None:
    """KANSLI_EXECUTION=procrastinate: a fire is a job a worker runs; a takeover queues none twice."""
    marker = cluster.work / "ticks.txt"
    cluster.env["KANSLI_EXECUTION"] = "procrastinate"
    lost = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    cluster.write(f'[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "3s"\nmisfire_grace = "60s"\n'
                  f'params = {{ marker = "{marker}" }}\n\n'
                  f'[[schedule]]\nid = "lost"\nrobot = "counting"\nat = "{lost.isoformat()}"\n'
                  'params = { count = 1 }\n')
    # a leader that died while it queued the fire of "lost": the run recorded queued, no job added
    from shared.registry import discover
    from shared.schedules import load_schedules

    schedules = load_schedules(cluster.folder, discover("tests.sample_robots")).by_id()
    save_schedule_states(cluster.store, [(s.id, s.robot, s.fingerprint()) for s in schedules.values()
                                         if s.id == "lost"])
    claim_as_dead_leader(cluster, "lost", lost, state="started", fired_at=lost - timedelta(seconds=30))
    cluster.store.create_run(RunRecord(
        run_id="dead-lost", robot="counting", params={}, trigger="schedule:lost", actor="kansli@host-dead",
        status="queued", started_at=planned_key(lost)))
    worker_log = (cluster.work / "worker.log").open("w")
    worker = subprocess.Popen([*KANSLI, "worker", "--robots", "ticker,counting", "--stop-grace", "5"],
                              env={**cluster.env, "KANSLI_HOST_ID": "worker-1",
                                   "KANSLI_DATA_DIR": str(cluster.work / "worker-data")},
                              cwd=cluster.work, stdout=worker_log, stderr=worker_log, text=True)
    cluster.processes.append(worker)
    first = cluster.start_host("host-a")
    wait_until(lambda: cluster.leader_pid() == first.pid, timeout=60, what="host-a to lead")
    second = cluster.start_host("host-b")
    wait_until(lambda: len(cluster.fired_by("host-a")) >= 2, timeout=90, what="two fires of host-a")
    first.kill()
    first.wait()
    killed = datetime.now(UTC)
    wait_until(lambda: cluster.leader_pid() == second.pid, timeout=TAKEOVER_WAIT, what="host-b to lead")
    wait_until(lambda: len(cluster.fired_by("host-b")) >= 2, timeout=90, what="two fires of host-b")
    wait_until(lambda: cluster.settled(killed), timeout=60, what="the fires of host-a to be settled")
    stopping = datetime.now(UTC)
    assert cluster.stop(second) == 0
    wait_until(lambda: all(run.status not in ("running", "queued") for run in cluster.runs("tick")),
               timeout=120, what="the worker to run the queued runs")
    worker.terminate()
    worker.wait(timeout=60)
    assert "queued for the workers" in cluster.log(0) and "queued for the workers" in cluster.log(1)
    assert_each_fire_once(cluster, "tick", stopping)
    ran = [run for run in cluster.runs("tick") if run.status == "succeeded"]
    assert len(marker.read_text().splitlines()) == len(ran) >= 4
    again, closed = cluster.runs("lost")  # newest first
    assert (closed.run_id, closed.status) == ("dead-lost", "interrupted")
    assert closed.error == f"not queued: host-dead died first; run as {again.run_id}"
    assert again.status == "succeeded"
    [row] = [row for row in cluster.fires() if row.schedule_id == "lost"]
    assert (row.state, row.run_id) == ("queued", again.run_id)
