-- The running rollout, if any: id and owner.
SELECT id, owner FROM pgfleet.rollouts WHERE state = 'running'
