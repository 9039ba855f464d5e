{#- Shared pieces of the report's queries. -#}

{#- A model's evaluations against its reference, of the finest window kind it has. -#}
{% macro model_windows() -%}
select e.*
from main.evaluations as e
where e.model = $model and e.baseline = 'reference'
qualify
    case e.window_kind when 'day' then 0 when 'week' then 1 when 'month' then 2 else 3 end
    = min(case e.window_kind when 'day' then 0 when 'week' then 1 when 'month' then 2 else 3 end)
        over ()
{%- endmacro %}
