//! `prescale bench --scalers N`: the operator's per-scaler work for a fleet of N
//! PredictiveScalers, in process: each has 14 days of 1-minute history in the shared
//! [`HistoryStore`] (compact, ~2 bytes a point), fetched through the same incremental update
//! the controller uses from an in-memory source, a model choice and fit per scaler (as after a
//! restart; each fit decodes its history, as the controller's do), then steady reconciles (a
//! new minute fetched, the plan made). The API server's round-trips are not included;
//! everything the operator computes is. Figures, not assertions.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;

use crate::{
    cli::bench::{cpu_seconds, peak_rss_mib, proc_status_mib},
    planner::{
        self, Fallback, Forecast, ForecastSettings, MetricInput, ModelKind, PlannerState, Policy,
        Selection, Sizing, choice, series::align_down,
    },
    sources::{
        DEFAULT_MAX_POINTS, HistoryKey, HistoryStore, HistoryView, MetricsSource, SourceError,
    },
};

const DAY: i64 = 86_400;
const STEP: i64 = 60;

/// Serves `s{i}` as a deterministic load with a daily and weekly cycle and noise, computed on
/// the fly (so the source itself holds no history).
struct Synthetic;

/// The level of scaler `i`'s load.
fn scale(i: u64) -> f64 {
    20.0 + (i % 97) as f64 * 10.0
}

fn load(i: u64, t: i64) -> f64 {
    let scale = scale(i);
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
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let mut fleet = Fleet {
        store: HistoryStore::new(usize::MAX),
        keys: (0..scalers)
            .map(|i| HistoryKey {
                source: "default".into(),
                query: format!("s{i}"),
                step: STEP,
            })
            .collect(),
        now: align_down(1_767_225_600, DAY) + 15 * DAY,
    };
    // 1. cold start: every history fetched whole
    let began = Instant::now();
    let histories = fleet.fetch_all(fleet.now).await?;
    let fetch_all = began.elapsed();
    let points = fleet.store.usage().points;
    let bytes = fleet.store.bytes();
    let after_fetch = proc_status_mib("VmRSS:");
    // 2. Auto's model choice for every scaler. The operator spreads these over each scaler's
    //    6-hour selection epoch, and after a restart reuses the choice its status remembers;
    //    here they are run back to back to time them.
    let settings = ForecastSettings::new(ModelKind::Auto, vec![], 120, 0.9, STEP);
    let histories = Arc::new(histories);
    let (began, cpu) = (Instant::now(), cpu_seconds());
    let choices = choose_all(threads, &histories, &settings, fleet.now).await?;
    let select_all = (began.elapsed(), cpu_since(cpu));
    // 3. a refit of every scaler with its model and its calibrated margin, on all cores: what
    //    a restarted operator (or a new leader) does first
    let (began, cpu) = (Instant::now(), cpu_seconds());
    let fits = fit_all(threads, &histories, &settings, &choices).await?;
    let fit_all = (began.elapsed(), cpu_since(cpu));
    drop(histories);
    // 4. steady reconciles: the next minute fetched, the plan made (fits reused)
    let began = Instant::now();
    let reconciles = fleet.steady(&fits.forecasts, rounds).await?;
    let figures = Figures {
        scalers,
        rounds,
        threads,
        fetch_all,
        points,
        bytes,
        after_fetch,
        select_all,
        selection_times: choices.iter().map(|c| c.1).collect(),
        fit_all,
        fit_times: fits.times,
        models: fits.models,
        steady: began.elapsed(),
        reconciles,
    };
    Ok(figures.table())
}

/// CPU seconds used since `before` (a [`cpu_seconds`] reading).
fn cpu_since(before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds()? - before?)
}

/// What scaler `i` is fitted with: `settings`, and the calibrated margin as the controller sizes
/// it (5m lead at 30s evaluations, 15m stabilisation, 10%/min down) for a target of about a
/// twenty-fifth of its peak.
fn settings_of(settings: &ForecastSettings, i: usize) -> ForecastSettings {
    let sizing = Sizing::new(
        Duration::from_secs(300),
        Duration::from_secs(30),
        Duration::from_secs(900),
        10,
        STEP,
        scale(i as u64) * 1.8 / 25.0,
        None,
    );
    ForecastSettings {
        sizing: Some(sizing),
        ..settings.clone()
    }
}

/// The fleet: its history store, one key per scaler, and the simulated clock.
struct Fleet {
    store: HistoryStore,
    keys: Vec<HistoryKey>,
    now: i64,
}

