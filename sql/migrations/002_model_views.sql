-- Bookkeeping of the model views: the reference file each model was last loaded from, and
-- which days of each model's materialised flat table were built by which run, for which
-- shape (features, kinds, classes). A day is rebuilt when its logs or the shape change.

create table reference_files (
    model varchar not null,
    path varchar not null,
    sha256 varchar not null,
    "rows" bigint not null,
    loaded_run bigint not null
);

create table model_builds (
    model varchar not null,
    shape_hash varchar not null,
    built_run bigint not null
);

create table model_days (
    model varchar not null,
    day date not null,
    built_run bigint not null
);

create table model_classes (
    model varchar not null,
    class varchar not null
);
