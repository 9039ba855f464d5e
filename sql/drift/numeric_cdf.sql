{#-
  The exact two-sample KS statistic and Wasserstein distance, per window and column.
  Context: current and baseline (SQL of rows: window_id, column_name, v).
-#}
-- Both empirical CDFs in one sorted pass over the distinct values of the two samples:
-- KS is the largest gap between them, Wasserstein the area between them. Finite values
-- only (missing, NaN and infinite values are counted by the bins instead).
with current_counts as (
    select window_id, column_name, v as value, count(*) as n
    from ({{ current | indent(4) }}) as c
    where isfinite(v)
    group by window_id, column_name, v
),

baseline_counts as (
    select window_id, column_name, v as value, count(*) as n
    from ({{ baseline | indent(4) }}) as b
    where isfinite(v)
    group by window_id, column_name, v
),

merged as (
    select window_id, column_name, value, sum(n_baseline) as n_baseline, sum(n_current) as n_current
    from (
        select window_id, column_name, value, n as n_baseline, 0 as n_current from baseline_counts
        union all
        select window_id, column_name, value, 0 as n_baseline, n as n_current from current_counts
    ) as both_samples
    group by window_id, column_name, value
),

cdf as (
    select
        window_id,
        column_name,
        value,
        sum(n_baseline) over running / sum(n_baseline) over whole as f_baseline,
        sum(n_current) over running / sum(n_current) over whole as f_current,
        lead(value) over ordered - value as gap,
        sum(n_baseline) over whole as total_baseline,
        sum(n_current) over whole as total_current
    from merged
    window
        whole as (partition by window_id, column_name),
        ordered as (partition by window_id, column_name order by value),
        running as (
            partition by window_id, column_name order by value
            rows between unbounded preceding and current row
        )
)

select
    window_id,
    column_name,
    max(abs(f_baseline - f_current)) as ks_statistic,
    sum(coalesce(abs(f_baseline - f_current) * gap, 0)) as wasserstein,
    max(total_baseline) as baseline_rows,
    max(total_current) as current_rows
from cdf
group by window_id, column_name
