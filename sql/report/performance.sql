{% from 'report/_macros.sql' import model_windows %}
{#- Parameter: $model. -#}
-- Realised and estimated performance of a model's windows, oldest first.
with windows as (
    {{ model_windows() | indent(4) }}
)

select
    p.metric,
    p.source,
    w.window_start,
    w.window_end,
    p."value",
    p.band_low,
    p.band_high,
    p."rows",
    p.coverage
from windows as w
inner join main.performance as p on p.evaluation_id = w.evaluation_id
where p."value" is not null and not isnan(p."value")
order by p.metric, p.source, w.window_start
