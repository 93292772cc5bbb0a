-- Running rollouts whose process died: their lock is free, so this session takes it. Rows locked by
-- this very session (a rollout running in this process: advisory locks are reentrant) are
-- skipped. $1 the lock class.
SELECT id FROM pgfleet.rollouts r
WHERE CASE WHEN r.state = 'running'
            AND NOT EXISTS (SELECT FROM pg_locks l
                            WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()
                              AND l.classid = $1::int4::oid
                              AND l.objid = (r.id % 2147483647)::int4::oid
                              AND l.objsubid = 2)
           THEN pg_try_advisory_lock($1::int4, (r.id % 2147483647)::int4)
           ELSE false END
