//! Authentication with service account tokens, RBAC authorization, access reviews,
//! impersonation and the audit trail, through kube-rs and kubectl.

use std::collections::BTreeSet;
use std::time::Duration;

use devcluster::{Authorization, DevCluster, Options, Permission};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use testkit::kubectl::Kubectl;

const NS: &str = "team";
const OTHER: &str = "other";
const SA_USER: &str = "system:serviceaccount:team:op";

async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).expect("a valid object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("admin creates")
}

async fn mint_token(client: &Client, ns: &str, sa: &str, audiences: &[&str]) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        metadata: Default::default(),
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            bound_object_ref: None,
            expiration_seconds: None,
        },
        status: None,
    };
    api.create_token_request(sa, &PostParams::default(), &req)
        .await
        .expect("TokenRequest")
        .status
        .expect("TokenRequest status")
        .token
}

/// A cluster (RBAC on, no controllers) with namespaces `team` and `other`, the service account
/// `team/op`, a Role `reader` bound to it in `team` (configmaps get/list/watch, the Secret
/// `visible`, deployments get/update), a ClusterRole `ns-viewer` (namespaces get/list) bound
/// by a ClusterRoleBinding, and some objects to read. Returns the cluster and op's client.
async fn setup(authorization: Authorization) -> (DevCluster, Client) {
    let cluster = DevCluster::start(Options {
        authorization,
        controllers: devcluster::controllers::ControllerOptions::none(),
        ..Default::default()
    })
    .await
    .expect("devcluster starts");
    let admin = cluster.client();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for ns in [NS, OTHER] {
        create(&namespaces, json!({"metadata": {"name": ns}})).await;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    create(&sas, json!({"metadata": {"name": "op"}})).await;
    let roles: Api<Role> = Api::namespaced(admin.clone(), NS);
    create(
        &roles,
        json!({
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["visible"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "update"]},
            ],
        }),
    )
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NS);
    create(
        &bindings,
        json!({
            "metadata": {"name": "op-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": NS}],
        }),
    )
    .await;
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
    create(
        &cluster_roles,
        json!({
            "metadata": {"name": "ns-viewer"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}],
        }),
    )
    .await;
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    create(
        &crbs,
        json!({
            "metadata": {"name": "op-ns-viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-viewer"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:team"}],
        }),
    )
    .await;
    for ns in [NS, OTHER] {
        let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
        create(&cms, json!({"metadata": {"name": "c"}, "data": {"k": "v"}})).await;
    }
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    for name in ["visible", "hidden"] {
        create(
            &secrets,
            json!({"metadata": {"name": name}, "stringData": {"k": "v"}}),
        )
        .await;
    }
    let token = mint_token(&admin, NS, "op", &[]).await;
    let client = cluster.client_with_token(&token).expect("a client");
    (cluster, client)
}

/// The Status of a failed request.
fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

