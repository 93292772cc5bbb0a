-- A rollout whose process died (kill -9, a lost machine) stays 'running' no more: the next
-- `migrate --all` finds its lock free and marks it 'abandoned'.
ALTER TABLE pgfleet.rollouts DROP CONSTRAINT rollouts_state_check;
ALTER TABLE pgfleet.rollouts ADD CONSTRAINT rollouts_state_check
    CHECK (state IN ('running', 'done', 'failed', 'abandoned'));
