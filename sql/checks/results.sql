{#-
  Context: parts (the values to judge: 'model', 'endpoint', 'warehouse'; their templates
  take the parameters $labelled, $days, $first, $last), rules (the relation of checks:
  check_name, metric, model, column_name, service, endpoint, warning, error, below,
  specificity).
-#}
-- Each check's result: a value judged against the most specific check that applies to it
-- (one naming a model and a column wins over one naming a column, then a model, then none).
-- A value reaches a threshold when it is at or above it (at or below it for `below` checks).
with check_values as (
{% for part in parts %}
    select * from (
        {% filter indent(8) %}{% include 'checks/' ~ part ~ '_values.sql' %}{% endfilter %}
    )
{% if not loop.last %}
    union all
{% endif %}
{% endfor %}
),

matched as (
    select
        v.*,
        r.check_name,
        r.warning,
        r.error,
        r.below,
        case when not isnan(v."value") then v."value" end as judged_value
    from check_values as v
    inner join {{ rules }} as r
        on r.metric = v.metric
        and (
            r.model is null
            or (v.scope in ('model', 'column') and r.model = v.model)
            or (v.scope = 'endpoint' and r.service = v.service and r.endpoint = v.endpoint)
        )
        and (r.column_name is null or r.column_name = v.column_name)
    qualify row_number() over (
        partition by
            v.metric, v.scope, v.model, v.column_name, v.service, v.endpoint, v.routing_key,
            v.evaluation_id, v.day
        order by r.specificity desc, r.check_name
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
    judged_value as "value",
    warning,
    error,
    below,
    case
        when judged_value is null then 'no data'
        when error is not null and (
            (below and judged_value <= error) or (not below and judged_value >= error)
        ) then 'error'
        when warning is not null and (
            (below and judged_value <= warning) or (not below and judged_value >= warning)
        ) then 'warning'
        else 'healthy'
    end as status
from matched