fn permissions(items: &[(&str, &str, &str)]) -> BTreeSet<Permission> {
    items
        .iter()
        .map(|(g, r, v)| Permission::new(g, r, v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_may_do_what_its_roles_grant_and_no_more() {
    let (cluster, op) = setup(Authorization::Rbac).await;
    let cms: Api<ConfigMap> = Api::namespaced(op.clone(), NS);
    assert_eq!(cms.get("c").await.unwrap().data.unwrap()["k"], "v");
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let mut events = cms
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .expect("watch is granted")
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an initial event")
        .expect("the stream is open")
        .expect("an event");
    assert!(matches!(first, WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("c")));
    drop(events);

    // The ClusterRoleBinding (to the service accounts' group) grants namespaces.
    let namespaces: Api<Namespace> = Api::all(op.clone());
    assert!(
        namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len()
            >= 2
    );
    namespaces
        .get(OTHER)
        .await
        .expect("get is granted cluster-wide");

    // A verb the Role does not grant.
    let e = status(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "new"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(e.reason, "Forbidden");
    assert_eq!(
        e.message,
        "configmaps is forbidden: User \"system:serviceaccount:team:op\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );
    // A granted resource in another namespace.
    let elsewhere: Api<ConfigMap> = Api::namespaced(op.clone(), OTHER);
    let e = status(elsewhere.get("c").await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            403,
            "configmaps \"c\" is forbidden: User \"system:serviceaccount:team:op\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"other\""
        )
    );
    // A resource nothing grants, cluster-wide.
    let pods: Api<Pod> = Api::all(op.clone());
    let Err(e) = pods.watch(&WatchParams::default(), "0").await else {
        panic!("watching pods is not granted");
    };
    let e = status(e);
    assert_eq!(
        e.message,
        "pods is forbidden: User \"system:serviceaccount:team:op\" cannot watch resource \"pods\" in API group \"\" at the cluster scope"
    );
    assert_eq!(
        namespaces
            .delete(OTHER, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| status(e).code),
        Err(403)
    );

    // resourceNames: only the named Secret, and never a list.
    let secrets: Api<Secret> = Api::namespaced(op.clone(), NS);
    secrets.get("visible").await.expect("the named secret");
    assert_eq!(status(secrets.get("hidden").await.unwrap_err()).code, 403);
    assert_eq!(
        status(secrets.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );

    // The audit trail lists exactly what op asked for, granted or not.
    let used = cluster.audit().used(SA_USER);
    assert_eq!(
        used,
        permissions(&[
            ("", "configmaps", "create"),
            ("", "configmaps", "get"),
            ("", "configmaps", "list"),
            ("", "configmaps", "watch"),
            ("", "namespaces", "delete"),
            ("", "namespaces", "get"),
            ("", "namespaces", "list"),
            ("", "pods", "watch"),
            ("", "secrets", "get"),
            ("", "secrets", "list"),
        ]),
        "{used:#?}"
    );
    let denied: BTreeSet<String> = cluster
        .audit()
        .entries_for(SA_USER)
        .iter()
        .filter(|e| e.code == 403)
        .map(|e| format!("{} {}/{}/{}", e.verb, e.namespace, e.resource, e.name))
        .collect();
    assert_eq!(
        denied,
        BTreeSet::from(
            [
                "create team/configmaps/",
                "get other/configmaps/c",
                "watch /pods/",
                "delete other/namespaces/other",
                "get team/secrets/hidden",
                "list team/secrets/",
            ]
            .map(str::to_owned)
        )
    );
    // The administrator's requests are audited under its own name.
    assert!(
        cluster
            .audit()
            .used("system:admin")
            .contains(&Permission::new(
                "rbac.authorization.k8s.io",
                "roles",
                "create"
            ))
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_subresource_needs_its_own_rule_and_bindings_take_effect_at_once() {
    let (cluster, op) = setup(Authorization::Rbac).await;
    let admin = cluster.client();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), NS);
    create(
        &deployments,
        json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    )
    .await;
    let mine: Api<Deployment> = Api::namespaced(op.clone(), NS);
    let mut d = mine.get("web").await.unwrap();
    d.metadata.labels = Some([("touched".to_owned(), "yes".to_owned())].into());
    let d = mine
        .replace("web", &PostParams::default(), &d)
        .await
        .expect("update is granted");
    let e = status(
        mine.replace_status("web", &PostParams::default(), &d)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:team:op\" cannot update resource \"deployments/status\" in API group \"apps\" in the namespace \"team\""
    );
    // Granting deployments/status allows it on the next request.
    let roles: Api<Role> = Api::namespaced(admin.clone(), NS);
    let mut role = roles.get("reader").await.unwrap();
    role.rules.get_or_insert_with(Vec::new).push(
        serde_json::from_value(
            json!({"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["update"]}),
        )
        .unwrap(),
    );
    roles
        .replace("reader", &PostParams::default(), &role)
        .await
        .unwrap();
    mine.replace_status("web", &PostParams::default(), &d)
        .await
        .expect("deployments/status is granted now");

    // Deleting the RoleBinding revokes everything it granted.
    let cms: Api<ConfigMap> = Api::namespaced(op.clone(), NS);
    cms.get("c").await.expect("granted");
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NS);
    bindings
        .delete("op-reader", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status(cms.get("c").await.unwrap_err()).code, 403);
    assert_eq!(status(mine.get("web").await.unwrap_err()).code, 403);
    // A binding to a Role that does not exist says so.
    create(
        &bindings,
        json!({
            "metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
            "subjects": [{"kind": "ServiceAccount", "name": "op"}],
        }),
    )
    .await;
    let e = status(cms.get("c").await.unwrap_err());
    assert_eq!(
        e.message,
        "configmaps \"c\" is forbidden: User \"system:serviceaccount:team:op\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team\": RBAC: role.rbac.authorization.k8s.io \"gone\" not found"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_unauthorized_and_no_token_is_the_admin() {
    let (cluster, op) = setup(Authorization::Rbac).await;
    let admin = cluster.client();
    let garbage = cluster.client_with_token("not-a-token").unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(garbage, NS);
    let e = status(cms.get("c").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
    // A token of this server for another audience does not authenticate to the API.
    let foreign = mint_token(&admin, NS, "op", &["vault"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client_with_token(&foreign).unwrap(), NS);
    assert_eq!(status(cms.get("c").await.unwrap_err()).code, 401);
    // Deleting the service account invalidates its tokens.
    let cms: Api<ConfigMap> = Api::namespaced(op.clone(), NS);
    cms.get("c").await.expect("op's token works");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    sas.delete("op", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(cms.get("c").await.unwrap_err()).code, 401);
    let unauthenticated: Vec<u16> = cluster
        .audit()
        .entries_for("")
        .iter()
        .map(|e| e.code)
        .collect();
    assert_eq!(unauthenticated, [401, 401, 401]);
    // Without a token (and with the kubeconfig's token) clients are the administrator.
    let all: Api<Secret> = Api::all(admin);
    assert!(all.list(&ListParams::default()).await.unwrap().items.len() >= 2);
    let kubectl = Kubectl::new(cluster.kubeconfig_path()).expect("kubectl on PATH");
    let out = kubectl.run(&["get", "secrets", "-A", "-o", "name"]).await;
    assert!(out.contains("secret/hidden"), "{out}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_allow_still_authenticates_and_audits() {
    let (cluster, op) = setup(Authorization::AlwaysAllow).await;
    let pods: Api<Pod> = Api::namespaced(op.clone(), OTHER);
    pods.list(&ListParams::default())
        .await
        .expect("everyone may");
    let bad = cluster.client_with_token("x.y.z").unwrap();
    let pods: Api<Pod> = Api::namespaced(bad, OTHER);
    assert_eq!(
        status(pods.list(&ListParams::default()).await.unwrap_err()).code,
        401
    );
    assert_eq!(
        cluster.audit().used(SA_USER),
        permissions(&[("", "pods", "list")])
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_and_impersonation() {
    let (cluster, op) = setup(Authorization::Rbac).await;
    let admin = cluster.client();
    let attributes = |verb: &str, resource: &str, name: Option<&str>| ResourceAttributes {
        namespace: Some(NS.into()),
        verb: Some(verb.into()),
        resource: Some(resource.into()),
        name: name.map(str::to_owned),
        ..Default::default()
    };
    // SubjectAccessReview (the administrator asks about op).
    let sars: Api<SubjectAccessReview> = Api::all(admin.clone());
    let review = |verb: &str, resource: &str, name: Option<&str>| SubjectAccessReview {
        metadata: Default::default(),
        spec: SubjectAccessReviewSpec {
            user: Some(SA_USER.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:team".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(attributes(verb, resource, name)),
            ..Default::default()
        },
        status: None,
    };
    let answer = sars
        .create(&PostParams::default(), &review("list", "configmaps", None))
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(answer.allowed);
    assert_eq!(
        answer.reason.as_deref(),
        Some(
            "RBAC: allowed by RoleBinding \"op-reader/team\" of Role \"reader\" to ServiceAccount \"op/team\""
        )
    );
    let answer = sars
        .create(&PostParams::default(), &review("list", "secrets", None))
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!answer.allowed);
    // A review without user or groups is invalid, as upstream.
    let mut empty = review("get", "pods", None);
    empty.spec.user = None;
    empty.spec.groups = None;
    assert_eq!(
        status(
            sars.create(&PostParams::default(), &empty)
                .await
                .unwrap_err()
        )
        .code,
        422
    );
    // op may not ask about others, but may ask about itself (system:basic-user).
    let theirs: Api<SubjectAccessReview> = Api::all(op.clone());
    assert_eq!(
        status(
            theirs
                .create(&PostParams::default(), &review("get", "pods", None))
                .await
                .unwrap_err()
        )
        .code,
        403
    );
    let ssars: Api<SelfSubjectAccessReview> = Api::all(op.clone());
    let own = |verb: &str, resource: &str, name: Option<&str>| SelfSubjectAccessReview {
        metadata: Default::default(),
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes(verb, resource, name)),
            ..Default::default()
        },
        status: None,
    };
    let answer = ssars
        .create(
            &PostParams::default(),
            &own("get", "secrets", Some("visible")),
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(answer.allowed);
    let answer = ssars
        .create(
            &PostParams::default(),
            &own("get", "secrets", Some("hidden")),
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!answer.allowed);

    // kubectl auth can-i as op, by impersonation from the administrator's kubeconfig.
    let kubectl = Kubectl::new(cluster.kubeconfig_path()).expect("kubectl on PATH");
    let can_i = |args: &'static [&'static str]| {
        let kubectl = kubectl.clone();
        async move {
            let mut all = vec!["auth", "can-i", "-n", NS, "--as", SA_USER];
            all.extend_from_slice(args);
            let out = kubectl.output(&all).await;
            (out.success, out.stdout.trim().to_owned(), out.stderr)
        }
    };
    for (args, expected) in [
        (&["get", "configmaps"][..], "yes"),
        (&["watch", "configmaps"][..], "yes"),
        (&["create", "configmaps"][..], "no"),
        (&["get", "secrets/visible"][..], "yes"),
        (&["get", "secrets/hidden"][..], "no"),
        (&["list", "secrets"][..], "no"),
        (&["update", "deployments.apps"][..], "yes"),
        (
            &["update", "deployments.apps", "--subresource", "status"][..],
            "no",
        ),
        (&["list", "namespaces"][..], "yes"),
    ] {
        let (success, stdout, stderr) = can_i(args).await;
        assert_eq!(
            (stdout.as_str(), success),
            (expected, expected == "yes"),
            "can-i {args:?}: {stderr}"
        );
    }
    let out = kubectl
        .output(&[
            "auth",
            "can-i",
            "get",
            "configmaps",
            "-n",
            OTHER,
            "--as",
            SA_USER,
        ])
        .await;
    assert_eq!(out.stdout.trim(), "no");
    // The impersonated requests are audited as op, impersonated by the administrator.
    let reviews: Vec<_> = cluster
        .audit()
        .entries_for(SA_USER)
        .into_iter()
        .filter(|e| e.resource == "selfsubjectaccessreviews")
        .collect();
    assert!(reviews.len() >= 10, "{reviews:#?}");
    assert!(
        reviews
            .iter()
            .filter(|e| e.impersonated_by.is_some())
            .all(|e| e.impersonated_by.as_deref() == Some("system:admin") && e.code == 201)
    );

    // op may not impersonate anyone.
    let token = mint_token(&admin, NS, "op", &[]).await;
    let mut config = kube::Config::new(cluster.url().parse().unwrap());
    config.auth_info =
        serde_json::from_value(json!({"token": token, "as": "system:admin"})).unwrap();
    let sneaky: Api<Secret> = Api::namespaced(Client::try_from(config).unwrap(), NS);
    let e = status(sneaky.get("hidden").await.unwrap_err());
    assert_eq!(
        e.message,
        "users \"system:admin\" is forbidden: User \"system:serviceaccount:team:op\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_creates_needs_create_as_well_as_patch() {
    let (cluster, op) = setup(Authorization::Rbac).await;
    let admin = cluster.client();
    let roles: Api<Role> = Api::namespaced(admin.clone(), NS);
    let mut role = roles.get("reader").await.unwrap();
    role.rules.get_or_insert_with(Vec::new).push(
        serde_json::from_value(
            json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}),
        )
        .unwrap(),
    );
    roles
        .replace("reader", &PostParams::default(), &role)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(op.clone(), NS);
    let apply = |name: &str| {
        serde_json::from_value::<ConfigMap>(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"k": "applied"}
        }))
        .unwrap()
    };
    let pp = kube::api::PatchParams::apply("op").force();
    // `patch` alone applies to an existing object...
    cms.patch("c", &pp, &kube::api::Patch::Apply(apply("c")))
        .await
        .expect("patch is granted");
    // ...but not to one the apply would create: upstream authorizes that as `create`.
    let e = status(
        cms.patch("new", &pp, &kube::api::Patch::Apply(apply("new")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "configmaps \"new\" is forbidden: User \"system:serviceaccount:team:op\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );
    assert!(
        cluster
            .audit()
            .used(SA_USER)
            .contains(&Permission::new("", "configmaps", "create")),
        "the create check is audited"
    );
    let mut role = roles.get("reader").await.unwrap();
    role.rules.get_or_insert_with(Vec::new).push(
        serde_json::from_value(
            json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}),
        )
        .unwrap(),
    );
    roles
        .replace("reader", &PostParams::default(), &role)
        .await
        .unwrap();
    let created = cms
        .patch("new", &pp, &kube::api::Patch::Apply(apply("new")))
        .await
        .expect("create and patch are granted");
    assert_eq!(created.data.unwrap()["k"], "applied");
    cluster.shutdown().await;
}
