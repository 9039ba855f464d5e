-- Ground truth and performance: labels loaded from label files (with their quarantine),
-- the drift model of each evaluation and its column importances, and performance
-- metrics per evaluation, realised on labelled rows or estimated without labels.

create table labels (
    model varchar not null,
    "key" varchar not null,
    label varchar,
    label_value double,
    source varchar not null,
    source_file varchar not null,
    line_no bigint not null,
    run_id bigint not null
);

create table label_quarantine (
    source varchar not null,
    source_file varchar not null,
    line_no bigint,
    reason varchar not null,
    raw varchar,
    run_id bigint not null
);

create table drift_models (
    evaluation_id bigint not null,
    sample_rows bigint not null,
    test_rows bigint not null,
    accuracy double,
    accuracy_low double,
    accuracy_high double,
    pvalue double,
    confidence double not null,
    drift_detected boolean,
    seed bigint not null
);

create table drift_model_importance (
    evaluation_id bigint not null,
    column_name varchar not null,
    drift_importance double,
    model_importance double
);

create table performance (
    evaluation_id bigint not null,
    source varchar not null,
    metric varchar not null,
    "value" double,
    band_low double,
    band_high double,
    "rows" bigint,
    coverage double
);
