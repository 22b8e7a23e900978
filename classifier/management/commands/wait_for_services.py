"""Wait until what a container needs answers: the database, Redis (when REDIS_URL is set), and optionally the
migrations and the configured models' compiled artifacts. For compose and Kubernetes, where a replica may start
before PostgreSQL takes connections or before the one-shot migrate-and-compile job has finished."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from accounts.windows import window_store_from_settings
from classifier.runtime.registry import artifact_store, configured_sources, plan_artifact_key, plan_for
from classifier.runtime_settings import runtime_config
from classifier.selectors import database_problem


class Command(BaseCommand):
    help = (
        "Wait for the database and Redis (and with options the migrations and compiled models); fail after --timeout."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait in all (default 300)")
        parser.add_argument("--migrated", action="store_true", help="also wait until every migration is applied")
        parser.add_argument(
            "--compiled", action="store_true", help="also wait until every configured model's artifact is stored"
        )

    def handle(self, *args, timeout, migrated, compiled, **options):
        deadline = time.monotonic() + timeout
        reported = None
        while True:
            problems = self.problems(migrated=migrated, compiled=compiled)
            if not problems:
                self.stdout.write("services ready")
                return
            if time.monotonic() > deadline:
                raise CommandError(f"gave up after {timeout:g} s waiting for: {'; '.join(problems)}")
            if problems != reported:
                self.stderr.write(f"waiting for: {'; '.join(problems)}")
                reported = problems
            time.sleep(1.0)

    def problems(self, *, migrated: bool, compiled: bool) -> list[str]:
        """What is not ready yet, in words; empty when everything asked for is."""
        problem = database_problem()
        if problem is not None:
            connections.close_all()
            return [f"the database ({problem})"]
        problems = []
        problem = window_store_from_settings().problem()
        if problem is not None:
            problems.append(f"Redis ({problem})")
        if migrated:
            executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
            unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if unapplied:
                problems.append(f"{len(unapplied)} migration(s) to apply")
        if compiled:
            problems += missing_artifacts()
        return problems


def missing_artifacts() -> list[str]:
    """The configured models whose compiled artifact is not in the artifact store yet."""
    config = runtime_config()
    store = artifact_store(config)
    missing = []
    for source in configured_sources(config):
        plan = plan_for(source, config)
        if not plan.compiled:
            continue
        key = plan_artifact_key(source, plan)
        if store.read(key) is None:
            missing.append(f"the compiled artifact of {source.name}")
    return missing
