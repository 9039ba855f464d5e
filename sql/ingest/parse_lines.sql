{#-
  Turns raw log lines into typed query rows, or into the reason to quarantine them.
  Input: `ingest_lines` (file_id, line_no, raw, pre_reason) and `ingest_files` (one row per
  file of the batch). Context: `fields` (message fields: column, path, kind, index),
  `envelope_paths`, `known_keys_patch` and `nested_keys` (what other_fields leaves out).
-#}
{%- macro text_of(x) -%}
case
    when left({{ x }}, 1) = '"' and not contains({{ x }}, '\') then (({{ x }})::varchar)[2:-2]
    when left({{ x }}, 1) = '"' then {{ x }} ->> '$'
    when {{ x }} <> 'null' then ({{ x }})::varchar
end
{%- endmacro -%}
{%- macro kind_of(x) -%}
{#- 0 null or missing, 1 text, 2 object, 3 list, 4 boolean, 5 number -#}
case
    when {{ x }} is null then 0
    else case left({{ x }}, 1)
        when '"' then 1 when '{' then 2 when '[' then 3
        when 't' then 4 when 'f' then 4 when 'n' then 0
        else 5
    end
end
{%- endmacro -%}
-- Raw log lines -> typed query rows, or the reason each line is kept aside.
-- A line is parsed once: one json_extract reads the envelope and both message layouts
-- (event server, log4j); only SageMaker records and log4j messages logged as text are
-- rebuilt and read again. Field types come from the first character of each extracted
-- JSON value, which costs no further parsing.
with lines as (
    select
        l.file_id,
        l.line_no,
        l.raw,
        l.pre_reason,
        f.source,
        f.path as source_file,
        f.format as file_format,
        f.routing_key as path_routing_key,
        f.sagemaker_endpoint,
        f.sagemaker_variant,
        l.pre_reason is null and json_valid(l.raw) as valid
    from ingest_lines as l
    join ingest_files as f on f.file_id = l.file_id
),

extracted as (
    select
        *,
        case when valid then json_extract(raw, [
{% for path in envelope_paths %}
            {{ path | literal }}{{ "," if not loop.last }}
{% endfor %}
        ]) end as e
    from lines
),

recognised as (
    select
        *,
        case
            when e is null then null
            when e[1] is not null then 'event-server'
            when e[6] is not null then 'sagemaker'
            when e[4] is not null and e[5] is not null then 'log4j'
        end as envelope
    from extracted
),

-- SageMaker capture carries the request and the response as encoded strings.
sagemaker as (
    select
        *,
        case when envelope = 'sagemaker' then json_extract_string(e[6], [
            '$.endpointInput.data', '$.endpointInput.encoding',
            '$.endpointInput.observedContentType',
            '$.endpointOutput.data', '$.endpointOutput.encoding',
            '$.endpointOutput.observedContentType'
        ]) end as sm
    from recognised
),

sagemaker_decoded as (
    select
        *,
        case
            when upper(sm[2]) = 'BASE64' then try(decode(from_base64(sm[1])))
            else sm[1]
        end as sm_input,
        coalesce(upper(sm[2]) = 'CSV' or sm[3] ilike '%csv%', false) as sm_input_csv,
        case
            when upper(sm[5]) = 'BASE64' then try(decode(from_base64(sm[4])))
            else sm[4]
        end as sm_output,
        coalesce(upper(sm[5]) = 'CSV' or sm[6] ilike '%csv%', false) as sm_output_csv
    from sagemaker
),

sagemaker_parsed as (
    select
        *,
        case when not sm_input_csv then try_cast(sm_input as json) end as sm_input_json,
        case when not sm_output_csv then try_cast(sm_output as json) end as sm_output_json
    from sagemaker_decoded
),

-- The message of SageMaker records, and of log4j records whose message is JSON text.
rebuilt as (
    select
        *,
        case
            when envelope = 'sagemaker' then json_object(
                'msgType', 'prediction-query',
                'apinodeQueryType', 'prediction',
                'serviceId', sagemaker_endpoint,
                'endpointId', sagemaker_variant,
                'features', case
                    -- CSV values become JSON numbers when they read as numbers.
                    when sm_input_csv then to_json(list_transform(
                        string_split(trim(sm_input), ','),
                        lambda v: coalesce(to_json(try_cast(v as double)), to_json(v))
                    ))
                    when json_type(sm_input_json, '$.features') = 'OBJECT'
                        then sm_input_json -> '$.features'
                    else sm_input_json
                end,
                'result', case
                    when sm_output_csv then json_object('prediction', coalesce(
                        to_json(try_cast(string_split(trim(sm_output), ',')[1] as double)),
                        to_json(string_split(trim(sm_output), ',')[1])
                    ))
                    when json_type(sm_output_json) = 'OBJECT' then sm_output_json
                    else json_object('prediction', sm_output_json)
                end,
                'userContext', json_object(
                    'inferenceId', json_extract_string(e[7], '$.inferenceId'),
                    'eventId', json_extract_string(e[7], '$.eventId')
                )
            )
            when envelope = 'log4j' and left(e[4], 1) = '"' then try_cast(e[4] ->> '$' as json)
        end as rebuilt_message
    from sagemaker_parsed
),

messages as (
    select
        *,
        case
            when rebuilt_message is not null then rebuilt_message
            when envelope = 'event-server' then e[1]
            when envelope = 'log4j' then e[4]
        end as m,
        case
            when rebuilt_message is not null then json_extract(rebuilt_message, [
{% for field in fields %}
                {{ field.path | literal }}{{ "," if not loop.last }}
{% endfor %}
            ])
            when envelope = 'event-server' then e[{{ event_server_first }}:{{ event_server_first + fields | length - 1 }}]
            when envelope = 'log4j' then e[{{ log4j_first }}:{{ log4j_first + fields | length - 1 }}]
        end as f,
        case envelope
            when 'event-server' then {{ text_of('e[2]') | indent(12) }}
            when 'log4j' then {{ text_of('e[5]') | indent(12) }}
            when 'sagemaker' then json_extract_string(e[7], '$.inferenceTime')
        end as time_text,
        case when envelope = 'event-server' then {{ text_of('e[3]') | indent(8) }} end as sender
    from rebuilt
),

timed as (
    select
        *,
        case envelope
            when 'log4j' then coalesce(
                try_strptime(time_text, '%Y/%m/%d-%H:%M:%S.%gZ'),
                try_strptime(time_text, '%Y/%m/%d-%H:%M:%SZ'),
                timezone('UTC', try_cast(time_text as timestamptz))
            )
            else timezone('UTC', try_cast(time_text as timestamptz))
        end as parsed_time
    from messages
),

-- The kind of each field (see kind_of) and its typed value.
typed as (
    select
        *,
{% for field in fields %}
        {{ kind_of("f[" ~ field.index ~ "]") | indent(8) }} as {{ ("k_" ~ field.column) | ident }},
{% endfor %}
        case
            when parsed_time >= timestamp '1970-01-01' and parsed_time < timestamp '2200-01-01'
                then parsed_time
        end as event_time,
        json_keys(m, ['$'{% for nested in nested_keys %}, {{ nested.path | literal }}{% endfor %}]) as present_keys,
        -- The first character of every field, in one text: a single pattern match then tells
        -- whether every field has an allowed kind, sparing most rows the checks one by one.
        concat(
{% for field in fields %}
            coalesce(left(f[{{ field.index }}], 1), '_'){{ "," if not loop.last }}
{% endfor %}
        ) as kinds_signature
    from timed
),

field_values as (
    select
        *,
{% for field in fields if field.kind != 'check_object' %}
{% set k = ("k_" ~ field.column) | ident %}
{% set value = "f[" ~ field.index ~ "]" %}
{% if field.kind == 'text' %}
        {{ text_of(value) | indent(8) }} as {{ field.column | ident }},
{% elif field.kind == 'text_or_list' %}
        case when {{ k }} = 3 then {{ value }} else {{ text_of(value) | indent(8) }} end
            as {{ field.column | ident }},
{% elif field.kind == 'integer' %}
        try_cast({{ value }} as bigint) as {{ field.column | ident }},
{% elif field.kind == 'number' %}
        try_cast({{ value }} as double) as {{ field.column | ident }},
{% elif field.kind == 'boolean' %}
        {{ value }} = 'true' as {{ field.column | ident }},
{% else %}
        nullif({{ value }}, 'null') as {{ field.column | ident }},
{% endif %}
{% endfor %}
        -- Counting keys tells, without another parse, whether the message holds keys that
        -- no typed column keeps; only those messages are rewritten into other_fields.
        coalesce(len(present_keys[1]), 0) > 0
{% for field in fields if field.top_level %}
            + ({{ "f[" ~ field.index ~ "]" }} is not null)::int
{% endfor %}
            as unknown_top_keys,
{% for nested in nested_keys %}
        coalesce(len(present_keys[{{ loop.index + 1 }}]), 0) > 0
{% for index in nested.field_indices %}
            + ({{ "f[" ~ index ~ "]" }} is not null)::int
{% endfor %}
            as {{ ("unknown_keys_" ~ loop.index) | ident }}{{ "," if not loop.last }}
{% endfor %}
    from typed
),

judged as (
    select
        *,
        case
            when pre_reason is not null then pre_reason
            when trim(raw, e' \t\r\n') = '' then 'blank line'
            when not valid then 'not valid JSON'
            when left(ltrim(raw), 1) <> '{' then 'record is not a JSON object'
            when envelope is null then
                'unknown record shape: no clientEvent, message or captureData'
            when file_format is not null and envelope <> file_format then
                'a ' || envelope || ' record in a file read as ' || file_format
            when envelope = 'sagemaker' and sm_input is null then
                'SageMaker endpointInput data is missing or cannot be decoded'
            when time_text is null then 'record has no time'
            when parsed_time is null then 'unparseable time: ' || left(time_text, 100)
            when event_time is null then 'time out of range: ' || left(time_text, 100)
            when left(m, 1) is distinct from '{' then 'message is not a JSON object'
            when "k_msg_type" <> 1 then 'message has no msgType'
            when regexp_full_match(kinds_signature, {{ kinds_pattern | literal }})
{% for field in fields if field.kind in ('integer', 'number') %}
                and not ({{ ("k_" ~ field.column) | ident }} = 5 and {{ field.column | ident }} is null)
{% if field.kind == 'integer' %}
                and not ({{ ("k_" ~ field.column) | ident }} = 5
                    and try_cast(f[{{ field.index }}] as double) <> {{ field.column | ident }})
{% endif %}
{% endfor %}
                then null
{% for field in fields %}
{% set k = ("k_" ~ field.column) | ident %}
{% set v = field.column | ident %}
{% if field.kind == 'text' %}
            when {{ k }} in (2, 3) then
                {{ ("field " ~ field.label ~ " is not a scalar value") | literal }}
{% elif field.kind == 'text_or_list' %}
            when {{ k }} = 2 then
                {{ ("field " ~ field.label ~ " is not text or a list") | literal }}
{% elif field.kind == 'integer' %}
            when {{ k }} not in (0, 5) then
                {{ ("field " ~ field.label ~ " is not an integer") | literal }}
            when {{ k }} = 5 and {{ v }} is null then
                {{ ("field " ~ field.label ~ " is not an integer in range") | literal }}
            when {{ k }} = 5 and try_cast({{ "f[" ~ field.index ~ "]" }} as double) <> {{ v }} then
                {{ ("field " ~ field.label ~ " is not an integer") | literal }}
{% elif field.kind == 'number' %}
            when {{ k }} not in (0, 5) then
                {{ ("field " ~ field.label ~ " is not a number") | literal }}
            when {{ k }} = 5 and not isfinite({{ v }}) then
                {{ ("field " ~ field.label ~ " is out of range") | literal }}
{% elif field.kind == 'boolean' %}
            when {{ k }} not in (0, 4) then
                {{ ("field " ~ field.label ~ " is not true or false") | literal }}
{% elif field.kind in ('object', 'check_object') %}
            when {{ k }} not in (0, 2) then
                {{ ("field " ~ field.label ~ " is not an object") | literal }}
{% elif field.kind == 'collection' %}
            when {{ k }} not in (0, 2, 3) then
                {{ ("field " ~ field.label ~ " is not an object or a list") | literal }}
{% endif %}
{% endfor %}
        end as reason
    from field_values
)

select
    reason,
    raw,
    source,
    source_file,
    file_id,
    line_no,
    cast(event_time as date) as day,
    event_time,
    case when envelope = 'event-server' then parsed_time end as received_time,
    sender,
    envelope,
    msg_type,
    query_type,
    service_id,
    endpoint_id,
    generation_id,
    path_routing_key as routing_key,
    batch_size,
    batch_idx,
    project_key,
    saved_model_id,
    model_version,
    full_model_id,
    coalesce(result_ignored, false) as ignored,
    ignore_reason,
    coalesce(result = '"failure"', false)
        or coalesce(msg_error_type, result_error_type) is not null as failed,
    coalesce(msg_error_type, result_error_type) as error_type,
    coalesce(msg_error_msg, result_error_msg) as error_msg,
    client_ip,
    x_forwarded_for,
    auth_user,
    timing_pre_processing,
    timing_wait,
    timing_enrich,
    timing_preparation,
    timing_prediction,
    timing_post_processing,
    features,
    result,
    user_context,
    api_context,
    case
        when reason is null and (unknown_top_keys{% for nested in nested_keys %} or {{ ("unknown_keys_" ~ loop.index) | ident }}{% endfor %})
            then nullif(json_merge_patch(
                m,
                {{ known_keys_patch | literal }}{{ "," if nested_keys }}
{% for nested in nested_keys %}
                case when {{ ("unknown_keys_" ~ loop.index) | ident }}
                    then {{ nested.keep_patch | literal }}
                    else {{ nested.drop_patch | literal }}
                end{{ "," if not loop.last }}
{% endfor %}
            ), '{}')
    end as other_fields
from judged
