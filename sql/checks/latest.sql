{#- Parameter: $model (only this model and its endpoint; NULL: all). -#}
-- The current result of each check and subject. Model and column checks read the model's
-- windows of its finest kind (day, then week, month, all): the newest one that had data,
-- else the newest one. Endpoint and log-store checks read the newest day that had data,
-- else the newest day.
with kinds as (
    select
        *,
        case window_kind when 'day' then 0 when 'week' then 1 when 'month' then 2 else 3 end
            as kind_rank
    from main.checks
),

finest as (
    select model, min(kind_rank) as kind_rank
    from kinds
    where evaluation_id is not null
    group by model
),

chosen as (
    select k.*
    from kinds as k
    left join finest as f on f.model = k.model
    where
        (k.evaluation_id is null or k.kind_rank = f.kind_rank)
        and (
            $model::varchar is null
            or k.model = $model
            or (k.scope = 'endpoint' and exists (
                select 1 from main.models as m
                where m.name = $model and m.service = k.service and m.endpoint = k.endpoint
            ))
        )
    qualify row_number() over (
        partition by
            k.check_name, k.scope, k.model, k.column_name, k.service, k.endpoint, k.routing_key
        order by
            k.status = 'no data',
            coalesce(k.window_end, k.day) desc,
            k.window_start desc
    ) = 1
)

select
    check_name,
    metric,
    scope,
    model,
    column_name,
    service,
    endpoint,
    routing_key,
    evaluation_id,
    window_kind,
    window_start,
    window_end,
    day,
    "value",
    warning,
    error,
    below,
    status,
    evaluated_at,
    run_id
from chosen
order by
    service, endpoint, model nulls first, scope, check_name, column_name, routing_key
