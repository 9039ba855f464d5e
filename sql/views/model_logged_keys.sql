{% import "views/_macros.sql" as m %}
-- The feature names {{ model.name }}'s queries were logged with, per day, for the days in
-- `build_days`: what the schema check compares with the reference.
with logged as (
    {{ m.logged_queries(model, "build_days") | indent(4) }}
)

select day, logged_name, count(*) as queries
from (select day, unnest(json_keys(features)) as logged_name from logged)
group by day, logged_name
