//! The upstream quota ceiling (`spec.upstream`): every request the proxy forwards spends the
//! provider's requests-per-minute or tokens-per-minute quota, so a metric's load can never
//! usefully exceed its quota, and replicas beyond what the quota admits only add cost.
//!
//! The rule, one step of [`super::plan`] after the spec's bounds and before the schedules:
//! - a limit admits `ceil(limit as load / targetPerReplica)` replicas for its metric, where the
//!   limit as load is `perMinute / 60` for a metric counted per second (a `rate()`) and
//!   `perMinute` for one counted per minute;
//! - each limited metric asks for at most what its limit admits; the ceiling is the most any
//!   metric then asks for (a metric without a limit, or without data, is not capped), so one
//!   tight quota never starves the load of another metric whose own quota admits more;
//! - the ceiling never goes below `minReplicas`; a schedule's floor, a breached guard and the
//!   stabilisation window act after it, so they still win over it;
//! - a limit read by a query uses the query's latest value, but on its own it never lowers the
//!   count below the current one: it stops a scale-up at what it admits and holds the count,
//!   which then comes down as the load does. A query is a live reading that can be wrong (a
//!   gauge of the *remaining* quota, another unit, a broken exporter); one tiny value must not
//!   scale the proxy down to `minReplicas` at its peak. Replicas above a quota that really
//!   shrank only cost money until the load falls; a static `perMinute` still lowers the count;
//! - a query value below [`MIN_QUERIED_LIMIT`] (1 per minute: no quota counts in fractions
//!   of a request or token a minute), zero, negative or not a number is no limit: like a failed
//!   query, the static `perMinute` is used, but never below the current count (a failing query
//!   never scales down), and without one the limit caps nothing. Either way the failure is
//!   reported ([`UpstreamLimit::Unavailable`]).

use super::replicas_for;

/// The smallest value a limit query may return to be a limit, per minute: a quota counts whole
/// requests or tokens a minute, so a value below one is a wrong query (a fraction, a ratio,
/// another unit), not a limit.
pub const MIN_QUERIED_LIMIT: f64 = 1.0;

/// What a metric's value counts, per second or per minute: how a per-minute quota becomes
/// the metric's load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricUnit {
    /// The metric is a rate per second (PromQL `rate()`): a quota of 6000/min is a load of 100.
    #[default]
    PerSecond,
    /// The metric counts per minute (`increase(...[1m])`, a per-minute trace).
    PerMinute,
}

impl MetricUnit {
    /// A quota of `per_minute` as this metric's load.
    pub fn load_of(self, per_minute: f64) -> f64 {
        match self {
            MetricUnit::PerSecond => per_minute / 60.0,
            MetricUnit::PerMinute => per_minute,
        }
    }
}

/// One upstream limit of the spec, in numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// The metric (of `spec.metrics`) whose load spends this quota.
    pub metric: String,
    /// The static limit per minute (`perMinute`), if given.
    pub per_minute: Option<f64>,
    pub unit: MetricUnit,
    /// The limit is read by a query (its value, per minute, wins over `per_minute`).
    pub queried: bool,
}

/// Why a quota's query gave no limit: the condition reason of the edge that read it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaFailure {
    pub reason: &'static str,
    pub message: String,
}

/// A quota's query, read now: the limit per minute, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaReading {
    pub metric: String,
    pub value: Result<f64, QuotaFailure>,
}

/// Where the limit in force came from.
#[derive(Debug, Clone, PartialEq)]
pub enum LimitFrom {
    /// The static `perMinute`.
    Static,
    /// The query's latest value.
    Query,
    /// The static `perMinute`, because the query failed (never below the current count).
    StaticAfterFailure(QuotaFailure),
    /// No limit: the query failed and there is no `perMinute`.
    Unavailable(QuotaFailure),
}

/// One limit's part in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaDecision {
    pub metric: String,
    /// The limit in force, per minute.
    pub per_minute: Option<f64>,
    pub from: LimitFrom,
    /// Replicas the limit admits for its metric.
    pub admits: Option<u32>,
    /// Replicas its metric asks for (`None`: it cannot say).
    pub asked: Option<u32>,
}

