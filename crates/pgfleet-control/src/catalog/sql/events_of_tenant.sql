SELECT at::text, kind, actor, detail::text FROM pgfleet.events WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2
