"""Cron schedules of jobs (owner: API and pages).

CONTRACT: ``schedules_tick(now=None) -> dict``: every job with a schedule that is due since
``schedule_last_at`` (django-celery-beat's crontab, in the job's time zone) gets a run
(trigger "schedule"), or, when a run of it is still open, a skip (audited, shown on its
page); each due time is acted on once, whoever else runs the tick.
"""