/// How much history each scaler holds.
const LOOKBACK: i64 = 14 * DAY;

impl Fleet {
    /// Every scaler's history brought up to `now`, one after the other as the controller's
    /// reconciles fetch them.
    async fn fetch_all(&self, now: i64) -> anyhow::Result<Vec<HistoryView>> {
        let mut histories = Vec::with_capacity(self.keys.len());
        for (i, key) in self.keys.iter().enumerate() {
            histories.push(
                self.store
                    .update(&format!("ns/s{i}"), &Synthetic, key, LOOKBACK, now)
                    .await?,
            );
        }
        Ok(histories)
    }

    /// `rounds` rounds of reconciles over the fleet, each a minute later: the new minute
    /// fetched, the plan made with the scaler's forecast. The time of each reconcile.
    async fn steady(
        &mut self,
        forecasts: &[Forecast],
        rounds: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let policy = Policy {
            min_replicas: 1,
            max_replicas: 500,
            lead_time: Duration::from_secs(300),
            interval: Duration::from_secs(30),
            max_replicas_per_minute: 0,
            stabilization_window: Duration::from_secs(900),
            max_percent_per_minute: 10,
            fallback: Fallback::Reactive,
            fallback_headroom: crate::planner::margin::fallback_headroom(None),
            schedules: Vec::new(),
            upstream: Vec::new(),
        };
        let scalers = self.keys.len();
        let mut states = vec![PlannerState::default(); scalers];
        let mut current = vec![5u32; scalers];
        let mut times = Vec::with_capacity(scalers * rounds);
        for _ in 0..rounds {
            self.now += STEP;
            let now = self.now;
            for (i, key) in self.keys.iter().enumerate() {
                let t = Instant::now();
                let series = self
                    .store
                    .update(&format!("ns/s{i}"), &Synthetic, key, LOOKBACK, now)
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
                    duration: None,
                };
                let d = planner::plan(now, current[i], &policy, &[input], &mut states[i]);
                planner::record_scale(&mut states[i], now, current[i], d.desired);
                current[i] = d.desired;
                times.push(t.elapsed());
            }
        }
        Ok(times)
    }
}

/// `Auto`'s model choice for every scaler, on all cores, with the time of each.
async fn choose_all(
    threads: usize,
    histories: &Arc<Vec<HistoryView>>,
    settings: &ForecastSettings,
    now: i64,
) -> anyhow::Result<Vec<(Option<Selection>, Duration)>> {
    let (histories, settings) = (histories.clone(), settings.clone());
    on_all_cores(threads, histories.len(), move |i| {
        let t = Instant::now();
        let epoch = choice::selection_epoch(&format!("ns/s{i}"), now);
        let sel = choice::choose_model(&histories[i].series(), &settings, epoch, None);
        (sel, t.elapsed())
    })
    .await
}

/// Every scaler's fit with its chosen model.
struct Fits {
    forecasts: Vec<Forecast>,
    /// Wall time of each fit.
    times: Vec<Duration>,
    /// The models fitted, with how often each was.
    models: Vec<(String, usize)>,
}

