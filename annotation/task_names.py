"""The names of the annotation tasks that services send; `annotation.tasks` declares its tasks
under these names.

Services send a task by name (`config.celery.enqueue_on_commit`) and never import the task
module: that module imports the services, and the dependency stays one-way (an import-linter
contract in pyproject.toml holds it).
"""

BATCH_IMPORT_RUN = "annotation.tasks.batch_import_run"
PROJECT_STATS_REFRESH = "annotation.tasks.project_stats_refresh"