impl QuotaDecision {
    /// The limit lowered what its metric asks for.
    pub fn binds(&self) -> bool {
        matches!((self.asked, self.admits), (Some(a), Some(c)) if a > c)
    }
}

/// Why the ceiling step limited a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamLimit {
    /// The quota admits fewer replicas than asked for: capped.
    Limited,
    /// A quota's query failed (the static limit, or none, is used).
    Unavailable,
}

/// What the ceiling did to a count.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    pub count: u32,
    /// The count the limits allow now: the most any metric asks for once each is capped at
    /// what its limit admits, at least `minReplicas` (`None`: no limit in force).
    pub ceiling: Option<u32>,
    /// True when the ceiling lowered the count.
    pub limited: bool,
    pub limit: Option<(UpstreamLimit, String)>,
    /// Each limit, in the spec's order.
    pub quotas: Vec<QuotaDecision>,
}

/// A metric as the ceiling sees it: its name, its target per replica and what it asks for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub name: &'a str,
    pub target_per_replica: f64,
    pub replicas: Option<u32>,
}

/// The ceiling applied to `count` (the recommendation within the spec's bounds) with the
/// target at `current`. See the module docs for the rule.
pub fn apply(
    count: u32,
    current: u32,
    min_replicas: u32,
    metrics: &[Asked<'_>],
    quotas: &[Quota],
    readings: &[QuotaReading],
) -> Ceiling {
    let decisions: Vec<QuotaDecision> = quotas
        .iter()
        .filter_map(|q| {
            let m = metrics.iter().find(|m| m.name == q.metric)?;
            Some(decide(q, m, readings))
        })
        .collect();
    let capped = |m: &Asked<'_>| -> u32 {
        let Some(asked) = m.replicas else {
            // a metric that cannot say holds the count, as in the plan's highest need
            return current;
        };
        decisions
            .iter()
            .filter(|d| d.metric == m.name)
            .filter_map(|d| cap_of(d, current))
            .fold(asked, u32::min)
    };
    let in_force = decisions.iter().any(|d| d.admits.is_some());
    let ceiling = in_force.then(|| {
        metrics
            .iter()
            .map(capped)
            .max()
            .unwrap_or(current)
            .max(min_replicas)
    });
    let mut out = Ceiling {
        count,
        ceiling,
        limited: false,
        limit: None,
        quotas: decisions,
    };
    if let Some(c) = ceiling.filter(|c| *c < count) {
        out.limit = Some((
            UpstreamLimit::Limited,
            limited_message(count, c, current, min_replicas, &out.quotas),
        ));
        out.count = c;
        out.limited = true;
    } else if let Some(message) = unavailable_message(&out.quotas) {
        out.limit = Some((UpstreamLimit::Unavailable, message));
    }
    out
}

/// The limit in force for `q` and what it admits for its metric `m`.
fn decide(q: &Quota, m: &Asked<'_>, readings: &[QuotaReading]) -> QuotaDecision {
    let reading = readings
        .iter()
        .find(|r| r.metric == q.metric)
        .map(|r| &r.value);
    let (per_minute, from) = match reading {
        Some(Ok(v)) if v.is_finite() && *v >= MIN_QUERIED_LIMIT => (Some(*v), LimitFrom::Query),
        Some(Ok(v)) => fallback(
            q,
            QuotaFailure {
                // the planner knows no CRD: the `ForecastAvailable` reason of an empty answer
                reason: "EmptyQueryResult",
                message: format!(
                    "the query returned {}, not a limit per minute (at least {})",
                    fmt_limit(*v),
                    fmt_limit(MIN_QUERIED_LIMIT)
                ),
            },
        ),
        Some(Err(f)) => fallback(q, f.clone()),
        None if q.queried && q.per_minute.is_none() => fallback(
            q,
            QuotaFailure {
                reason: "EmptyQueryResult",
                message: "the query was not read".into(),
            },
        ),
        None => (q.per_minute, LimitFrom::Static),
    };
    QuotaDecision {
        metric: q.metric.clone(),
        per_minute,
        from,
        admits: per_minute.map(|l| replicas_for(q.unit.load_of(l), m.target_per_replica)),
        asked: m.replicas,
    }
}

