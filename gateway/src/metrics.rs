//! The gateway's metrics, served on `/metrics` in the Prometheus text format.

use std::{fmt::Write, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// What became of a request to the API (every path but the probes and `/metrics`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Within capacity: answered 200.
    Served,
    /// Over capacity: answered 429.
    Rejected,
    /// Still warming up: answered 503.
    Warming,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Served, Outcome::Rejected, Outcome::Warming];

    /// The `outcome` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Rejected => "rejected",
            Outcome::Warming => "warming",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    pub in_flight: Gauge,
    pub duration: Histogram,
    pub capacity: Gauge<f64, AtomicU64>,
    pub ready: Gauge,
}

impl Metrics {
    /// Registers the metrics; the capacity gauge is set to `capacity` (requests/s).
    pub fn new(capacity: f64) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<OutcomeLabels, Counter>::default();
        // every outcome shows from the start, at 0
        for outcome in Outcome::ALL {
            let _ = requests.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "gateway_requests",
            "API requests by outcome: served (200), rejected over capacity (429), warming (503)",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "gateway_in_flight_requests",
            "API requests being handled now",
            in_flight.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "gateway_request_duration_seconds",
            "How long served requests took, in seconds",
            duration.clone(),
        );
        let capacity_gauge = Gauge::<f64, AtomicU64>::default();
        capacity_gauge.set(capacity);
        registry.register(
            "gateway_capacity_requests_per_second",
            "The requests per second this pod serves; above it, requests get 429",
            capacity_gauge.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "gateway_ready",
            "1 once the warm-up has passed and the pod serves requests, else 0",
            ready.clone(),
        );
        Metrics {
            registry,
            requests,
            in_flight,
            duration,
            capacity: capacity_gauge,
            ready,
        }
    }

    /// Counts one request's outcome.
    pub fn count(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// How many requests had `outcome` so far.
    pub fn requests(&self, outcome: Outcome) -> u64 {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
