-- Checks: the result of every check for each evaluation (model and column checks) or each
-- day (endpoint and log-store checks), and the runs that judged them, so that a refresh
-- judges again only what changed.

create table checks (
    check_name varchar not null,
    metric varchar not null,
    scope varchar not null,
    model varchar,
    column_name varchar,
    service varchar,
    endpoint varchar,
    routing_key varchar,
    evaluation_id bigint,
    window_kind varchar,
    window_start date,
    window_end date,
    day date,
    "value" double,
    warning double,
    error double,
    below boolean not null,
    status varchar not null,
    evaluated_at timestamp not null,
    run_id bigint not null
);

create table check_runs (
    run_id bigint not null,
    rules_hash varchar not null,
    last_day date,
    evaluated_at timestamp not null
);
