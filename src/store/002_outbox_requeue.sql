-- Version 2. `auditd alerts retry` gives a dead row a fresh set of attempts: its age for the
-- dead-letter rule is counted from the requeue, not from the alert.
ALTER TABLE outbox ADD COLUMN requeued_at INTEGER;
