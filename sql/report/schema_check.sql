{#- Context: model (its schema). -#}
-- The features whose logged name or presence differs from the reference, and a count of all.
select column_name, logged_as, kind, status, queries_logged, first_day, last_day
from {{ model | ident }}.schema_check
order by status = 'ok', column_name
