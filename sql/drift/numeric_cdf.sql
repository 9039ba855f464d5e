{#-
  The exact two-sample KS statistic and Wasserstein distance, per window and column.
  Context: current and baseline (SQL of rows: window_id, column_name, v).
-#}
-- Both empirical CDFs from one ordering of the pooled samples: at every value, the share of
-- all rows at or below it (cume_dist) and the share of its own sample's rows give, by
-- difference, the other sample's share. KS is the largest gap between the CDFs, Wasserstein
-- the area between them. Finite values only (missing, NaN and infinite values are counted
-- by the bins instead).
with samples as (
    select window_id, column_name, v as value, false as is_current
    from ({{ baseline | indent(4) }}) as b
    where isfinite(v)
    union all
    select window_id, column_name, v as value, true as is_current
    from ({{ current | indent(4) }}) as c
    where isfinite(v)
),

totals as (
    select
        window_id,
        column_name,
        count(*) filter (where not is_current) as total_baseline,
        count(*) filter (where is_current) as total_current
    from samples
    group by window_id, column_name
),

ranked as (
    select
        window_id,
        column_name,
        value,
        is_current,
        cume_dist() over (partition by window_id, column_name order by value) as share_all,
        cume_dist() over (
            partition by window_id, column_name, is_current order by value
        ) as share_own,
        lead(value) over (partition by window_id, column_name order by value) - value as gap
    from samples
),

cdfs as (
    select
        ranked.window_id,
        ranked.column_name,
        ranked.gap,
        totals.total_baseline,
        totals.total_current,
        case
            when is_current then (
                share_all * (total_baseline + total_current) - share_own * total_current
            ) / nullif(total_baseline, 0)
            else share_own
        end as f_baseline,
        case
            when is_current then share_own
            else (
                share_all * (total_baseline + total_current) - share_own * total_baseline
            ) / nullif(total_current, 0)
        end as f_current
    from ranked
    join totals
        on totals.window_id = ranked.window_id and totals.column_name = ranked.column_name
)

select
    window_id,
    column_name,
    max(abs(f_baseline - f_current)) as ks_statistic,
    sum(coalesce(abs(f_baseline - f_current) * gap, 0)) as wasserstein,
    max(total_baseline) as baseline_rows,
    max(total_current) as current_rows
from cdfs
group by window_id, column_name
