{#-
  Context: step ('delete' or 'insert'), results (the relation of this run's results).
  Parameters: $days (the days whose endpoint results were judged again), $run_id.
  A result is kept, with the run that first judged it, while it stays the same.
-#}
{% macro same(a, b) -%}
{% for c in ['check_name', 'metric', 'scope', 'model', 'column_name', 'service', 'endpoint',
             'routing_key', 'evaluation_id', 'window_kind', 'window_start', 'window_end', 'day',
             'value', 'warning', 'error', 'below', 'status'] %}
{{ a }}.{{ c | ident }} is not distinct from {{ b }}.{{ c | ident }}{% if not loop.last %} and {% endif %}

{% endfor %}
{%- endmacro %}
{% if step == 'delete' %}
-- Results judged again that changed, or whose evaluation or day is gone.
delete from main.checks
where
    (
        scope <> 'endpoint'
        or day in (select unnest($days::date[]))
        or day not in (select day from main.partitions)
    )
    and not exists (
        select 1
        from {{ results }} as r
        where {{ same('r', 'checks') | indent(12) }}
    )
{% else %}
-- New and changed results, stamped with this run.
insert into main.checks
select r.*, now()::timestamp as evaluated_at, $run_id as run_id
from {{ results }} as r
where not exists (
    select 1
    from main.checks as c
    where {{ same('r', 'c') | indent(8) }}
)
{% endif %}
