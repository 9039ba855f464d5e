{#- Parameters: $service, $endpoint. -#}
-- Daily traffic of one endpoint per routing key: requests, failed queries, p95 response time.
select day, routing_key, requests, failed, p95_ms
from main.health_daily
where service_id = $service and endpoint_id = $endpoint
order by day, routing_key
