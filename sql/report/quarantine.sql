-- Lines kept aside per day and kind of reason; a line whose time could not be read counts
-- on the day it was read.
select
    coalesce(q.day, r.started_at::date) as day,
    split_part(q.reason, ':', 1) as reason,
    count(*) as lines
from main.quarantine as q
left join main.runs as r on r.run_id = q.run_id
group by all
order by day, reason
