//! The Endpoints and EndpointSlice controllers of kube-controller-manager.
//!
//! For every Service with a non-empty selector that is not `ExternalName`, both list the pods
//! the selector selects in the Service's namespace that have an address and are not terminal
//! (see [`backends`]):
//! - the Endpoints controller keeps an Endpoints object named like the Service, with the
//!   Service's labels: ready pods under `addresses`, unready ones under `notReadyAddresses`,
//!   terminating ones left out (all of them listed as ready with `publishNotReadyAddresses`),
//!   in subsets per resolved port set (see [`subsets`]);
//! - the EndpointSlice controller keeps EndpointSlices controlled by the Service, at most
//!   100 endpoints each, with ready/serving/terminating conditions (see [`slices`]).
//!
//! Services without a selector get their Endpoints and EndpointSlices from their users (the
//! admission webhook tests, for one, point selector-less Services at 127.0.0.1 by hand);
//! nothing here touches those.
//!
//! Both run as one work-queue controller (see [`workqueue`]): a sync reads the Service, the
//! namespace's pods, and the Service's Endpoints and EndpointSlices fresh, and writes only
//! what differs, so watchers see no churn. A pod change queues its namespace's Services; an
//! Endpoints or EndpointSlice change queues its Service, so hand edits are reverted.
//!
//! A deleted Service's EndpointSlices go with it through the garbage collector. Its Endpoints
//! have no owner, so, as upstream, this controller deletes them when it sees the Service go.

mod backends;
mod slices;
mod subsets;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::workqueue::{self, Key, Target};

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming an EndpointSlice's manager.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller, as [`MANAGED_BY_LABEL`] names it.
const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label marking the Endpoints and slices of a Service without a cluster IP.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// When the change a write reflects happened.
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Backoff before deleting a deleted Service's Endpoints again after a failure.
const ERROR_RETRY: Duration = Duration::from_secs(1);

/// Runs the Endpoints and EndpointSlice controllers until `shutdown` is cancelled. API errors
/// are logged and retried.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    let secondaries = vec![
        // Any pod of the namespace may be selected, or stop being.
        workqueue::secondary(Api::<Pod>::all(client.clone()), workqueue::namespace_of),
        workqueue::secondary(Api::<Endpoints>::all(client.clone()), same_name),
        workqueue::secondary(Api::<EndpointSlice>::all(client.clone()), slice_service),
    ];
    let sync = |(namespace, name): Key| {
        let client = client.clone();
        async move {
            let sync = Sync {
                client: &client,
                namespace: &namespace,
                name: &name,
            };
            sync.run().await
        }
    };
    let controller = workqueue::run(
        "endpoints",
        Api::<Service>::all(client.clone()),
        secondaries,
        sync,
        shutdown.clone(),
    );
    tokio::join!(
        controller,
        delete_endpoints_of_deleted_services(client.clone(), shutdown)
    );
}

/// The Service an Endpoints object belongs to: the one of the same name.
fn same_name(endpoints: &Endpoints) -> Option<Target> {
    let meta = &endpoints.metadata;
    Some(Target::Key((meta.namespace.clone()?, meta.name.clone()?)))
}

/// The Service an EndpointSlice belongs to, by its service-name label.
fn slice_service(slice: &EndpointSlice) -> Option<Target> {
    let meta = &slice.metadata;
    let service = meta.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(Target::Key((meta.namespace.clone()?, service.clone())))
}

/// Sets (or, without a time, removes) the trigger-time annotation of an object to write.
fn stamp_trigger_time(meta: &mut ObjectMeta, trigger: Option<jiff::Timestamp>) {
    let annotations = meta.annotations.get_or_insert_default();
    match trigger {
        Some(t) => {
            annotations.insert(TRIGGER_TIME_ANNOTATION.to_owned(), t.to_string());
        }
        None => {
            annotations.remove(TRIGGER_TIME_ANNOTATION);
        }
    }
}

/// Why a sync failed; logged, and the sync retried.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// One sync of one Service.
struct Sync<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    name: &'a str,
}

