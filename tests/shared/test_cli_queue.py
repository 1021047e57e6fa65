"""``kansli queue``: list, show, retry and forget, through the real CLI; operator actions audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.audit import AuditLog
from shared.queue import WorkQueue, list_queues
from shared.runner import Runner
from shared.settings import load_settings
from tests.conftest import kansli

SAMPLE = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}


@pytest.fixture
def runner(kansli_env: Path) -> Runner:
    return Runner(load_settings(), robots_package="tests.sample_robots")


def test_queue_commands_list_show_forget_and_refuse_what_they_do_not_know(
    runner: Runner, kansli_env: Path
) -> None:
    runner.run("producer", {"count": 2})
    runner.run("consumer", {})
    listed = kansli("queue", "--json", cwd=kansli_env, env=SAMPLE)
    assert json.loads(listed.stdout) == {"inbox": {"done": 2}}
    table = kansli("queue", "show", "inbox", cwd=kansli_env, env=SAMPLE)
    assert table.returncode == 0 and "m1" in table.stdout and "done" in table.stdout
    for args, says in [(("queue", "show", "nosuch"), "no queue named 'nosuch'"),
                       (("queue", "show", "inbox", "--status", "klar"), "expected one of pending"),
                       (("queue", "retry", "inbox", "m0"), "only failed items are retried"),
                       (("queue", "retry", "inbox"), "name the key(s)"),
                       (("queue", "forget", "inbox", "m9"), "has no key 'm9'")]:
        refused = kansli(*args, cwd=kansli_env, env=SAMPLE)
        assert (refused.returncode, says in refused.stderr) == (2, True), (args, refused.stderr)
    forgotten = kansli("queue", "forget", "inbox", "m0", "--json", cwd=kansli_env, env=SAMPLE)
    assert json.loads(forgotten.stdout) == {"queue": "inbox", "forgotten": "m0", "was": "done"}
    assert list_queues(runner.store)["inbox"] == {"done": 1}
    events = [e for e in AuditLog.from_settings(runner.settings).search() if e["event"] == "queue.forget"]
    assert [e["data"]["key"] for e in events] == ["m0"]


def test_queue_item_data_is_shown_redacted(runner: Runner, kansli_env: Path) -> None:
    WorkQueue(runner.store, "inbox").enqueue("x", {"personnummer": "19811218-9876"})
    shown = kansli("queue", "show", "inbox", "--json", cwd=kansli_env, env=SAMPLE)
    assert "811218" not in shown.stdout and json.loads(shown.stdout)[0]["key"] == "x"