/// The static limit after a failed query, or none.
fn fallback(q: &Quota, failure: QuotaFailure) -> (Option<f64>, LimitFrom) {
    match q.per_minute {
        Some(l) => (Some(l), LimitFrom::StaticAfterFailure(failure)),
        None => (None, LimitFrom::Unavailable(failure)),
    }
}

/// What `d` caps its metric at: what it admits; a limit read by a query, or the static one
/// after a failed query, never below the current count.
fn cap_of(d: &QuotaDecision, current: u32) -> Option<u32> {
    let admits = d.admits?;
    Some(match d.from {
        LimitFrom::Query | LimitFrom::StaticAfterFailure(_) => admits.max(current),
        LimitFrom::Static | LimitFrom::Unavailable(_) => admits,
    })
}

/// Why the count was capped: the first limit that binds (its quota, what it admits, what was
/// asked), and the ceiling.
fn limited_message(
    count: u32,
    ceiling: u32,
    current: u32,
    min_replicas: u32,
    quotas: &[QuotaDecision],
) -> String {
    let binding = quotas.iter().find(|d| d.binds());
    let why = binding
        .map(|d| {
            format!(
                "the upstream limit of metric {} ({}/min{}) admits {} replicas, {} asked",
                d.metric,
                fmt_limit(d.per_minute.unwrap_or_default()),
                from_words(&d.from),
                d.admits.unwrap_or_default(),
                d.asked.unwrap_or_default(),
            )
        })
        .unwrap_or_else(|| "the upstream limits admit fewer replicas".into());
    let from = binding.map(|d| &d.from);
    let floor = match from {
        _ if ceiling == min_replicas => " (minReplicas)",
        Some(LimitFrom::StaticAfterFailure(_)) if ceiling == current => {
            " (the current count: a failing limit query never scales down)"
        }
        Some(LimitFrom::Query) if ceiling == current => {
            " (the current count: a limit read by a query never scales down on its own)"
        }
        _ => "",
    };
    format!(
        "{why}: the desired count {count} is capped at {ceiling}{floor}; more quota, not more replicas, would serve more"
    )
}

/// Why a limit is not what the spec reads it from, if one is not.
fn unavailable_message(quotas: &[QuotaDecision]) -> Option<String> {
    quotas.iter().find_map(|d| match &d.from {
        LimitFrom::StaticAfterFailure(f) => Some(format!(
            "the upstream limit of metric {} could not be read ({}: {}): using perMinute {} and \
             never below the current count",
            d.metric,
            f.reason,
            f.message,
            fmt_limit(d.per_minute.unwrap_or_default())
        )),
        LimitFrom::Unavailable(f) => Some(format!(
            "the upstream limit of metric {} could not be read ({}: {}): no ceiling from it",
            d.metric, f.reason, f.message
        )),
        _ => None,
    })
}

fn from_words(from: &LimitFrom) -> String {
    match from {
        LimitFrom::Static | LimitFrom::Unavailable(_) => String::new(),
        LimitFrom::Query => ", read from its query".into(),
        LimitFrom::StaticAfterFailure(f) => {
            format!(
                ", the static perMinute: its query failed, {}: {}",
                f.reason, f.message
            )
        }
    }
}

