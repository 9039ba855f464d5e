-- The model versions that answered {{ model.name }}'s endpoint, per day.
select
    day,
    model_version,
    version_matches,
    count(*) as queries
from {{ schema | ident }}.flat
group by day, model_version, version_matches
