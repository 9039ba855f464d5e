{#-
  Counts, per day and feature, the values that are missing and those of the wrong type,
  for the days listed in `build_days`. Context: model, features (name, logged, path, kind).
-#}
{% import "views/_macros.sql" as m %}
-- Per day and feature of {{ model.name }}: queries, missing values, values of the wrong type.
with logged as (
    {{ m.logged_queries(model, "build_days") | indent(4) }}
),

extracted as (
    select
        day,
        features,
{% for f in features %}
        {{ m.feature_json(f) | indent(8) }} as {{ ("f" ~ loop.index) | ident }}{{ "," if not loop.last }}
{% endfor %}
    from logged
),

per_day as (
    select
        day,
        count(*) as n,
{% for f in features %}
        count(*) filter (where {{ ("f" ~ loop.index) | ident }} is null or {{ ("f" ~ loop.index) | ident }} = 'null')
            as {{ ("missing_" ~ loop.index) | ident }},
        count(*) filter (where {{ m.wrong_type("f" ~ loop.index, f.kind, m.listed) }})
            as {{ ("wrong_" ~ loop.index) | ident }}{{ "," if not loop.last }}
{% endfor %}
    from extracted
    group by day
)

{% for f in features %}
select
    day,
    {{ f.name | literal }} as column_name,
    {{ f.logged | literal }} as logged_as,
    {{ f.kind | literal }} as kind,
    n as queries,
    {{ ("missing_" ~ loop.index) | ident }} as missing,
    {{ ("wrong_" ~ loop.index) | ident }} as wrong_type
from per_day
{{ "union all" if not loop.last }}
{% endfor %}
