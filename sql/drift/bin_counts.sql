{#-
  Counts the values of a relation in fitted bins, per group.
  Context: relation (SQL of the rows), keys (group columns of the relation), columns
  (name, kind, expr: the value's expression over the relation, unseen_bin), bins and
  categories (relations of fitted bins: profile_key..., column_name, bin, lower, upper /
  category, bin), profile_keys (columns joining a row to its profile; none for one profile).
  Bin -1 holds missing values (NULL, NaN); numeric bins have open outer edges; a
  category outside the fitted ones falls in the column's `unseen_bin`.
-#}
-- Values per bin and group, for the bins fitted on a baseline.
with source as (
    {{ relation | indent(4) }}
),

{% for c in columns %}
{{ ("values_" ~ loop.index) | ident }} as (
    select
{% for k in keys %}
        s.{{ k | ident }},
{% endfor %}
{% if c.kind == 'numeric' %}
        case when s.v is null or isnan(s.v) then -1 else b.bin end as bin
    from (
        select {% for k in keys %}{{ k | ident }}, {% endfor %}cast({{ c.expr }} as double) as v
        from source
    ) as s
    left join {{ bins }} as b
        on b.column_name = {{ c.name | literal }}
{% for k in profile_keys %}
        and b.{{ k | ident }} = s.{{ k | ident }}
{% endfor %}
        and b.bin >= 0
        and (b.lower is null or s.v > b.lower)
        and (b.upper is null or s.v <= b.upper)
{% else %}
        case
            when s.v is null then -1
            when cat.bin is null then {{ c.unseen_bin }}
            else cat.bin
        end as bin
    from (
        select {% for k in keys %}{{ k | ident }}, {% endfor %}cast({{ c.expr }} as varchar) as v
        from source
    ) as s
    left join {{ categories }} as cat
        on cat.column_name = {{ c.name | literal }}
{% for k in profile_keys %}
        and cat.{{ k | ident }} = s.{{ k | ident }}
{% endfor %}
        and cat.category = s.v
{% endif %}
),

{% endfor %}
counted as (
{% for c in columns %}
    select
{% for k in keys %}
        {{ k | ident }},
{% endfor %}
        {{ c.name | literal }} as column_name,
        bin,
        count(*) as n
    from {{ ("values_" ~ loop.index) | ident }}
    group by {% for k in keys %}{{ k | ident }}, {% endfor %}bin
{{ "    union all" if not loop.last }}
{% endfor %}
)

select * from counted
