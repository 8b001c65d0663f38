"""Job platform plumbing shared by the API, worker and trainer: Celery app, task runtime,
enqueueing and the stale-job reaper."""
