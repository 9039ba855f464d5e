-- Recounts the days listed in `changed_days`: rows loaded, lines quarantined, which
-- sources and how many files fed each day. Parameter: the run that changed them.
insert into partitions
with loaded as (
    select
        day,
        count(*) as n,
        list(distinct source) as sources,
        count(distinct file_id) as files,
        min(event_time) as first_event,
        max(event_time) as last_event
    from queries
    where day in (select day from changed_days)
    group by day
),

kept_aside as (
    select day, count(*) as n
    from quarantine
    where day in (select day from changed_days)
    group by day
)

select
    coalesce(loaded.day, kept_aside.day) as day,
    coalesce(loaded.n, 0) as "rows",
    coalesce(kept_aside.n, 0) as quarantined,
    coalesce(list_sort(loaded.sources), []) as sources,
    coalesce(loaded.files, 0) as files,
    loaded.first_event,
    loaded.last_event,
    ? as changed_run
from loaded
full outer join kept_aside on kept_aside.day = loaded.day
