{% from 'report/_macros.sql' import model_windows %}
{#- Parameter: $model. -#}
-- A model's windows, oldest first: rows, verdict, drift share, and the drift model's
-- accuracy with its interval when there is one.
with windows as (
    {{ model_windows() | indent(4) }}
)

select
    w.window_kind,
    w.window_start,
    w.window_end,
    w.current_rows,
    w.status,
    w.drift_share,
    d.accuracy,
    d.accuracy_low,
    d.accuracy_high
from windows as w
left join main.drift_models as d on d.evaluation_id = w.evaluation_id
order by w.window_start