/// A limit for a message: whole numbers without decimals.
pub fn fmt_limit(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(metric: &str, per_minute: Option<f64>, queried: bool) -> Quota {
        Quota {
            metric: metric.into(),
            per_minute,
            unit: MetricUnit::PerSecond,
            queried,
        }
    }

    fn asked(name: &str, target: f64, replicas: Option<u32>) -> Asked<'_> {
        Asked {
            name,
            target_per_replica: target,
            replicas,
        }
    }

    #[test]
    fn a_per_minute_limit_admits_ceil_of_its_load_over_the_target() {
        // 6000/min of a per-second metric is 100/s; at 40 per replica: ceil(2.5) = 3
        let q = [quota("requests", Some(6000.0), false)];
        let m = [asked("requests", 40.0, Some(20))];
        let c = apply(20, 10, 1, &m, &q, &[]);
        assert_eq!((c.count, c.ceiling, c.limited), (3, Some(3), true));
        let (limit, message) = c.limit.unwrap();
        assert_eq!(limit, UpstreamLimit::Limited);
        assert_eq!(
            message,
            "the upstream limit of metric requests (6000/min) admits 3 replicas, 20 asked: the \
             desired count 20 is capped at 3; more quota, not more replicas, would serve more"
        );
        assert!(c.quotas[0].binds());
        // the same quota on a per-minute metric is 6000 a minute: 150 replicas, no cap
        let per_min = [Quota {
            unit: MetricUnit::PerMinute,
            ..q[0].clone()
        }];
        let c = apply(20, 10, 1, &m, &per_min, &[]);
        assert_eq!((c.count, c.ceiling, c.limit), (20, Some(20), None));
        assert_eq!(c.quotas[0].admits, Some(150));
        // a count the quota admits stands
        let m = [asked("requests", 40.0, Some(3))];
        let c = apply(3, 3, 1, &m, &q, &[]);
        assert_eq!((c.count, c.limited, c.limit), (3, false, None));
    }

    #[test]
    fn never_below_min_replicas() {
        let q = [quota("requests", Some(600.0), false)];
        let m = [asked("requests", 40.0, Some(20))];
        let c = apply(20, 20, 5, &m, &q, &[]);
        assert_eq!((c.count, c.ceiling), (5, Some(5)));
        assert!(c.limit.unwrap().1.contains("capped at 5 (minReplicas)"));
    }

    #[test]
    fn each_limit_caps_its_own_metric_and_the_count_is_the_most_any_then_asks() {
        // requests: 6000/min at 40 -> 3; tokens: 600000/min (10000/s) at 500 -> 20
        let q = [
            quota("requests", Some(6000.0), false),
            quota("tokens", Some(600_000.0), false),
        ];
        let m = [
            asked("requests", 40.0, Some(10)),
            asked("tokens", 500.0, Some(30)),
        ];
        let c = apply(30, 30, 1, &m, &q, &[]);
        assert_eq!(
            c.count, 20,
            "the tighter RPM does not starve the tokens' load"
        );
        // a metric without a limit is not capped
        let m = [
            asked("requests", 40.0, Some(10)),
            asked("cpu", 1.0, Some(12)),
        ];
        let c = apply(12, 12, 1, &m, &q[..1], &[]);
        assert_eq!((c.count, c.limited), (12, false));
        // a metric without data holds the current count
        let m = [asked("requests", 40.0, None)];
        let c = apply(8, 8, 1, &m, &q[..1], &[]);
        assert_eq!((c.count, c.limited), (8, false));
    }

    #[test]
    fn a_queried_limit_wins_and_a_failed_query_never_scales_down() {
        let q = [quota("requests", Some(6000.0), true)];
        let m = [asked("requests", 40.0, Some(20))];
        let read = |value| {
            [QuotaReading {
                metric: "requests".into(),
                value,
            }]
        };
        // the query says 12000/min: 200/s, 5 replicas; a scale-up from 3 stops there
        let c = apply(20, 3, 1, &m, &q, &read(Ok(12000.0)));
        assert_eq!(c.count, 5);
        assert_eq!(c.quotas[0].from, LimitFrom::Query);
        assert!(
            c.limit
                .unwrap()
                .1
                .contains("(12000/min, read from its query)"),
            "the message names the query"
        );
        // it fails: the static 6000 (3 replicas), but never below the current 10
        let failed = QuotaFailure {
            reason: "MetricsSourceUnavailable",
            message: "connection refused".into(),
        };
        let c = apply(20, 10, 1, &m, &q, &read(Err(failed.clone())));
        assert_eq!((c.count, c.limited), (10, true));
        let message = c.limit.unwrap().1;
        assert!(
            message.starts_with(
                "the upstream limit of metric requests (6000/min, the static perMinute: its query \
                 failed, MetricsSourceUnavailable: connection refused) admits 3 replicas, 20 asked: \
                 the desired count 20 is capped at 10 (the current count: a failing limit query \
                 never scales down)"
            ),
            "{message}"
        );
        assert!(matches!(c.quotas[0].from, LimitFrom::StaticAfterFailure(_)));
        // ... and with a count already under the static cap nothing is capped, but it says why
        let low = [asked("requests", 40.0, Some(2))];
        let c = apply(2, 2, 1, &low, &q, &read(Err(failed.clone())));
        assert_eq!(c.count, 2);
        let (limit, message) = c.limit.unwrap();
        assert_eq!(limit, UpstreamLimit::Unavailable);
        assert!(
            message
                .contains("(MetricsSourceUnavailable: connection refused): using perMinute 6000"),
            "{message}"
        );
        // no static limit: no ceiling, and why
        let only_query = [quota("requests", None, true)];
        let c = apply(20, 10, 1, &m, &only_query, &read(Err(failed)));
        assert_eq!((c.count, c.ceiling), (20, None));
        assert!(c.limit.unwrap().1.ends_with("no ceiling from it"));
        // a zero, negative, NaN or sub-unit limit is no limit: treated as a failure
        for v in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.5] {
            let c = apply(20, 10, 1, &m, &only_query, &read(Ok(v)));
            assert_eq!((c.count, c.ceiling), (20, None), "{v}");
            assert_eq!(c.limit.unwrap().0, UpstreamLimit::Unavailable);
        }
        // a query-only limit never read (simulate): no ceiling
        let c = apply(20, 10, 1, &m, &only_query, &[]);
        assert_eq!((c.count, c.ceiling), (20, None));
    }

    #[test]
    fn a_limit_of_a_metric_not_in_the_decision_is_ignored() {
        let q = [quota("tokens", Some(60.0), false)];
        let m = [asked("requests", 40.0, Some(20))];
        let c = apply(20, 10, 1, &m, &q, &[]);
        assert_eq!((c.count, c.ceiling, c.limit), (20, None, None));
        assert!(c.quotas.is_empty());
    }

    #[test]
    fn a_queried_limit_never_lowers_the_count_on_its_own() {
        // issue 21: a limit query that returns a tiny value capped every metric at minReplicas
        let q = [quota("requests", None, true)];
        let m = [asked("requests", 40.0, Some(20))];
        let read = |v: f64| {
            [QuotaReading {
                metric: "requests".into(),
                value: Ok(v),
            }]
        };
        // a plausible small quota (60/min: 1/s, one replica) at 10 replicas asking for 20:
        // held at 10, not lowered to 1
        let c = apply(20, 10, 1, &m, &q, &read(60.0));
        assert_eq!((c.count, c.ceiling, c.limited), (10, Some(10), true));
        let (limit, message) = c.limit.unwrap();
        assert_eq!(limit, UpstreamLimit::Limited);
        assert_eq!(
            message,
            "the upstream limit of metric requests (60/min, read from its query) admits 1 \
             replicas, 20 asked: the desired count 20 is capped at 10 (the current count: a \
             limit read by a query never scales down on its own); more quota, not more \
             replicas, would serve more"
        );
        // the load falls: the count follows it, the quota does not hold it up
        let low = [asked("requests", 40.0, Some(4))];
        let c = apply(4, 10, 1, &low, &q, &read(60.0));
        assert_eq!((c.count, c.limited), (4, false));
        // a value below one a minute is not a limit: no ceiling (no perMinute), and why
        let c = apply(20, 10, 1, &m, &q, &read(0.002));
        assert_eq!((c.count, c.ceiling), (20, None));
        let (limit, message) = c.limit.unwrap();
        assert_eq!(limit, UpstreamLimit::Unavailable);
        assert!(
            message.contains(
                "(EmptyQueryResult: the query returned 0.002, not a limit per minute (at least 1))"
            ),
            "{message}"
        );
        // a static perMinute still lowers the count
        let fixed = [quota("requests", Some(60.0), false)];
        let c = apply(20, 10, 1, &m, &fixed, &[]);
        assert_eq!(c.count, 1);
    }
}
