"""The peers every test of this folder shares: one Redis, the Django site on it, and two
heartwire nodes that use the site as their connect hook. Django is set up once per
process (its settings name the Redis), so these live for the whole session; each test
uses facilities of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peers import DjangoSite, HeartwireNode, RedisServer, stop


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("django")


@pytest.fixture(scope="session")
def redis(run_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(run_dir)
    yield server
    stop(server.process)


@pytest.fixture(scope="session")
def site(run_dir: Path, redis: RedisServer) -> Iterator[DjangoSite]:
    site = DjangoSite(run_dir, redis)
    from django.contrib.auth.models import Group, User

    staff, ops = Group.objects.create(name="staff"), Group.objects.create(name="ops")
    memberships = {"ada": [staff], "bob": [staff, ops], "eve": []}
    for name, groups in memberships.items():
        user = User.objects.create_user(name, password=f"{name}-password")
        user.groups.set(groups)
    yield site
    site.stop()


@pytest.fixture(scope="session")
def nodes(run_dir: Path, redis: RedisServer, site: DjangoSite) -> Iterator[list[HeartwireNode]]:
    # Visitors who are not logged in connect too, with the broadcast only.
    args = ["--redis", redis.url, "--redis-prefix", "hwtest", "--auth-url", site.hook_url, "--allow-anonymous"]
    started = [HeartwireNode(run_dir, name, args) for name in ("node-a", "node-b")]
    yield started
    for node in started:
        stop(node.process)
