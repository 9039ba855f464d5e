-- Who calls each endpoint, per day: requests per client address and per sending API node,
-- with the first and last time each was seen that day.
select
    day,
    service_id,
    endpoint_id,
    client_ip,
    sender,
    count(*) as requests,
    count(*) filter (where failed) as failed,
    min(event_time) as first_seen,
    max(event_time) as last_seen
from main.queries
group by day, service_id, endpoint_id, client_ip, sender
