{#-
  Shared pieces of the model views. A logged value arrives as JSON text (`json_extract`);
  its first character tells its JSON type without parsing it again: '"' text, '{' object,
  '[' list, 't'/'f' boolean, 'n' null, anything else a number.
-#}

{#- Features logged as a list (SageMaker CSV) are read by position, their numbers as text. -#}
{% macro numeric_value(x, listed=none) -%}
case
    when left({{ x }}, 1) not in ('"', '{', '[', 't', 'f', 'n') then try_cast({{ x }} as double)
{% if listed %}
    when {{ listed }} and left({{ x }}, 1) = '"'
        then try_cast(json_extract_string({{ x }}, '$') as double)
{% endif %}
end
{%- endmacro %}

{% macro categorical_value(x) -%}
case when left({{ x }}, 1) not in ('{', '[', 'n') then json_extract_string({{ x }}, '$') end
{%- endmacro %}

{#- A value that is there but cannot be read as the column's kind. -#}
{% macro wrong_type(x, kind, listed=none) -%}
{% if kind == 'numeric' -%}
({{ x }} is not null and {{ x }} <> 'null' and {{ numeric_value(x, listed) }} is null)
{%- else -%}
({{ x }} is not null and left({{ x }}, 1) in ('{', '['))
{%- endif %}
{%- endmacro %}

{#- The response time of a query: the sum of its logged timings (microseconds) in ms. -#}
{% macro response_time_ms() -%}
case
    when coalesce(
        timing_pre_processing, timing_wait, timing_enrich, timing_preparation,
        timing_prediction, timing_post_processing
    ) is not null
        then (
            coalesce(timing_pre_processing, 0) + coalesce(timing_wait, 0)
            + coalesce(timing_enrich, 0) + coalesce(timing_preparation, 0)
            + coalesce(timing_prediction, 0) + coalesce(timing_post_processing, 0)
        ) / 1000.0
end
{%- endmacro %}

{#- The answered prediction queries of one model's endpoint, from the log store. -#}
{% macro logged_queries(model, days_table=none) -%}
select
    day,
    event_time,
    generation_id,
    routing_key,
    coalesce(model_version, regexp_extract(full_model_id, '^S-[^-]+-[^-]+-(.+)$', 1))
        as model_version,
    coalesce(project_key, regexp_extract(full_model_id, '^S-([^-]+)-', 1)) as project_key,
    coalesce(saved_model_id, regexp_extract(full_model_id, '^S-[^-]+-([^-]+)-', 1))
        as saved_model_id,
    {{ response_time_ms() | indent(4) }} as response_time_ms,
    features,
    result,
    user_context,
    file_id,
    line_no
from main.queries
where msg_type = 'prediction-query'
    and service_id = {{ model.service | literal }}
    and endpoint_id = {{ model.endpoint | literal }}
    and not ignored
    and not failed
{% if days_table %}
    and day in (select day from {{ days_table }})
{% endif %}
{%- endmacro %}

{#- A feature's logged JSON value: by name, else by position in a logged list. -#}
{% macro feature_json(f) -%}
coalesce(
    json_extract(features, {{ f.path | literal }}),
    json_extract(features, {{ ("$[" ~ f.position ~ "]") | literal }})
)
{%- endmacro %}

{% set listed = "left(features, 1) = '['" %}