impl Sync<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Brings the Service's Endpoints and EndpointSlices up to date; both are attempted even
    /// when one fails.
    async fn run(&self) -> Result<Option<Duration>, SyncError> {
        let Some(svc) = self.api::<Service>().get_opt(self.name).await? else {
            return Ok(None);
        };
        let Some(selector) = backends::managed_selector(&svc) else {
            return Ok(None);
        };
        let pods = self.api::<Pod>().list(&ListParams::default()).await?.items;
        let selected: Vec<&Pod> = pods
            .iter()
            .filter(|p| backends::selects(selector, p))
            .collect();
        let trigger = backends::trigger_time(&svc, &selected);
        let endpoints = self.sync_endpoints(&svc, &selected, trigger).await;
        let slices = self.sync_slices(&svc, &selected, trigger).await;
        endpoints?;
        slices?;
        Ok(None)
    }

    async fn sync_endpoints(
        &self,
        svc: &Service,
        pods: &[&Pod],
        trigger: Option<jiff::Timestamp>,
    ) -> Result<(), SyncError> {
        let api = self.api::<Endpoints>();
        let wanted = subsets::desired_subsets(svc, pods);
        let labels = subsets::desired_labels(svc);
        let current = api.get_opt(self.name).await?;
        if current
            .as_ref()
            .is_some_and(|c| subsets::up_to_date(c, &wanted, &labels))
        {
            return Ok(());
        }
        let exists = current.is_some();
        let endpoints = subsets::desired_endpoints(svc, current, wanted, labels, trigger);
        if exists {
            api.replace(self.name, &PostParams::default(), &endpoints)
                .await?;
        } else {
            api.create(&PostParams::default(), &endpoints).await?;
        }
        tracing::debug!(namespace = %self.namespace, service = %self.name,
            "endpoints controller: wrote endpoints");
        Ok(())
    }

    async fn sync_slices(
        &self,
        svc: &Service,
        pods: &[&Pod],
        trigger: Option<jiff::Timestamp>,
    ) -> Result<(), SyncError> {
        let api = self.api::<EndpointSlice>();
        let managed = format!(
            "{SERVICE_NAME_LABEL}={},{MANAGED_BY_LABEL}={CONTROLLER_NAME}",
            self.name
        );
        let existing: Vec<EndpointSlice> = api
            .list(&ListParams::default().labels(&managed))
            .await?
            .items
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect();
        let plan = slices::plan(svc, pods, existing, slices::MAX_ENDPOINTS_PER_SLICE);
        if plan.is_empty() {
            return Ok(());
        }
        tracing::debug!(namespace = %self.namespace, service = %self.name,
            create = plan.create.len(), update = plan.update.len(), delete = plan.delete.len(),
            "endpointslice controller: writing slices");
        for mut slice in plan.create {
            stamp_trigger_time(&mut slice.metadata, trigger);
            api.create(&PostParams::default(), &slice).await?;
        }
        for mut slice in plan.update {
            stamp_trigger_time(&mut slice.metadata, trigger);
            let name = slice.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &PostParams::default(), &slice).await?;
        }
        for slice in plan.delete {
            let name = slice.metadata.name.unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Deletes the Endpoints of deleted Services until `shutdown` is cancelled. The work queue
/// forgets a deleted primary, so this follows Service deletions itself: deletion events, and
/// Services a relist after a watch gap no longer shows. Endpoints without a Service that it
/// never saw are left alone (a client may create Endpoints before their Service).
async fn delete_endpoints_of_deleted_services(client: kube::Client, shutdown: CancellationToken) {
    let services = watcher::watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let mut services = std::pin::pin!(services);
    let mut seen = SeenServices::default();
    let mut pending: BTreeSet<Key> = BTreeSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            event = services.next() => match event {
                Some(Ok(event)) => pending.extend(seen.observe(event)),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "endpoints controller: service watch failed, retrying");
                }
                None => return,
            },
            _ = tokio::time::sleep(ERROR_RETRY), if !pending.is_empty() => {}
        }
        for key in std::mem::take(&mut pending) {
            let attempt = delete_endpoints_of(&client, &key);
            let Some(result) = shutdown.run_until_cancelled(attempt).await else {
                return;
            };
            if let Err(e) = result {
                tracing::debug!(namespace = %key.0, service = %key.1, error = %e,
                    "endpoints controller: could not delete endpoints, retrying");
                pending.insert(key);
            }
        }
    }
}

