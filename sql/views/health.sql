{#- Context: grain ('hour' or 'day'). -#}
{% import "views/_macros.sql" as m %}
-- Health of each endpoint per {{ grain }}: volume, ignored and failed queries, response-time
-- percentiles (answered queries), distinct clients. All query types are counted.
with timed as (
    select
        {{ "date_trunc('hour', event_time)" if grain == 'hour' else "day" }} as period,
        service_id,
        endpoint_id,
        routing_key,
        ignored,
        failed,
        client_ip,
        {{ m.response_time_ms() | indent(8) }} as response_time_ms
    from main.queries
)

select
    period as {{ grain | ident }},
    service_id,
    endpoint_id,
    routing_key,
    count(*) as requests,
    count(*) filter (where ignored) as ignored,
    count(*) filter (where failed) as failed,
    count(*) filter (where failed) / count(*) as failure_rate,
    quantile_cont(response_time_ms, 0.5) filter (where not failed) as p50_ms,
    quantile_cont(response_time_ms, 0.95) filter (where not failed) as p95_ms,
    quantile_cont(response_time_ms, 0.99) filter (where not failed) as p99_ms,
    count(distinct client_ip) as clients
from timed
group by period, service_id, endpoint_id, routing_key
