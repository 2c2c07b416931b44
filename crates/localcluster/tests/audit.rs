//! The audit log sees writes: what the "no write loops" checks of every operator rely on.
//! (The apply below names no object in its body: kube-apiserver takes the URL's name, and
//! devcluster now does too.)

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use localcluster::TestEnv;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_the_namespace_are_seen_and_reads_are_not() {
    let env = TestEnv::new("audit").await;
    let api = env.api::<ConfigMap>();
    let mark = env.cluster().audit_mark();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "seen"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.patch(
        "seen",
        &PatchParams::apply("audit-test"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}})),
    )
    .await
    .unwrap();
    api.get("seen").await.unwrap();
    api.list(&Default::default()).await.unwrap();
    let ns = env.namespace().to_owned();
    let writes = testkit::eventually("both writes audited", Duration::from_secs(10), || {
        // Only this test's own: the controller manager also writes into a new namespace.
        let writes = env.cluster().writes_since(mark, |r| {
            // A create names its object in the audit log of kube-apiserver, not devcluster's.
            r.namespace == ns && r.resource == "configmaps" && matches!(r.name, "seen" | "")
        });
        async move { (writes.len() >= 2).then_some(writes) }
    })
    .await;
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes[0].starts_with(&format!("create configmaps {ns}/")),
        "{writes:?}"
    );
    assert!(
        writes[1].starts_with(&format!("patch configmaps {ns}/seen")),
        "{writes:?}"
    );
    assert!(
        env.cluster()
            .writes_since(env.cluster().audit_mark(), |_| true)
            .is_empty(),
        "nothing after the end"
    );
}
