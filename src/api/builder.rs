//! A chainable fixture builder for `PredictiveScaler`s, shared by the unit tests and the
//! integration tests (which see only the library's public items, hence not `#[cfg(test)]`):
//!
//! ```
//! use prescale::api::{Mode, PredictiveScaler};
//!
//! let ps = PredictiveScaler::test("shop", "llm-proxy")
//!     .metric("requests", "sum(rate(proxy_requests_total[2m]))", "40")
//!     .mode(Mode::DryRun)
//!     .min_max(2, 60)
//!     .build();
//! assert_eq!(ps.spec.scale_target_ref.name, "llm-proxy");
//! assert_eq!(ps.spec.history.lookback, "1d");
//! ```
//!
//! The defaults are the settings most tests want: a short history and horizon, so a real
//! Prometheus needs only a day of backfill, and no scale-down stabilization, so a test sees a
//! scale-down at once. Everything the builder does not set keeps the CRD's own default.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::v1alpha1::{
    Fallback, MetricSpec, Mode, ModelKind, PredictiveScaler, PredictiveScalerSpec, ScaleTargetRef,
};

impl PredictiveScaler {
    /// A fixture named `name` in `namespace`, to be refined with [`ScalerFixture`]'s methods and
    /// finished with [`ScalerFixture::build`] (the typed resource) or [`ScalerFixture::json`]
    /// (the manifest to send to an API server).
    ///
    /// Its defaults: target the `apps/v1` Deployment called `name`; 1 to 50 replicas; `Active`;
    /// one metric `requests` = `proxy_rps` from the source `default` at 10 per replica; history
    /// `1d` at `1m`; horizon `1h`, refit every `10m`; scale-down stabilization `0s`; fallback
    /// `Reactive`. All other fields keep the CRD's defaults.
    pub fn test(namespace: &str, name: &str) -> ScalerFixture {
        let mut spec: PredictiveScalerSpec = serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "maxReplicas": 50,
            "metrics": [],
        }))
        .expect("a minimal spec deserializes");
        spec.metrics.push(metric("requests", "proxy_rps", "10"));
        spec.history.lookback = "1d".into();
        spec.forecast.horizon = "1h".into();
        spec.scale_down.stabilization_window = "0s".into();
        let mut scaler = PredictiveScaler::new(name, spec);
        scaler.metadata.namespace = Some(namespace.into());
        ScalerFixture {
            scaler,
            default_metric: true,
            raw: Vec::new(),
        }
    }
}

/// A `PredictiveScaler` under construction; see [`PredictiveScaler::test`] for the defaults.
/// Every method takes and returns the fixture, so calls chain; it is `Clone`, so one base can
/// serve several variants.
#[derive(Clone, Debug)]
#[must_use = "a fixture does nothing until it is built"]
pub struct ScalerFixture {
    scaler: PredictiveScaler,
    /// Whether `metrics` still holds only the default metric (the next `metric` replaces it).
    default_metric: bool,
    /// Raw JSON overrides, `(JSON pointer, value)`, applied in order over the typed fields.
    raw: Vec<(String, Value)>,
}

impl ScalerFixture {
    /// Target the `apps/v1` Deployment `name` (default: the scaler's own name).
    pub fn target(self, name: &str) -> Self {
        self.target_ref("apps/v1", "Deployment", name)
    }

