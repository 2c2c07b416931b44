//! The nes CRDs on the test binary's cluster (the real kube-apiserver in CI, devcluster by
//! default; see localcluster): accepted as structural schemas, instances round-trip, and the
//! schema refuses what it must.

use kube::api::{Api, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use localcluster::TestEnv;
use nes_api::crd::{NetworkCare, NetworkConfiguration, NetworkConfigurationSpec};
use nes_api::{Address, Route};
use serde_json::json;

#[tokio::test]
async fn crds_install_and_instances_round_trip() {
    let env = TestEnv::new("nes-crd").await;
    env.install_crd(&NetworkConfiguration::crd()).await;
    env.install_crd(&NetworkCare::crd()).await;

    let configs: Api<NetworkConfiguration> = env.api();
    let spec = NetworkConfigurationSpec {
        pod: "app-0".into(),
        vlans: vec![],
        addresses: vec![Address {
            interface: "eth0".into(),
            cidr: "10.1.2.3/24".into(),
        }],
        routes: vec![Route {
            destination: "default".into(),
            gateway: Some("10.1.2.1".parse().unwrap()),
            interface: None,
            metric: Some(10),
            table: None,
        }],
    };
    let created = configs
        .create(
            &PostParams::default(),
            &NetworkConfiguration::new("app-0", spec.clone()),
        )
        .await
        .expect("create");
    assert_eq!(created.name_any(), "app-0");
    assert_eq!(configs.get("app-0").await.expect("get").spec, spec);

    let cares: Api<NetworkCare> = env.api();
    let care: NetworkCare = serde_json::from_value(json!({
        "apiVersion": "nes.kubecrew.io/v1alpha1",
        "kind": "NetworkCare",
        "metadata": {"name": "watcher"},
        "spec": {
            "pods": {"selector": {"matchLabels": {"app": "x"}}},
            "filter": {"changes": ["link"]},
            "callback": {"url": "http://watcher.default:8080/report"}
        }
    }))
    .expect("a valid NetworkCare");
    cares
        .create(&PostParams::default(), &care)
        .await
        .expect("create NetworkCare");

    // The schema refuses a callback that is not http(s).
    let mut bad = care.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.callback.url = "ftp://x".into();
    let error = cares
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("spec.callback.url"), "{error}");

    // At most 1,000 items per list: the API server refuses the 1,001st (maxItems).
    let addresses = |n: usize| -> Vec<Address> {
        (0..n)
            .map(|i| Address {
                interface: "eth0".into(),
                cidr: format!("10.{}.{}.1/32", i / 256, i % 256),
            })
            .collect()
    };
    let full = NetworkConfigurationSpec {
        pod: "app-1".into(),
        addresses: addresses(nes_api::MAX_ITEMS_PER_KIND),
        ..Default::default()
    };
    configs
        .create(
            &PostParams::default(),
            &NetworkConfiguration::new("app-1", full),
        )
        .await
        .expect("1,000 addresses are allowed");
    let over = NetworkConfigurationSpec {
        pod: "app-2".into(),
        addresses: addresses(nes_api::MAX_ITEMS_PER_KIND + 1),
        ..Default::default()
    };
    let error = configs
        .create(
            &PostParams::default(),
            &NetworkConfiguration::new("app-2", over),
        )
        .await
        .expect_err("1,001 addresses are refused");
    let text = error.to_string();
    assert!(
        text.contains("spec.addresses") && text.contains("1000"),
        "{text}"
    );
}
