//! Every PredictiveScaler shipped in `examples/` (and the kind e2e's, in `tests/e2e/`) is one
//! a user can apply: the CRD's CEL rules accept it (kube's `validate_cel`, as the API server
//! would), it reads into the Rust type, and the operator's own spec check (`validate`)
//! accepts it. The schema itself, with unknown fields as errors, is checked by
//! `tests/harness/validate_cr.py` in scripts/check_chart.sh.

use std::path::{Path, PathBuf};

use kube::{CustomResourceExt, core::cel::Validator};
use prescale::api::{PredictiveScaler, validate};
use serde_json::Value;

fn manifests() -> Vec<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["examples", "tests/e2e"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            if value["kind"] == "PredictiveScaler" {
                out.push((path.clone(), value));
            }
        }
    }
    out
}

#[test]
fn every_example_passes_the_cel_rules_and_the_operators_checks() {
    let crd = serde_json::to_value(PredictiveScaler::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let all = manifests();
    let names: Vec<String> = all
        .iter()
        .map(|(p, v)| format!("{} {}", p.display(), v["metadata"]["name"]))
        .collect();
    for (path, value) in &all {
        let at = format!("{} ({})", path.display(), value["metadata"]["name"]);
        Validator::new()
            .validate(schema, value, None)
            .unwrap_or_else(|e| panic!("{at}: the CRD's CEL rules refuse it: {e:?}"));
        let ps: PredictiveScaler = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{at}: does not read as a PredictiveScaler: {e}"));
        validate(&ps.spec).unwrap_or_else(|e| panic!("{at}: {e}"));
    }
    for wanted in [
        "examples/litellm.yaml",
        "examples/ingress-nginx.yaml",
        "examples/envoy.yaml",
        "examples/openai-compatible-proxy.yaml",
        "examples/dryrun.yaml",
        "examples/predictivescaler.yaml",
        "examples/schedules.yaml",
        "examples/floor-mode.yaml",
        "examples/guards.yaml",
        "examples/upstream-quota.yaml",
        "examples/learned-lead-time.yaml",
        "examples/concurrency.yaml",
        "examples/cache-miss.yaml",
        "examples/drain-aware.yaml",
        "examples/per-model.yaml",
        "tests/e2e/predictivescaler.yaml",
    ] {
        assert!(
            names.iter().any(|n| n.contains(wanted)),
            "{wanted} holds no PredictiveScaler; found {names:#?}"
        );
    }
    assert!(
        all.iter()
            .any(|(p, v)| p.ends_with("dryrun.yaml") && v["spec"]["mode"] == "DryRun"),
        "the DryRun example is not in DryRun"
    );
    assert!(
        all.iter().any(|(p, v)| p.ends_with("schedules.yaml")
            && v["spec"]["schedules"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["start"].is_string())
                    && s.iter().any(|s| s["cron"].is_string()))),
        "the schedules example has no one-off and no cron window"
    );
    for kind in ["HorizontalPodAutoscaler", "ScaledObject"] {
        assert!(
            all.iter().any(|(p, v)| p.ends_with("floor-mode.yaml")
                && v["spec"]["scaleTargetRef"]["kind"] == kind),
            "the floor-mode example has no scaler on a {kind}"
        );
    }
    assert!(
        all.iter()
            .any(|(p, v)| p.ends_with("learned-lead-time.yaml")
                && v["spec"]["scaleUp"]["leadTime"] == "Auto"),
        "the learned-lead-time example does not learn its lead time"
    );
    for file in ["concurrency.yaml", "cache-miss.yaml"] {
        assert!(
            all.iter().any(|(p, v)| p.ends_with(file)
                && v["spec"]["metrics"].as_array().is_some_and(|m| m
                    .iter()
                    .any(|m| m["concurrency"]["durationQuery"].is_string()))),
            "the {file} example has no metric sized on concurrency"
        );
    }
    assert!(
        all.iter().any(|(p, v)| p.ends_with("drain-aware.yaml")
            && v["spec"]["scaleDown"]["drainAware"]["podQuery"]
                .as_str()
                .is_some_and(|q| q.starts_with("sum by (pod)"))),
        "the drain-aware example reads no per-pod query"
    );
    assert!(
        all.iter().any(|(p, v)| p.ends_with("per-model.yaml")
            && v["spec"]["metrics"][0]["groupBy"] == serde_json::json!(["model"])),
        "the per-model example does not group by model"
    );
    assert!(
        all.iter().any(|(p, v)| p.ends_with("upstream-quota.yaml")
            && v["spec"]["upstream"]["limits"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["query"].is_string())
                    && l.iter().any(|l| l["query"].is_null()))),
        "the upstream-quota example has no static and no queried limit"
    );
    println!("{} passed, 0 failed: {names:#?}", all.len());
}

#[test]
fn the_proxy_examples_say_how_to_pick_target_per_replica_and_lead_time() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "litellm.yaml",
        "ingress-nginx.yaml",
        "envoy.yaml",
        "openai-compatible-proxy.yaml",
        "dryrun.yaml",
    ] {
        let text = std::fs::read_to_string(root.join("examples").join(file)).unwrap();
        for topic in ["How to pick targetPerReplica", "How to pick leadTime"] {
            assert!(
                text.contains(topic),
                "examples/{file}: no {topic:?} comment"
            );
        }
    }
}