/// Deletes the Endpoints of a deleted Service, unless the Service exists again (then they are
/// its sync's business).
async fn delete_endpoints_of(client: &kube::Client, key: &Key) -> Result<(), kube::Error> {
    let (namespace, name) = key;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    if services.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    match endpoints.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::debug!(%namespace, service = %name,
                "endpoints controller: deleted endpoints of deleted service");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Services a watch has shown, to tell which ones went away.
#[derive(Debug, Default)]
struct SeenServices {
    known: BTreeSet<Key>,
    /// Services seen by a relist in progress; replaces `known` when it completes.
    listed: BTreeSet<Key>,
}

impl SeenServices {
    /// Records a watch event; returns the Services it shows gone.
    fn observe(&mut self, event: Event<Service>) -> Vec<Key> {
        let key =
            |svc: &Service| Some((svc.metadata.namespace.clone()?, svc.metadata.name.clone()?));
        match event {
            Event::Init => {
                self.listed.clear();
                Vec::new()
            }
            Event::InitApply(svc) => {
                if let Some(k) = key(&svc) {
                    self.listed.insert(k.clone());
                    self.known.insert(k);
                }
                Vec::new()
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut self.listed);
                let gone = self.known.difference(&listed).cloned().collect();
                self.known = listed;
                gone
            }
            Event::Apply(svc) => {
                self.known.extend(key(&svc));
                Vec::new()
            }
            Event::Delete(svc) => {
                let gone: Vec<Key> = key(&svc).into_iter().collect();
                for k in &gone {
                    self.known.remove(k);
                }
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(namespace: &str, name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    fn key(namespace: &str, name: &str) -> Key {
        (namespace.into(), name.into())
    }

    #[test]
    fn deletions_and_relist_gaps_report_services_gone() {
        let mut seen = SeenServices::default();
        assert!(seen.observe(Event::Apply(svc("a", "x"))).is_empty());
        assert!(seen.observe(Event::Apply(svc("a", "y"))).is_empty());
        assert_eq!(seen.observe(Event::Delete(svc("a", "x"))), [key("a", "x")]);
        // y disappears while the watch is down; the relist shows z only.
        seen.observe(Event::Init);
        seen.observe(Event::InitApply(svc("a", "z")));
        assert_eq!(seen.observe(Event::InitDone), [key("a", "y")]);
        seen.observe(Event::Init);
        seen.observe(Event::InitApply(svc("a", "z")));
        assert!(seen.observe(Event::InitDone).is_empty());
    }

    #[test]
    fn endpoints_and_slices_map_to_their_service() {
        let endpoints = Endpoints {
            metadata: svc("a", "web").metadata,
            subsets: None,
        };
        assert_eq!(same_name(&endpoints), Some(Target::Key(key("a", "web"))));
        let mut slice = EndpointSlice {
            metadata: svc("a", "web-x1y2z").metadata,
            ..EndpointSlice::default()
        };
        assert_eq!(slice_service(&slice), None);
        slice.metadata.labels = Some([(SERVICE_NAME_LABEL.to_owned(), "web".to_owned())].into());
        assert_eq!(slice_service(&slice), Some(Target::Key(key("a", "web"))));
    }

    #[test]
    fn the_trigger_time_is_stamped_or_cleared() {
        let mut meta = ObjectMeta::default();
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        stamp_trigger_time(&mut meta, Some(at));
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(annotations[TRIGGER_TIME_ANNOTATION], "2023-11-14T22:13:20Z");
        stamp_trigger_time(&mut meta, None);
        assert!(meta.annotations.unwrap_or_default().is_empty());
    }
}