    /// Target any workload with a `/scale` subresource, or none (a kind the API lacks).
    pub fn target_ref(mut self, api_version: &str, kind: &str, name: &str) -> Self {
        self.scaler.spec.scale_target_ref = ScaleTargetRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
        };
        self
    }

    /// `minReplicas` and `maxReplicas` (default 1 and 50).
    pub fn min_max(mut self, min: i32, max: i32) -> Self {
        self.scaler.spec.min_replicas = min;
        self.scaler.spec.max_replicas = max;
        self
    }

    /// Set `allowScaleToZero` (default false).
    pub fn allow_scale_to_zero(mut self) -> Self {
        self.scaler.spec.allow_scale_to_zero = true;
        self
    }

    /// `Active` (the default) or `DryRun`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.scaler.spec.mode = mode;
        self
    }

    /// A metric from the source `default`. The first call replaces the default metric; later
    /// calls add more. `target_per_replica` is a quantity, e.g. `"10"` or `"1k"`.
    pub fn metric(mut self, name: &str, query: &str, target_per_replica: &str) -> Self {
        if std::mem::take(&mut self.default_metric) {
            self.scaler.spec.metrics.clear();
        }
        self.scaler
            .spec
            .metrics
            .push(metric(name, query, target_per_replica));
        self
    }

    /// The source of the metric added last (default `default`).
    pub fn source(mut self, source: &str) -> Self {
        self.scaler
            .spec
            .metrics
            .last_mut()
            .expect("a fixture always has a metric")
            .source = source.into();
        self
    }

    /// Sizes the metric added last on concurrent requests (Little's law), with the mean
    /// request duration read by `duration_query`.
    pub fn concurrency(mut self, duration_query: &str) -> Self {
        self.scaler
            .spec
            .metrics
            .last_mut()
            .expect("a fixture always has a metric")
            .concurrency = Some(super::ConcurrencySpec {
            duration_query: duration_query.into(),
        });
        self
    }

    /// `history.lookback` and `history.step` (default `1d` and `1m`).
    pub fn history(mut self, lookback: &str, step: &str) -> Self {
        self.scaler.spec.history.lookback = lookback.into();
        self.scaler.spec.history.step = step.into();
        self
    }

    /// `forecast.model` (default `Auto`).
    pub fn model(mut self, model: ModelKind) -> Self {
        self.scaler.spec.forecast.model = model;
        self
    }

    /// `forecast.horizon` (default `1h`).
    pub fn horizon(mut self, horizon: &str) -> Self {
        self.scaler.spec.forecast.horizon = horizon.into();
        self
    }

    /// `forecast.refreshInterval` (default `10m`).
    pub fn refresh_interval(mut self, interval: &str) -> Self {
        self.scaler.spec.forecast.refresh_interval = interval.into();
        self
    }

    /// `forecast.quantile` (default unset: chosen at every fit).
    pub fn quantile(mut self, quantile: f64) -> Self {
        self.scaler.spec.forecast.quantile = Some(quantile);
        self
    }

    /// `scaleUp.leadTime` (default `5m`).
    pub fn lead_time(mut self, lead_time: &str) -> Self {
        self.scaler.spec.scale_up.lead_time = lead_time.into();
        self
    }

    /// `scaleDown.stabilizationWindow` and `scaleDown.maxPercentPerMinute` (default `0s` and 10).
    pub fn scale_down(mut self, stabilization_window: &str, max_percent_per_minute: i32) -> Self {
        self.scaler.spec.scale_down.stabilization_window = stabilization_window.into();
        self.scaler.spec.scale_down.max_percent_per_minute = max_percent_per_minute;
        self
    }

    /// `scaleDown.drainAware` reading `pod_query` from the source `default` (its other fields
    /// keep their defaults: label `pod`, `maxWait` `5m`).
    pub fn drain_aware(mut self, pod_query: &str) -> Self {
        self.scaler.spec.scale_down.drain_aware = Some(super::v1alpha1::DrainAwareSpec {
            source: "default".into(),
            pod_query: Some(pod_query.into()),
            pod_label: "pod".into(),
            max_wait: "5m".into(),
        });
        self
    }

    /// `fallback` (default `Reactive`).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.scaler.spec.fallback = fallback;
        self
    }

    /// `metadata.generation`, `metadata.uid` and `metadata.resourceVersion`, as an API server
    /// would have set them (default: unset, as in a manifest).
    pub fn stored(mut self, generation: i64, uid: &str, resource_version: &str) -> Self {
        let meta = &mut self.scaler.metadata;
        meta.generation = Some(generation);
        meta.uid = Some(uid.into());
        meta.resource_version = Some(resource_version.into());
        self
    }

    /// Set the field at the JSON pointer `pointer` (e.g. `/spec/forecast/quantile`) to `value`
    /// as it is, creating missing objects on the way: for values the typed fields cannot hold,
    /// such as invalid specs an API server must refuse. Applied after the typed settings,
    /// whatever the order of the calls.
    pub fn with(mut self, pointer: &str, value: Value) -> Self {
        self.raw.push((pointer.into(), value));
        self
    }

    /// The manifest: `apiVersion`, `kind`, `metadata` and the whole `spec` (defaults included),
    /// with the [`with`](Self::with) overrides applied.
    pub fn json(self) -> Value {
        let mut json = serde_json::to_value(&self.scaler).expect("a PredictiveScaler serializes");
        for (pointer, value) in self.raw {
            *pointer_mut(&mut json, &pointer) = value;
        }
        json
    }

    /// The typed resource. Panics if a [`with`](Self::with) override made it unreadable.
    pub fn build(self) -> PredictiveScaler {
        let json = self.json();
        serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("the fixture is not a PredictiveScaler ({e}): {json}"))
    }
}

