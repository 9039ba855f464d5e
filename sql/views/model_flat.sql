{#-
  The flat view of one model: its readable definition over the log store.
  Context: model, features (name, path, kind), classes (name, column, path, index), keys
  (name, column, path).
-#}
{% import "views/_macros.sql" as m %}
-- One row per answered, non-ignored prediction query of {{ model.name }}, with each feature
-- as a typed column named as in training (a value of the wrong type becomes NULL), the
-- prediction, one probability column per class, the response time and the logged keys.
with logged as (
    {{ m.logged_queries(model) | indent(4) }}
),

extracted as (
    select
        *,
{% for f in features %}
        {{ m.feature_json(f) | indent(8) }} as {{ ("f" ~ loop.index) | ident }},
{% endfor %}
        json_extract(result, '$.prediction') as prediction_json
    from logged
)

select
    day,
    event_time,
    generation_id,
    routing_key,
    model_version,
{% if model.version %}
    coalesce(model_version = {{ model.version | literal }}, false) as version_matches,
{% else %}
    true as version_matches,
{% endif %}
    project_key,
    saved_model_id,
{% for f in features %}
{% if f.kind == 'numeric' %}
    {{ m.numeric_value("f" ~ loop.index, m.listed) | indent(4) }} as {{ f.name | ident }},
{% else %}
    {{ m.categorical_value("f" ~ loop.index) }} as {{ f.name | ident }},
{% endif %}
{% endfor %}
    {{ m.categorical_value("prediction_json") }} as prediction,
    {{ m.numeric_value("prediction_json") }} as prediction_value,
{% for c in classes %}
{% if c.index is not none %}
    coalesce(
        try_cast(json_extract(result, {{ c.path | literal }}) as double),
        try_cast(json_extract(result, {{ ("$.probabilities[" ~ c.index ~ "]") | literal }}) as double)
    ) as {{ c.column | ident }},
{% else %}
    try_cast(json_extract(result, {{ c.path | literal }}) as double) as {{ c.column | ident }},
{% endif %}
{% endfor %}
{% for k in keys %}
    json_extract_string(user_context, {{ k.path | literal }}) as {{ k.column | ident }},
{% endfor %}
    response_time_ms,
    file_id as source_file_id,
    line_no as source_line
from extracted
