//! `crds/` must hold exactly what `prescale crd` prints (and so must the chart's copy, once
//! the chart exists). Regenerate with `UPDATE_CRDS=1 cargo test --test crd_sync` or
//! `cargo run -- crd > crds/predictivescalers.prescale.dev.yaml`.

use std::path::Path;

use kube::CustomResourceExt;
use prescale::api::PredictiveScaler;

const FILES: [&str; 2] = [
    "crds/predictivescalers.prescale.dev.yaml",
    "charts/prescale/crds/predictivescalers.prescale.dev.yaml",
];

#[test]
fn checked_in_crds_match_the_rust_types() {
    let generated = serde_yaml::to_string(&PredictiveScaler::crd()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("UPDATE_CRDS").is_some();
    let mut checked = 0;
    for file in FILES {
        let path = root.join(file);
        if !path.parent().unwrap().exists() && file.starts_with("charts/") {
            continue; // the chart arrives later
        }
        if update {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{file} is out of date with the Rust types in src/api/v1alpha1.rs.\n\
             Regenerate it with:  UPDATE_CRDS=1 cargo test --test crd_sync"
        );
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn crd_has_the_expected_shape() {
    let crd = serde_json::to_value(PredictiveScaler::crd()).unwrap();
    assert_eq!(crd["spec"]["group"], "prescale.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "psc");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Target", "Min", "Max", "Current", "Desired", "Mode", "Via", "Ready", "Limited", "Age"
        ]
    );
    // every spec field documented: descriptions become `kubectl explain`
    fn check_descriptions(schema: &serde_json::Value, path: &str) {
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let p = format!("{path}.{name}");
                assert!(prop.get("description").is_some(), "{p} has no description");
                check_descriptions(prop, &p);
                if let Some(items) = prop.get("items") {
                    check_descriptions(items, &p);
                }
            }
        }
    }
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    check_descriptions(spec, "spec");
}
