{#- Context: schema, reference_columns (name, kind, logged). -#}
-- How {{ model.name }}'s logged features compare with its reference: a reference column
-- never logged, a logged feature absent from the reference, or both present.
with expected as (
{% for c in reference_columns %}
    select
        {{ c.name | literal }} as column_name,
        {{ c.logged | literal }} as logged_as,
        {{ c.kind | literal }} as kind
{{ "    union all" if not loop.last }}
{% endfor %}
{% if not reference_columns %}
    select
        cast(null as varchar) as column_name,
        cast(null as varchar) as logged_as,
        cast(null as varchar) as kind
    where false
{% endif %}
),

seen as (
    select logged_name, sum(queries) as queries, min(day) as first_day, max(day) as last_day
    from {{ schema | ident }}.logged_keys
    group by logged_name
)

select
    coalesce(expected.column_name, seen.logged_name) as column_name,
    coalesce(expected.logged_as, seen.logged_name) as logged_as,
    expected.kind,
    coalesce(seen.queries, 0) as queries_logged,
    seen.first_day,
    seen.last_day,
    case
        when seen.logged_name is null then 'never logged'
        when expected.column_name is null then 'not in reference'
        else 'ok'
    end as status
from expected
full outer join seen on seen.logged_name = expected.logged_as
