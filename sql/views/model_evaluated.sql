-- The queries {{ model.name }}'s evaluations use: {% if model.match_version and model.version %}those scored by version {{ model.version }}{% else %}every version{% endif %}.
select *
from {{ schema | ident }}.flat
{% if model.match_version and model.version %}
where version_matches
{% endif %}
