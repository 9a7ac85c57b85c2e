//! `prescale bench --scalers N`: the operator's per-scaler work for a fleet of N
//! PredictiveScalers, in process: each has 14 days of 1-minute history in the shared
//! [`HistoryStore`], fetched through the same incremental update the controller uses from an
//! in-memory source, a model choice and fit per scaler (as after a restart), then steady
//! reconciles (a new minute fetched, the plan made). The API server's round-trips are not
//! included; everything the operator computes is. Figures, not assertions.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;

use crate::{
    cli::bench::{peak_rss_mib, proc_status_mib},
    planner::{
        self, Fallback, ForecastSettings, MetricInput, ModelKind, PlannerState, Policy, Selection,
        choice, series::align_down,
    },
    sources::{HistoryKey, HistoryStore, MetricsSource, SourceError},
};

const DAY: i64 = 86_400;
const STEP: i64 = 60;

/// Serves `s{i}` as a deterministic load with a daily and weekly cycle and noise, computed on
/// the fly (so the source itself holds no history).
struct Synthetic;

fn load(i: u64, t: i64) -> f64 {
    let scale = 20.0 + (i % 97) as f64 * 10.0;
    let phase = (i % 24) as f64 / 24.0;
    let day = (t as f64 / DAY as f64 + phase) * std::f64::consts::TAU;
    let week = (t as f64 / (7 * DAY) as f64) * std::f64::consts::TAU;
    let mut h = (t as u64 / STEP as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    h ^= h >> 29;
    let noise = (h % 1000) as f64 / 1000.0 - 0.5;
    (scale * (1.0 + 0.6 * day.sin() + 0.15 * week.sin() + 0.1 * noise)).max(0.0)
}

impl MetricsSource for Synthetic {
    fn range<'a>(
        &'a self,
        query: &'a str,
        start: i64,
        end: i64,
        step: i64,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
        Box::pin(async move {
            let i: u64 = query.trim_start_matches('s').parse().unwrap_or(0);
            Ok((start..=end)
                .step_by(step as usize)
                .map(|t| (t, load(i, t)))
                .collect())
        })
    }
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// `f(0..n)` on `threads` blocking workers, results in index order.
async fn on_all_cores<R: Send + 'static>(
    threads: usize,
    n: usize,
    f: impl Fn(usize) -> R + Send + Sync + 'static,
) -> anyhow::Result<Vec<R>> {
    let f = Arc::new(f);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (f, next) = (f.clone(), next.clone());
            tokio::task::spawn_blocking(move || {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break done;
                    }
                    done.push((i, f(i)));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// Runs the fleet benchmark and returns its table.
pub async fn run(scalers: usize, rounds: usize) -> anyhow::Result<String> {
    let mut out = String::new();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let _ = writeln!(
        out,
        "prescale bench --scalers {scalers}: 14 days of 1-minute history each, {threads} threads"
    );
    let lookback = 14 * DAY;
    let mut now = align_down(1_767_225_600, DAY) + 15 * DAY;
    let store = HistoryStore::new(usize::MAX);
    let source = Synthetic;
    let keys: Vec<HistoryKey> = (0..scalers)
        .map(|i| HistoryKey {
            source: "default".into(),
            query: format!("s{i}"),
            step: STEP,
        })
        .collect();

    // 1. cold start: every history fetched whole
    let began = Instant::now();
    let mut histories = Vec::with_capacity(scalers);
    for (i, key) in keys.iter().enumerate() {
        histories.push(
            store
                .update(&format!("ns/s{i}"), &source, key, lookback, now)
                .await?,
        );
    }
    let fetch_all = began.elapsed();
    let points = store.usage().points;
    let after_fetch = proc_status_mib("VmRSS:");

    // 2. Auto's model choice for every scaler. The operator spreads these over each scaler's
    //    6-hour selection epoch, and after a restart reuses the choice its status remembers;
    //    here they are run back to back to time them.
    let settings = ForecastSettings::new(ModelKind::Auto, vec![], 120, 0.9, STEP);
    let histories = Arc::new(histories);
    let began = Instant::now();
    let choices = on_all_cores(threads, scalers, {
        let (histories, settings) = (histories.clone(), settings.clone());
        move |i| {
            let t = Instant::now();
            let epoch = choice::selection_epoch(&format!("ns/s{i}"), now);
            let sel = choice::choose_model(&histories[i], &settings, epoch, None);
            (sel, t.elapsed())
        }
    })
    .await?;
    let select_all = began.elapsed();
    let mut selection_times: Vec<Duration> = choices.iter().map(|c| c.1).collect();

    // 3. a refit of every scaler with its model, on all cores: what a restarted operator (or
    //    a new leader) does first
    let began = Instant::now();
    let fits = on_all_cores(threads, scalers, {
        let (histories, settings) = (histories.clone(), settings.clone());
        let chosen: Vec<Option<Selection>> = choices.iter().map(|c| c.0.clone()).collect();
        move |i| {
            let t = Instant::now();
            let fc = choice::fit_chosen(&histories[i], &settings, chosen[i].as_ref());
            (fc, t.elapsed())
        }
    })
    .await?;
    let fit_all = began.elapsed();
    drop(histories);
    let mut forecasts = Vec::with_capacity(scalers);
    let mut fit_times = Vec::with_capacity(scalers);
    let mut models: Vec<(String, usize)> = Vec::new();
    for (fc, d) in fits {
        let fc = fc.map_err(|e| anyhow::anyhow!("fit failed: {e}"))?;
        let name = fc.model.to_string();
        match models.iter_mut().find(|(m, _)| *m == name) {
            Some((_, c)) => *c += 1,
            None => models.push((name, 1)),
        }
        forecasts.push(fc);
        fit_times.push(d);
    }

    // 4. steady reconciles: the next minute fetched, the plan made (fits reused)
    let policy = Policy {
        min_replicas: 1,
        max_replicas: 500,
        lead_time: Duration::from_secs(300),
        interval: Duration::from_secs(30),
        max_replicas_per_minute: 0,
        stabilization_window: Duration::from_secs(900),
        max_percent_per_minute: 10,
        fallback: Fallback::Reactive,
        schedules: Vec::new(),
    };
    let mut states = vec![PlannerState::default(); scalers];
    let mut current = vec![5u32; scalers];
    let mut times = Vec::with_capacity(scalers * rounds);
    let began = Instant::now();
    for _ in 0..rounds {
        now += STEP;
        for (i, key) in keys.iter().enumerate() {
            let t = Instant::now();
            let series = store
                .update(&format!("ns/s{i}"), &source, key, lookback, now)
                .await?;
            let observed = series
                .last_finite()
                .filter(|(t, _)| *t >= series.end() - 3 * STEP)
                .map(|(_, v)| v);
            let input = MetricInput {
                name: "requests",
                target_per_replica: 40.0,
                observed,
                forecast: Ok(&forecasts[i]),
            };
            let d = planner::plan(now, current[i], &policy, &[input], &mut states[i]);
            planner::record_scale(&mut states[i], now, current[i], d.desired);
            current[i] = d.desired;
            times.push(t.elapsed());
        }
    }
    let steady = began.elapsed();

    let _ = writeln!(out);
    let _ = writeln!(out, "  {:<58} {:>12}", "what", "figure");
    let row = |out: &mut String, what: &str, fig: String| {
        let _ = writeln!(out, "  {what:<58} {fig:>12}");
    };
    row(
        &mut out,
        "history fetched (cold, all scalers)",
        format!("{:.2} s", fetch_all.as_secs_f64()),
    );
    row(&mut out, "history points held", format!("{points}"));
    row(
        &mut out,
        "RSS after the fetch",
        after_fetch.map_or("n/a".into(), |m| format!("{m:.1} MiB")),
    );
    row(
        &mut out,
        "refit of all scalers, as after a restart (wall)",
        format!("{:.1} s", fit_all.as_secs_f64()),
    );
    row(
        &mut out,
        "Auto's model choice, all scalers back to back (wall)",
        format!("{:.1} s", select_all.as_secs_f64()),
    );
    row(
        &mut out,
        "  per scaler, median (ms; once per 6 h, spread)",
        format!("{:.1}", percentile(&mut selection_times, 0.5)),
    );
    row(
        &mut out,
        "  fit per scaler, median (ms)",
        format!("{:.1}", percentile(&mut fit_times, 0.5)),
    );
    row(
        &mut out,
        "  fit per scaler, p95 (ms)",
        format!("{:.1}", percentile(&mut fit_times, 0.95)),
    );
    let models: Vec<String> = models.iter().map(|(m, c)| format!("{m} x{c}")).collect();
    let _ = writeln!(out, "  models chosen: {}", models.join(", "));
    row(
        &mut out,
        &format!("steady reconciles ({rounds} rounds x {scalers}), per second"),
        format!("{:.0}", times.len() as f64 / steady.as_secs_f64()),
    );
    row(
        &mut out,
        "  per reconcile, p50 (ms, fits excluded)",
        format!("{:.3}", percentile(&mut times, 0.5)),
    );
    row(
        &mut out,
        "  per reconcile, p99 (ms, fits excluded)",
        format!("{:.3}", percentile(&mut times, 0.99)),
    );
    row(
        &mut out,
        "peak RSS (VmHWM)",
        peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.1} MiB")),
    );
    Ok(out)
}
