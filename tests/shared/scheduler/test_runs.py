"""shared.scheduler.runs, through real daemons: overlapping runs refused, the mail of a failed run, a
queue schedule's runs."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from shared.scheduler import next_run_times
from shared.store import list_operator_actions
from tests.conftest import KANSLI, kansli
from tests.shared.scheduler.conftest import Daemons, soon, wait_until
from tests.shared.test_notify import CANARY_PASSWORD, SmtpServer, smtp_server  # noqa: F401

pytestmark = pytest.mark.slow


def test_overlapping_runs_are_refused_and_recorded(daemons: Daemons) -> None:
    """Every run here lasts until the test releases it (or the daemon stops it): no timing."""
    cli_ready, cli_release = daemons.work / "cli-ready.txt", daemons.work / "cli-release.txt"
    daemons.write(f'[[schedule]]\nid = "busy"\nrobot = "sleeper"\nat = "{soon(1)}"\n'
                  'params = { seconds = 120 }\n\n'
                  f'[[schedule]]\nid = "manual"\nrobot = "sleeper"\ncron = "0 0 1 1 *"\n'
                  'params = { seconds = 120 }\n')
    cli_run = subprocess.Popen([*KANSLI, "run", "sleeper", "--param", "seconds=120", "--param",
                                f"ready={cli_ready}", "--param", f"release={cli_release}"],
                               env=daemons.env, cwd=daemons.work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(cli_ready.exists, timeout=60, what="the CLI run")
    daemon = daemons.start()
    wait_until(lambda: daemons.runs("busy"), what="the scheduled run")
    wait_until(lambda: daemons.runs("busy")[0].status != "running", what="the scheduled run's end")
    [refused] = daemons.runs("busy")
    assert refused.status == "skipped" and "already running" in (refused.error or "")
    cli_release.touch()
    assert cli_run.wait(timeout=60) == 0
    triggered = kansli("schedules", "trigger", "manual", env=daemons.env, cwd=daemons.work)
    assert triggered.returncode == 0, triggered.stderr
    assert "started by the daemon" in triggered.stdout
    wait_until(lambda: daemons.runs("manual") and daemons.runs("manual")[0].status == "running",
               what="the triggered run")
    second_cli = kansli("run", "sleeper", "--param", "seconds=1", env=daemons.env, cwd=daemons.work)
    assert second_cli.returncode == 5
    [skipped] = daemons.store.list_runs(robot="sleeper", trigger="cli", status="skipped")
    assert "already running by run " + daemons.runs("manual")[0].run_id in (skipped.error or "")
    assert daemons.stop(daemon) == 0
    assert daemons.runs("manual")[0].status == "cancelled"  # still sleeping: stopped after the 2 s grace
    actions = {a.action for a in list_operator_actions(daemons.store, "manual")}
    assert {"schedule.trigger", "schedule.trigger.started"} <= actions


def test_a_failed_run_sends_a_mail_without_secrets(
    daemons: Daemons, smtp_server: SmtpServer  # noqa: F811
) -> None:
    daemons.env.update({"KANSLI_SMTP__HOST": "127.0.0.1", "KANSLI_SMTP__PORT": str(smtp_server.port),
                        "KANSLI_SMTP__USERNAME": "kansli", "KANSLI_SMTP__PASSWORD": CANARY_PASSWORD})
    daemons.write(f'[[schedule]]\nid = "crash"\nrobot = "crashing"\nat = "{soon(2)}"\n'
                  f'params = {{ message = "login {CANARY_PASSWORD} for 19121212-1212 refused" }}\n'
                  'notify = ["it-drift@example.se"]\n')
    daemon = daemons.start()
    wait_until(lambda: smtp_server.inbox.messages, what="the mail")
    [mail] = smtp_server.inbox.messages
    [record] = daemons.runs("crash")
    assert record.status == "failed"
    assert mail["Subject"] == f"[kansli] crashing: misslyckad (körning {record.run_id})"
    body = mail.get_content()
    assert f"kansli logs {record.run_id}" in body and "RuntimeError" in body
    raw = smtp_server.inbox.raw[0]
    assert CANARY_PASSWORD.encode() not in raw and b"19121212-1212" not in raw
    assert b"1212-1212" not in raw
    assert daemons.stop(daemon) == 0


def test_a_queue_schedule_fires_its_consumer_when_a_scheduled_producer_gave_it_enough_work(
    daemons: Daemons,
) -> None:
    from shared.queue import list_queues

    marker = daemons.work / "handled.txt"
    daemons.write(f'[[schedule]]\nid = "consume"\nrobot = "consumer"\nqueue = "inbox"\nmin_items = 3\n'
                  f'check_every = "1s"\nparams = {{ marker = "{marker}" }}\n')
    daemon = daemons.start()
    assert kansli("run", "producer", "-p", "count=2", env=daemons.env, cwd=daemons.work).returncode == 0
    produced = datetime.now(UTC)
    wait_until(lambda: (next_run_times(daemons.store).get("consume") or produced) > produced
               + timedelta(seconds=2), what="two checks of the queue after 2 items")
    assert daemons.runs("consume") == []  # 2 ready items are fewer than min_items
    daemons.write(f'[[schedule]]\nid = "produce"\nrobot = "producer"\nat = "{soon(2)}"\n'
                  'params = { count = 5, start = 2 }\n', "producer.toml")
    daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: list_queues(daemons.store).get("inbox") == {"done": 7} and not [
        run for run in daemons.runs("consume") if run.status == "running"], timeout=60,
        what="the consumer doing the 7 items, and its runs ended")
    runs = daemons.runs("consume")
    assert sum(run.items_done for run in runs) == 7 and all(run.status == "succeeded" for run in runs), [
        (run.status, run.items_total, run.error) for run in runs]
    assert sorted(marker.read_text().split()) == sorted(f"m{n}" for n in range(7))
    [produced_run] = daemons.runs("produce")
    assert produced_run.status == "succeeded"
    listing = json.loads(kansli("schedules", "--json", env=daemons.env, cwd=daemons.work).stdout)
    assert {row["id"]: row["trigger"] for row in listing["schedules"]}["consume"] == (
        "queue inbox (>= 3 ready, checked every 1s)")
    assert daemons.stop(daemon) == 0
