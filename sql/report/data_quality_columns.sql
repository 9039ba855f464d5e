{#- Context: model (its schema). Parameter: $limit. -#}
-- The features with the most missing or wrong-typed values over the whole range.
select
    column_name,
    sum(missing) as missing,
    sum(wrong_type) as wrong_type,
    sum(queries) as "values"
from {{ model | ident }}.data_quality
group by column_name
having sum(missing) + sum(wrong_type) > 0
order by sum(missing) + sum(wrong_type) desc, column_name
limit $limit