/// A fit of every scaler with its chosen model, on all cores.
async fn fit_all(
    threads: usize,
    histories: &Arc<Vec<HistoryView>>,
    settings: &ForecastSettings,
    choices: &[(Option<Selection>, Duration)],
) -> anyhow::Result<Fits> {
    let (histories, settings) = (histories.clone(), settings.clone());
    let chosen: Vec<Option<Selection>> = choices.iter().map(|c| c.0.clone()).collect();
    let fits = on_all_cores(threads, histories.len(), move |i| {
        let t = Instant::now();
        // decoded in the fit's slot, as the controller's fits decode theirs
        let settings = settings_of(&settings, i);
        let fc = choice::fit_chosen(&histories[i].series(), &settings, chosen[i].as_ref());
        (fc, t.elapsed())
    })
    .await?;
    let mut forecasts = Vec::with_capacity(fits.len());
    let mut times = Vec::with_capacity(fits.len());
    for (fc, d) in fits {
        forecasts.push(fc.map_err(|e| anyhow::anyhow!("fit failed: {e}"))?);
        times.push(d);
    }
    let models = crate::sim::tally_models(forecasts.iter().map(|f| &f.model));
    Ok(Fits {
        forecasts,
        times,
        models,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// A CPU time, or n/a.
fn cpu(seconds: Option<f64>) -> String {
    seconds.map_or("n/a".into(), |s| format!("{s:.1}"))
}

/// A row of the table: what, and its figure.
fn row(out: &mut String, what: &str, fig: String) {
    let _ = writeln!(out, "  {what:<58} {fig:>12}");
}

/// The `p` percentile of `v`, in milliseconds.
fn ms(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    crate::cli::percentile(v, p).as_secs_f64() * 1e3
}

/// What the fleet benchmark measured.
struct Figures {
    scalers: usize,
    rounds: usize,
    threads: usize,
    fetch_all: Duration,
    points: usize,
    /// Bytes the history cache holds for them.
    bytes: usize,
    /// RSS after the cold fetch, in MiB (Linux only).
    after_fetch: Option<f64>,
    /// Wall and CPU time of the model choice of all.
    select_all: (Duration, Option<f64>),
    selection_times: Vec<Duration>,
    /// Wall and CPU time of the refit of all.
    fit_all: (Duration, Option<f64>),
    fit_times: Vec<Duration>,
    models: Vec<(String, usize)>,
    steady: Duration,
    /// Wall time of each steady reconcile.
    reconciles: Vec<Duration>,
}

impl Figures {
    /// The table `prescale bench --scalers` prints.
    fn table(mut self) -> String {
        let scalers = self.scalers;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "prescale bench --scalers {scalers}: 14 days of 1-minute history each, {} threads",
            self.threads
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "  {:<58} {:>12}", "what", "figure");
        row(
            &mut out,
            "history fetched (cold, all scalers)",
            format!("{:.2} s", self.fetch_all.as_secs_f64()),
        );
        row(&mut out, "history points held", format!("{}", self.points));
        row(
            &mut out,
            "  in the cache, compact (MiB; bytes a point)",
            format!(
                "{:.1}; {:.2}",
                self.bytes as f64 / MIB,
                self.bytes as f64 / self.points.max(1) as f64
            ),
        );
        row(
            &mut out,
            "RSS after the fetch",
            self.after_fetch
                .map_or("n/a".into(), |m| format!("{m:.1} MiB")),
        );
        row(
            &mut out,
            "refit of all scalers, as after a restart (wall)",
            format!("{:.1} s", self.fit_all.0.as_secs_f64()),
        );
        row(
            &mut out,
            "  CPU (s, all threads; / threads = wall on idle cores)",
            cpu(self.fit_all.1),
        );
        row(
            &mut out,
            "Auto's model choice, all scalers back to back (wall)",
            format!("{:.1} s", self.select_all.0.as_secs_f64()),
        );
        row(&mut out, "  CPU (s, all threads)", cpu(self.select_all.1));
        row(
            &mut out,
            "  per scaler, median (ms; once per 6 h, spread)",
            format!("{:.1}", ms(&mut self.selection_times, 0.5)),
        );
        row(
            &mut out,
            "  fit per scaler, median (ms)",
            format!("{:.1}", ms(&mut self.fit_times, 0.5)),
        );
        row(
            &mut out,
            "  fit per scaler, p95 (ms)",
            format!("{:.1}", ms(&mut self.fit_times, 0.95)),
        );
        let _ = writeln!(
            out,
            "  models chosen: {}",
            crate::cli::models_line(&self.models)
        );
        self.write_steady(&mut out);
        if self.points > DEFAULT_MAX_POINTS {
            let _ = writeln!(
                out,
                "  this fleet needs `prescale run --history-cache-points {}` or more (the default, {}, \
                 would fetch the least recently used histories again), and memory for it",
                self.points, DEFAULT_MAX_POINTS
            );
        }
        out
    }

    /// The steady reconciles' rows, and the peak memory.
    fn write_steady(&mut self, out: &mut String) {
        let (scalers, rounds) = (self.scalers, self.rounds);
        row(
            out,
            &format!("steady reconciles ({rounds} rounds x {scalers}), per second"),
            format!(
                "{:.0}",
                self.reconciles.len() as f64 / self.steady.as_secs_f64()
            ),
        );
        row(
            out,
            "  per reconcile, p50 (ms, fits excluded)",
            format!("{:.3}", ms(&mut self.reconciles, 0.5)),
        );
        row(
            out,
            "  per reconcile, p99 (ms, fits excluded)",
            format!("{:.3}", ms(&mut self.reconciles, 0.99)),
        );
        row(
            out,
            "peak RSS (VmHWM)",
            peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.1} MiB")),
        );
    }
}
