-- What the result cache needs to know about one statement, asked of the tenant's own session (its
-- search_path resolves the names as the statement will). Run once per statement text and tenant.
--   $1 text[]  relation names, each part quoted ("s"."t" or "t")
--   $2 text[]  function schemas (NULL: unqualified)
--   $3 text[]  function names
--   $4 text    what the statement does to its targets: read (no trigger, no referential action),
--              insert (no referential action follows),
--              update (ON UPDATE actions), delete (ON DELETE actions), truncate (every referencing
--              table may be emptied by CASCADE) or any; tables reached through an action may
--              take further ON UPDATE or ON DELETE actions
--   $5 text[]  columns of the statement's one relation that its row keys name
-- Returns one row:
--   unresolved  names that are not relations here (a read naming one is not cached)
--   reads       the relations a read depends on: the named ones, what views read (recursively),
--               partitions and parents
--   read_ok     no foreign table (its data changes where pgfleet cannot see), no sequence
--               (nextval() changes it without a write)
--   views       the definitions of the views among `reads` (built-in functions they call leave no
--               trace in pg_depend: the cache parses these and asks about their functions again)
--   immutable   every function named exists here and every overload of it is IMMUTABLE
--   writes      the relations a write may change: the targets, the base tables of views written
--               through, partitions and parents, and tables whose foreign keys cascade, set null
--               or set default from them (recursively)
--   target      the first relation named (the one relation of a statement with row keys)
--   key_types   for each column of $5: its type when row keys of it can be compared (int2, int4,
--               int8, uuid, bool; text for text and varchar under a deterministic collation), the
--               column is not generated, the relation is a table and no referential action of
--               the write comes back to it; '' otherwise
-- Every catalog object is named with its schema: a tenant's own objects on the search_path can
-- never stand in for them.
--   everything  a trigger that fires for what is done to one of them, a rule on one of them, or a
--               function of the tenant's own that is VOLATILE: it may change anything, so nothing
--               cached is trusted after it
with recursive
named as (
    select n, pg_catalog.to_regclass(n) as rel from pg_catalog.unnest($1::text[]) as n
),
reads(rel) as (
    select rel from named where rel is not null
    union
    select x.rel
    from reads r,
    lateral (
        select d.refobjid::regclass
        from pg_catalog.pg_rewrite w
        join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass and d.objid = w.oid
        where w.ev_class = r.rel and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.refobjid <> r.rel
        union all
        select i.inhrelid::regclass from pg_catalog.pg_inherits i where i.inhparent = r.rel
        union all
        select i.inhparent::regclass from pg_catalog.pg_inherits i where i.inhrelid = r.rel
    ) as x(rel)
),
writes(rel, act) as (
    select rel, $4::text from named where rel is not null
    union
    select x.rel, x.act
    from writes r,
    lateral (
        select d.refobjid::regclass, r.act
        from pg_catalog.pg_rewrite w
        join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass and d.objid = w.oid
        where w.ev_class = r.rel and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.refobjid <> r.rel
        union all
        select i.inhrelid::regclass, r.act from pg_catalog.pg_inherits i where i.inhparent = r.rel
        union all
        select i.inhparent::regclass, r.act from pg_catalog.pg_inherits i where i.inhrelid = r.rel
        union all
        select c.conrelid::regclass, 'any'
        from pg_catalog.pg_constraint c
        where c.contype = 'f' and c.confrelid = r.rel
          and (r.act = 'truncate'
               or (r.act in ('delete', 'any') and c.confdeltype in ('c', 'n', 'd'))
               or (r.act in ('update', 'any') and c.confupdtype in ('c', 'n', 'd')))
    ) as x(rel, act)
),
functions as (
    select f.schema, f.name,
           pg_catalog.array_agg(p.provolatile) filter (where p.oid is not null) as volatility,
           pg_catalog.bool_or(p.provolatile = 'v' and n.nspname not in ('pg_catalog', 'information_schema')) as own_volatile
    from rows from (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) as f(schema, name)
    left join pg_catalog.pg_proc p
      on p.proname = f.name
     and (case when f.schema is null then pg_catalog.pg_function_is_visible(p.oid)
               else p.pronamespace = (select oid from pg_catalog.pg_namespace where nspname = f.schema) end)
    left join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    group by f.schema, f.name
)
select
    coalesce((select pg_catalog.array_agg(n) from named where rel is null), '{}') as unresolved,
    coalesce((select pg_catalog.array_agg(rel::oid) from reads), '{}') as reads,
    not exists (
        select from reads r join pg_catalog.pg_class c on c.oid = r.rel where c.relkind in ('f', 'S')
    ) as read_ok,
    coalesce((
        select pg_catalog.array_agg(pg_catalog.pg_get_viewdef(r.rel))
        from reads r join pg_catalog.pg_class c on c.oid = r.rel
        where c.relkind in ('v', 'm')
    ), '{}') as views,
    coalesce((select pg_catalog.bool_and(volatility is not null and 'i' = all(volatility)) from functions), true) as immutable,
    coalesce((select pg_catalog.array_agg(distinct rel::oid) from writes), '{}') as writes,
    exists (
        -- tgtype bits: 4 INSERT, 8 DELETE, 16 UPDATE, 32 TRUNCATE
        select
        from writes w
        join pg_catalog.pg_trigger t on t.tgrelid = w.rel
        where not t.tgisinternal
          and (w.act = 'any'
               or (w.act = 'insert' and t.tgtype::int & 4 <> 0)
               or (w.act = 'delete' and t.tgtype::int & 8 <> 0)
               or (w.act = 'update' and t.tgtype::int & 16 <> 0)
               or (w.act = 'truncate' and t.tgtype::int & 32 <> 0))
    )
    or exists (select from pg_catalog.pg_rewrite w where w.ev_class in (select rel from writes) and w.rulename <> '_RETURN')
    or coalesce((select pg_catalog.bool_or(own_volatile) from functions), false) as everything,
    (select rel::oid from named where rel is not null limit 1) as target,
    coalesce((
        select pg_catalog.array_agg(coalesce((
            select case
                       when t.typname in ('int2', 'int4', 'int8', 'uuid', 'bool') then t.typname::text
                       when t.typname in ('text', 'varchar') and coalesce(co.collisdeterministic, true) then 'text'
                   end
            from named n
            join pg_catalog.pg_class c on c.oid = n.rel and c.relkind in ('r', 'p')
            -- a generated column moves with the columns it is computed from
            join pg_catalog.pg_attribute a
              on a.attrelid = c.oid and a.attname = k and not a.attisdropped and a.attgenerated = ''
            join pg_catalog.pg_type t on t.oid = a.atttypid
            left join pg_catalog.pg_collation co on co.oid = a.attcollation
            -- a referential action that reaches the target again changes rows of other values
            where not exists (select from writes w where w.rel = n.rel and w.act = 'any' and $4::text <> 'any')
            limit 1
        ), '') order by i)
        from pg_catalog.unnest($5::text[]) with ordinality as u(k, i)
    ), '{}') as key_types
