{% from 'report/_macros.sql' import model_windows %}
{#- Parameters: $model, $limit. -#}
-- PSI per window and column, for the $limit columns with the highest PSI; a window with
-- too few rows to judge has none. `columns` counts every monitored column.
with windows as (
    {{ model_windows() | indent(4) }}
),

psi as (
    select
        w.window_start,
        c.column_name,
        case when w.status <> 'not enough data' then c.psi end as psi
    from windows as w
    inner join main.column_drift as c on c.evaluation_id = w.evaluation_id
),

ranking as (
    select
        column_name,
        row_number() over (order by max(psi) desc nulls last, column_name) as place,
        count(*) over () as columns
    from psi
    group by column_name
)

select p.window_start, p.column_name, p.psi, r.place, r.columns
from psi as p
inner join ranking as r on r.column_name = p.column_name
where r.place <= $limit
order by r.place, p.window_start
