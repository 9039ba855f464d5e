-- Drift evaluation: the reference profile of each model (bins fitted once on the training
-- data), per-day histograms of the logged values in those bins, and the evaluation store
-- (one row per evaluation, per column, per bin).

create table profiles (
    model varchar not null,
    profile_hash varchar not null,
    fitted_run bigint not null
);

create table profile_columns (
    model varchar not null,
    column_name varchar not null,
    role varchar not null,
    kind varchar not null,
    reference_column varchar,
    reference_rows bigint,
    reference_nulls bigint,
    reference_std double,
    unseen_bin integer
);

create table profile_bins (
    model varchar not null,
    column_name varchar not null,
    bin integer not null,
    label varchar not null,
    lower double,
    upper double,
    category varchar,
    reference_count bigint not null
);

create table profile_categories (
    model varchar not null,
    column_name varchar not null,
    category varchar not null,
    bin integer not null,
    reference_count bigint not null
);

create table histograms_daily (
    model varchar not null,
    model_version varchar,
    day date not null,
    column_name varchar not null,
    bin integer not null,
    "count" bigint not null
);

create table histogram_days (
    model varchar not null,
    day date not null,
    built_run bigint not null
);

create table evaluations (
    evaluation_id bigint not null,
    model varchar not null,
    model_version varchar,
    window_kind varchar not null,
    window_start date not null,
    window_end date not null,
    baseline varchar not null,
    current_rows bigint not null,
    reference_rows bigint,
    features bigint not null,
    drifting_columns bigint,
    drift_share double,
    status varchar not null,
    created_at timestamp not null,
    apimon_version varchar not null,
    config_hash varchar not null,
    run_id bigint not null
);

create table column_drift (
    evaluation_id bigint not null,
    column_name varchar not null,
    role varchar not null,
    kind varchar not null,
    baseline varchar not null,
    reference_rows bigint,
    current_rows bigint,
    psi double,
    ks_statistic double,
    ks_pvalue double,
    wasserstein double,
    wasserstein_norm double,
    js_distance double,
    chi2_statistic double,
    chi2_pvalue double,
    tv_distance double,
    unseen_share double,
    null_share_reference double,
    null_share_current double,
    pvalue_adjusted double,
    drifted boolean
);

create table histograms (
    evaluation_id bigint not null,
    column_name varchar not null,
    bin integer not null,
    label varchar not null,
    lower double,
    upper double,
    category varchar,
    reference_count bigint not null,
    current_count bigint not null
);
