{#- Parameters: $days (the days to judge), $first and $last (the first and last of them). -#}
-- Endpoint checks per deployment (service, endpoint, routing key) and day: the p95
-- response time and failure rate of health_daily, and the drop in requests against the
-- same weekday a week before.
with judged_days as (
    select unnest($days::date[]) as day
),

health as (
    select day, service_id, endpoint_id, routing_key, requests, failure_rate, p95_ms
    from main.health_daily
    where day between $first::date - 7 and $last::date
),

-- The newest day of the log store may still be receiving queries: it and the day a week
-- before are compared up to the same time of day.
newest as (
    select day, last_event - day::timestamp as cutoff
    from main.partitions
    where "rows" > 0
    order by day desc
    limit 1
),

until_cutoff as (
    select q.day, q.service_id, q.endpoint_id, q.routing_key, count(*) as requests
    from main.queries as q
    inner join newest as n on q.day in (n.day, n.day - 7)
    where q.event_time - q.day::timestamp <= n.cutoff
    group by q.day, q.service_id, q.endpoint_id, q.routing_key
),

counts as (
    select day, service_id, endpoint_id, routing_key, requests, false as partial
    from health
    union all
    select day, service_id, endpoint_id, routing_key, requests, true
    from until_cutoff
),

deployments as (
    select distinct service_id, endpoint_id, routing_key
    from health
),

pairs as (
    select
        j.day,
        d.service_id,
        d.endpoint_id,
        d.routing_key,
        coalesce(j.day = n.day, false) as partial
    from judged_days as j
    cross join deployments as d
    left join newest as n on n.day = j.day
),

volumes as (
    select
        p.day,
        p.service_id,
        p.endpoint_id,
        p.routing_key,
        coalesce(this_week.requests, 0) as requests,
        coalesce(week_before.requests, 0) as requests_before
    from pairs as p
    left join counts as this_week
        on this_week.day = p.day
        and this_week.partial = p.partial
        and this_week.service_id is not distinct from p.service_id
        and this_week.endpoint_id is not distinct from p.endpoint_id
        and this_week.routing_key is not distinct from p.routing_key
    left join counts as week_before
        on week_before.day = p.day - 7
        and week_before.partial = p.partial
        and week_before.service_id is not distinct from p.service_id
        and week_before.endpoint_id is not distinct from p.endpoint_id
        and week_before.routing_key is not distinct from p.routing_key
),

endpoint_metrics as (
    select day, service_id, endpoint_id, routing_key, 'p95_latency_ms' as metric, p95_ms as "value"
    from health
    where day in (select day from judged_days)
    union all
    select day, service_id, endpoint_id, routing_key, 'failure_rate', failure_rate
    from health
    where day in (select day from judged_days)
    union all
    select
        day,
        service_id,
        endpoint_id,
        routing_key,
        'volume_drop',
        case when requests_before > 0 then 1 - requests / requests_before end
    from volumes
    where requests > 0 or requests_before > 0
)

select
    metric,
    'endpoint' as scope,
    null::varchar as model,
    null::varchar as column_name,
    service_id as service,
    endpoint_id as endpoint,
    routing_key,
    null::bigint as evaluation_id,
    null::varchar as window_kind,
    null::date as window_start,
    null::date as window_end,
    day,
    "value"::double as "value"
from endpoint_metrics
