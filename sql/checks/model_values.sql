{#- Parameter: $labelled (the models that have a label source). -#}
-- The value of each model and column check metric for every evaluation of a configured
-- model against its reference; NULL where the window has none (too few rows to judge
-- drift, no drift model, no labels, no performance estimate).
with evaluated as (
    select
        e.evaluation_id,
        e.model,
        e.model_version,
        e.window_kind,
        e.window_start,
        e.window_end,
        e.drift_share,
        e.status <> 'not enough data' as judged,
        m.service,
        m.endpoint
    from main.evaluations as e
    inner join main.models as m on m.name = e.model
    where e.baseline = 'reference'
),

accuracy as (
    select evaluation_id, source, "value"
    from main.performance
    where metric = 'accuracy' and "value" is not null and not isnan("value")
),

-- Accuracy is compared with the model's first window of the same kind, version and source.
first_accuracy as (
    select
        e.model,
        e.model_version,
        e.window_kind,
        a.source,
        arg_min(a."value", e.window_start) as baseline
    from accuracy as a
    inner join evaluated as e on e.evaluation_id = a.evaluation_id
    group by e.model, e.model_version, e.window_kind, a.source
),

coverage as (
    select evaluation_id, max(coverage) as coverage
    from main.performance
    group by evaluation_id
),

model_metrics as (
    select e.evaluation_id, 'drift_model_accuracy' as metric, d.accuracy as "value"
    from evaluated as e
    left join main.drift_models as d on d.evaluation_id = e.evaluation_id
    union all
    select evaluation_id, 'drift_share', case when judged then drift_share end
    from evaluated
    union all
    select
        e.evaluation_id,
        'label_coverage',
        case when e.model in (select unnest($labelled::varchar[])) then c.coverage end
    from evaluated as e
    left join coverage as c on c.evaluation_id = e.evaluation_id
    union all
    select e.evaluation_id, s.source || '_accuracy_drop', f.baseline - a."value"
    from evaluated as e
    cross join (values ('estimated'), ('realised')) as s (source)
    left join accuracy as a on a.evaluation_id = e.evaluation_id and a.source = s.source
    left join first_accuracy as f
        on f.model = e.model
        and f.model_version is not distinct from e.model_version
        and f.window_kind = e.window_kind
        and f.source = s.source
)

select
    m.metric,
    'model' as scope,
    e.model,
    null::varchar as column_name,
    e.service,
    e.endpoint,
    null::varchar as routing_key,
    e.evaluation_id,
    e.window_kind,
    e.window_start,
    e.window_end,
    null::date as day,
    m."value"
from model_metrics as m
inner join evaluated as e on e.evaluation_id = m.evaluation_id
union all
select
    'column_psi',
    'column',
    e.model,
    c.column_name,
    e.service,
    e.endpoint,
    null,
    e.evaluation_id,
    e.window_kind,
    e.window_start,
    e.window_end,
    null,
    case when e.judged then c.psi end
from main.column_drift as c
inner join evaluated as e on e.evaluation_id = c.evaluation_id
