{#- Context: model (its schema). -#}
-- Per day, the feature values that were missing or of the wrong type, and all values.
select day, sum(missing) as missing, sum(wrong_type) as wrong_type, sum(queries) as "values"
from {{ model | ident }}.data_quality
group by day
order by day
