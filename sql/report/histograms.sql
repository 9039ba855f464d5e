{% from 'report/_macros.sql' import model_windows %}
{#- Parameters: $model, $limit. -#}
-- Reference and current counts per bin in a model's newest window that had enough rows,
-- for its prediction and its $limit most drifting other columns (highest PSI first);
-- `drifting_columns` counts all its drifting columns but the prediction.
with windows as (
    {{ model_windows() | indent(4) }}
),

newest as (
    select *
    from windows
    where status <> 'not enough data'
    order by window_end desc, window_start desc
    limit 1
),

columns as (
    select
        c.column_name,
        c.role,
        c.kind,
        c.psi,
        c.drifted,
        row_number() over (
            order by c.role = 'prediction' desc, c.psi desc nulls last, c.column_name
        ) as place
    from main.column_drift as c
    inner join newest as n on n.evaluation_id = c.evaluation_id
    where c.drifted or c.role = 'prediction'
),

shown as (
    select *
    from columns
    where
        role = 'prediction'
        or place <= $limit + (select count(*) from columns where role = 'prediction')
)

select
    n.window_kind,
    n.window_start,
    n.window_end,
    s.column_name,
    s.role,
    s.kind,
    s.psi,
    s.drifted,
    h.bin,
    h.label,
    h.lower,
    h.upper,
    h.reference_count,
    h.current_count,
    (select count(*) from columns where drifted and role <> 'prediction') as drifting_columns
from shown as s
cross join newest as n
inner join main.histograms as h
    on h.evaluation_id = n.evaluation_id and h.column_name = s.column_name
where h.bin >= 0 or h.reference_count + h.current_count > 0
order by s.place, h.bin < 0, abs(h.bin)