fn metric(name: &str, query: &str, target_per_replica: &str) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        source: "default".into(),
        query: query.into(),
        target_per_replica: Quantity(target_per_replica.into()),
        concurrency: None,
        group_by: Vec::new(),
        max_series: None,
    }
}

/// The value at the JSON pointer `pointer` in `json`, created as `null` (with any missing
/// objects on the way) when absent. Panics on a path through a non-object or past an array.
fn pointer_mut<'a>(json: &'a mut Value, pointer: &str) -> &'a mut Value {
    let tokens = pointer
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("a JSON pointer starts with '/': {pointer:?}"))
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"));
    tokens.fold(json, |cur, token| match cur {
        Value::Object(map) => map.entry(token).or_insert(Value::Null),
        Value::Array(items) => token
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .unwrap_or_else(|| panic!("{pointer}: no element {token}")),
        Value::Null => {
            *cur = Value::Object(Default::default());
            cur.as_object_mut()
                .expect("just made an object")
                .entry(token)
                .or_insert(Value::Null)
        }
        other => panic!("{pointer}: {token} inside a non-object {other}"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let json = PredictiveScaler::test("ns", "proxy").json();
        assert_eq!(json["apiVersion"], "prescale.dev/v1alpha1");
        assert_eq!(json["kind"], "PredictiveScaler");
        assert_eq!(
            json["metadata"],
            json!({"name": "proxy", "namespace": "ns"})
        );
        let spec = &json["spec"];
        assert_eq!(
            spec["scaleTargetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "proxy"})
        );
        assert_eq!(
            (&spec["minReplicas"], &spec["maxReplicas"]),
            (&json!(1), &json!(50))
        );
        assert_eq!(spec["mode"], "Active");
        assert_eq!(
            spec["metrics"],
            json!([{"name": "requests", "source": "default", "query": "proxy_rps", "targetPerReplica": "10"}])
        );
        assert_eq!(spec["history"], json!({"lookback": "1d", "step": "1m"}));
        assert_eq!(spec["forecast"]["horizon"], "1h");
        assert_eq!(spec["forecast"]["refreshInterval"], "10m");
        assert_eq!(spec["scaleDown"]["stabilizationWindow"], "0s");
        assert_eq!(spec["fallback"], "Reactive");
        assert!(json.get("status").is_none());
    }

    #[test]
    fn the_first_metric_replaces_the_default_and_later_ones_add() {
        let ps = PredictiveScaler::test("ns", "p")
            .metric("requests", "q1", "10")
            .source("proxied")
            .metric("tokens", "q2", "1k")
            .build();
        let names: Vec<_> = ps.spec.metrics.iter().map(|m| &m.name[..]).collect();
        assert_eq!(names, ["requests", "tokens"]);
        assert_eq!(ps.spec.metrics[0].source, "proxied");
        assert_eq!(ps.spec.metrics[1].source, "default");
        assert_eq!(ps.spec.metrics[1].target_per_replica.0, "1k");
    }

    #[test]
    fn raw_overrides_apply_last_and_create_missing_objects() {
        let json = PredictiveScaler::test("ns", "p")
            .with("/spec/minReplicas", json!(-1))
            .with("/spec/metrics/0/targetPerReplica", json!(40))
            .with("/spec/unknown/field", json!("x"))
            .min_max(2, 60)
            .json();
        assert_eq!(json["spec"]["minReplicas"], -1);
        assert_eq!(json["spec"]["maxReplicas"], 60);
        assert_eq!(json["spec"]["metrics"][0]["targetPerReplica"], 40);
        assert_eq!(json["spec"]["unknown"], json!({"field": "x"}));
    }

    #[test]
    #[should_panic(expected = "no element 3")]
    fn a_pointer_past_an_array_panics() {
        let _ = PredictiveScaler::test("ns", "p")
            .with("/spec/metrics/3/name", json!("x"))
            .json();
    }
}
