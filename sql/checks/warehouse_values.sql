-- Lines kept aside per day of the log store; a line whose time could not be read counts
-- on the day it was read.
with kept_aside as (
    select coalesce(q.day, r.started_at::date) as day, count(*) as lines
    from main.quarantine as q
    left join main.runs as r on r.run_id = q.run_id
    group by coalesce(q.day, r.started_at::date)
),

store_days as (
    select day from main.partitions
    union
    select day from kept_aside where day is not null
)

select
    'quarantined_lines' as metric,
    'warehouse' as scope,
    null::varchar as model,
    null::varchar as column_name,
    null::varchar as service,
    null::varchar as endpoint,
    null::varchar as routing_key,
    null::bigint as evaluation_id,
    null::varchar as window_kind,
    null::date as window_start,
    null::date as window_end,
    d.day,
    coalesce(k.lines, 0)::double as "value"
from store_days as d
left join kept_aside as k on k.day = d.day
