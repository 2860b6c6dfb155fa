"""The names of the tasks that annotation's services send; `annotation.tasks` declares its tasks
under these names.

Services send a task by name (`config.celery.enqueue_on_commit`) and never import the task
module: that module imports the services, and the dependency stays one-way (an import-linter
contract in pyproject.toml holds it).
"""

BATCH_IMPORT_RUN = "annotation.tasks.batch_import_run"
PROJECT_STATS_REFRESH = "annotation.tasks.project_stats_refresh"
# rewardtrain's pool scoring: annotation never imports rewardtrain. Sent after an import, so new
# pairs get the published version's p(a wins) and uncertainty (it does nothing while no version is
# published).
POOL_SCORE = "rewardtrain.tasks.pool_score"
