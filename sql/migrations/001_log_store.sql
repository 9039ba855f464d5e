-- The log store: one row per logged query, the lines kept aside with their reason, the
-- ledger of files read (so that nothing is loaded twice), and a row per day and per run.

create table runs (
    run_id bigint not null,
    command varchar not null,
    started_at timestamp not null,
    finished_at timestamp,
    apimon_version varchar not null,
    config_hash varchar not null
);

create table queries (
    day date not null,
    event_time timestamp not null,
    received_time timestamp,
    sender varchar,
    envelope varchar not null,
    msg_type varchar,
    query_type varchar,
    service_id varchar,
    endpoint_id varchar,
    generation_id varchar,
    routing_key varchar,
    batch_size bigint,
    batch_idx bigint,
    project_key varchar,
    saved_model_id varchar,
    model_version varchar,
    full_model_id varchar,
    ignored boolean not null,
    ignore_reason varchar,
    failed boolean not null,
    error_type varchar,
    error_msg varchar,
    client_ip varchar,
    x_forwarded_for varchar,
    auth_user varchar,
    timing_pre_processing double,
    timing_wait double,
    timing_enrich double,
    timing_preparation double,
    timing_prediction double,
    timing_post_processing double,
    features json,
    result json,
    user_context json,
    api_context json,
    other_fields json,
    source varchar not null,
    source_file varchar not null,
    file_id bigint not null,
    line_no bigint not null,
    run_id bigint not null
);

create table quarantine (
    source varchar not null,
    source_file varchar not null,
    file_id bigint,
    line_no bigint,
    day date,
    reason varchar not null,
    raw varchar,
    run_id bigint not null
);

create table files (
    file_id bigint not null,
    source varchar not null,
    fingerprint varchar not null,
    path varchar not null,
    format varchar,
    compressed boolean not null,
    size_bytes bigint not null,
    mtime_ns bigint not null,
    offset_bytes bigint not null,
    lines bigint not null,
    first_run bigint not null,
    last_run bigint not null
);

create table ingest_sources (
    run_id bigint not null,
    source varchar not null,
    files_seen bigint not null,
    files_read bigint not null,
    lines_read bigint not null,
    loaded bigint not null,
    quarantined bigint not null
);

create table partitions (
    day date not null,
    "rows" bigint not null,
    quarantined bigint not null,
    sources varchar[] not null,
    files bigint not null,
    first_event timestamp,
    last_event timestamp,
    changed_run bigint not null
);

create table models (
    name varchar not null,
    service varchar not null,
    endpoint varchar not null,
    reference varchar not null,
    target varchar,
    version varchar,
    match_version boolean not null,
    columns json not null,
    rename json not null,
    config_hash varchar not null
);
