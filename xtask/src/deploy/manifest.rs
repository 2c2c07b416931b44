//! The rendered overlay as a list of objects: split from kustomize's YAML stream (each
//! document's text kept as kustomize wrote it), ordered for applying and deleting, with
//! kubecrew's image references rewritten. Everything here is pure.

use anyhow::{Context, bail};
use serde_json::Value;

/// The registry and path prefix the bases name kubecrew's images with.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/kubecrew";

/// One object of the rendered overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (none for cluster-scoped objects).
    pub namespace: Option<String>,
    /// For a CustomResourceDefinition: the group and kind it defines.
    pub defines: Option<(String, String)>,
    /// The document's YAML, without the `---` separator.
    pub yaml: String,
}

impl Object {
    /// Whether this is a CustomResourceDefinition.
    pub fn is_crd(&self) -> bool {
        self.kind == "CustomResourceDefinition"
            && self.api_version.starts_with("apiextensions.k8s.io/")
    }

    /// Whether this is a Namespace.
    pub fn is_namespace(&self) -> bool {
        self.kind == "Namespace" && self.api_version == "v1"
    }

    /// The API group of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `namespace/name` or `name`, for messages.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Splits kustomize's output into its documents (separated by lines that are exactly `---`;
/// inside a block scalar such a line would be indented, so it is always a separator) and reads
/// each one's identity. Empty documents are dropped.
pub fn parse(stream: &str) -> anyhow::Result<Vec<Object>> {
    let mut documents = vec![String::new()];
    for line in stream.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else {
            let current = documents.last_mut().expect("never empty");
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .enumerate()
        .map(|(i, yaml)| object(yaml).with_context(|| format!("document {} of the overlay", i + 1)))
        .collect()
}

fn object(yaml: String) -> anyhow::Result<Object> {
    let value: Value = serde_saphyr::from_str(&yaml).context("not YAML")?;
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    let (Some(api_version), Some(kind), Some(name)) =
        (text("/apiVersion"), text("/kind"), text("/metadata/name"))
    else {
        bail!("an object needs apiVersion, kind and metadata.name");
    };
    let defines = match (text("/spec/group"), text("/spec/names/kind")) {
        (Some(group), Some(defined)) if kind == "CustomResourceDefinition" => {
            Some((group.to_owned(), defined.to_owned()))
        }
        _ => None,
    };
    Ok(Object {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: text("/metadata/namespace").map(str::to_owned),
        defines,
        yaml,
    })
}

/// The objects in apply order: CRDs, then Namespaces, then everything else in kustomize's
/// order (which already puts RBAC before workloads). Custom resources in the overlay are then
/// never sent before their CRD, nor namespaced objects before their namespace.
pub fn apply_order(objects: &[Object]) -> Vec<Object> {
    let rank = |o: &Object| {
        if o.is_crd() {
            0
        } else if o.is_namespace() {
            1
        } else {
            2
        }
    };
    let mut ordered = objects.to_vec();
    // A stable sort keeps kustomize's order within each rank.
    ordered.sort_by_key(rank);
    ordered
}

/// The objects in delete order: everything but CRDs and Namespaces in reverse apply order, then
/// the Namespaces, then the CRDs (deleting a CRD deletes its custom resources, so it goes last).
pub fn delete_order(objects: &[Object]) -> Vec<Object> {
    let mut ordered = apply_order(objects);
    ordered.reverse();
    let (early, late): (Vec<Object>, Vec<Object>) = ordered
        .into_iter()
        .partition(|o| !o.is_crd() && !o.is_namespace());
    let (namespaces, crds): (Vec<Object>, Vec<Object>) =
        late.into_iter().partition(Object::is_namespace);
    early.into_iter().chain(namespaces).chain(crds).collect()
}

/// Joins documents into one YAML stream.
pub fn stream<'a>(objects: impl IntoIterator<Item = &'a Object>) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&object.yaml);
    }
    out
}

/// What to change in kubecrew's image references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOverride {
    /// Registry and path prefix replacing [`DEFAULT_REGISTRY`].
    pub registry: Option<String>,
    /// Tag replacing each reference's tag (and any digest, which would pin the old image).
    pub tag: Option<String>,
}

impl ImageOverride {
    /// Checks the values before they end up in a manifest.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(tag) = &self.tag {
            // The OCI distribution grammar for a tag.
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                bail!(
                    "invalid image tag {tag:?}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
                );
            }
        }
        if let Some(registry) = &self.registry {
            let trimmed = registry.trim_end_matches('/');
            let valid = !trimmed.is_empty()
                && !trimmed.starts_with('/')
                && !trimmed.contains("//")
                && trimmed
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'));
            if !valid {
                bail!(
                    "invalid registry {registry:?}: expected a host and path such as ghcr.io/kubecrew or localhost:5000/kubecrew"
                );
            }
        }
        Ok(())
    }
}

/// Rewrites every reference to one of kubecrew's images (`ghcr.io/kubecrew/<image>[:tag]`,
/// `<image>` one of `images`) in `yaml`: container images and the values that name an image,
/// such as nes-controller's `NES_AGENT_IMAGE`, which kustomize's `images:` transformer would not
/// touch. Other images are left alone. Returns the new text and the references it wrote.
pub fn rewrite_images(
    yaml: &str,
    images: &[&str],
    change: &ImageOverride,
) -> (String, Vec<String>) {
    let prefix = format!("{DEFAULT_REGISTRY}/");
    let is_boundary = |c: Option<char>| {
        c.is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '[' | ']' | '{' | '}'))
    };
    let mut out = String::with_capacity(yaml.len());
    let mut written = Vec::new();
    let mut rest = yaml;
    while let Some(at) = rest.find(&prefix) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let preceded_ok = is_boundary(out.chars().last());
        let after = &from[prefix.len()..];
        let end = after
            .find(|c: char| is_boundary(Some(c)))
            .unwrap_or(after.len());
        let reference = &after[..end];
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        let (name, tag) = match name_tag.split_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (name_tag, None),
        };
        if !preceded_ok || !images.contains(&name) {
            out.push_str(&prefix);
            rest = after;
            continue;
        }
        let registry = change
            .registry
            .as_deref()
            .map_or(DEFAULT_REGISTRY, |r| r.trim_end_matches('/'));
        let mut new = format!("{registry}/{name}");
        match (&change.tag, tag, digest) {
            (Some(t), _, _) => new.push_str(&format!(":{t}")),
            (None, Some(t), d) => {
                new.push_str(&format!(":{t}"));
                if let Some(d) = d {
                    new.push_str(&format!("@{d}"));
                }
            }
            (None, None, Some(d)) => new.push_str(&format!("@{d}")),
            (None, None, None) => {}
        }
        out.push_str(&new);
        written.push(new);
        rest = &after[end..];
    }
    out.push_str(rest);
    (out, written)
}

/// The header of `cargo xtask installer`'s file: how it was made and how to apply it.
pub fn installer_header(
    overlay: &str,
    change: &ImageOverride,
    output: &str,
    objects: &[Object],
) -> String {
    let mut command = format!("cargo xtask installer --overlay {overlay}");
    if let Some(tag) = &change.tag {
        command.push_str(&format!(" --image-tag {tag}"));
    }
    if let Some(registry) = &change.registry {
        command.push_str(&format!(" --registry {registry}"));
    }
    command.push_str(&format!(" --output {output}"));
    let crds = objects.iter().filter(|o| o.is_crd()).count();
    format!(
        "# kubecrew installer: deploy/overlays/{overlay} rendered by kustomize, CRDs first\n\
         # ({} objects, {crds} of them CustomResourceDefinitions).\n\
         # Generated by `{command}`; do not edit, regenerate.\n\
         #\n\
         # Install:    kubectl apply --server-side -f {output}\n\
         # Uninstall:  kubectl delete --ignore-not-found -f {output}\n\
         #             (this deletes the CRDs, and with them every custom resource of their\n\
         #             kinds; from a checkout, `cargo xtask undeploy --overlay {overlay}` deletes\n\
         #             in reverse order, CRDs last, and can keep them: --keep-crds)\n",
        objects.len()
    )
}

/// The objects a server-side dry run can check, and those it cannot because what they need
/// does not exist on the cluster yet (the dry run creates nothing, so a namespace or CRD of the
/// overlay is not there for what follows it).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DryRunPlan {
    /// Checked with `--dry-run=server`.
    pub server: Vec<Object>,
    /// Namespaced objects whose namespace is missing: checked with `--dry-run=client`.
    pub client: Vec<Object>,
    /// Custom resources whose CRD is not installed: the cluster cannot check them at all.
    pub unchecked: Vec<Object>,
}

/// Sorts `objects` (no CRDs or Namespaces: those are checked first, on their own) by what a
/// dry run can do with them, given the overlay's namespaces and CRDs missing from the cluster.
pub fn dry_run_plan(
    objects: &[Object],
    missing_namespaces: &[String],
    missing_crds: &[Object],
) -> DryRunPlan {
    let mut plan = DryRunPlan::default();
    for object in objects {
        let kind_missing = missing_crds.iter().any(|crd| {
            crd.defines
                .as_ref()
                .is_some_and(|(g, k)| g == object.group() && k == &object.kind)
        });
        let namespace_missing = object
            .namespace
            .as_ref()
            .is_some_and(|ns| missing_namespaces.contains(ns));
        if kind_missing {
            plan.unchecked.push(object.clone());
        } else if namespace_missing {
            plan.client.push(object.clone());
        } else {
            plan.server.push(object.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: kubecrew-system
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  names:
    kind: Widget
    plural: widgets
  scope: Namespaced
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: op
  namespace: kubecrew-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: op
  namespace: kubecrew-system
spec:
  template:
    spec:
      containers:
      - image: ghcr.io/kubecrew/kafkanotify:0.1.0
        env:
        - name: NES_AGENT_IMAGE
          value: ghcr.io/kubecrew/nes-agent:0.1.0
        - name: NOTE
          value: |
            ---
            not a separator
---
apiVersion: example.io/v1
kind: Widget
metadata:
  name: w
  namespace: kubecrew-system
";

    fn kinds(objects: &[Object]) -> Vec<&str> {
        objects.iter().map(|o| o.kind.as_str()).collect()
    }

    #[test]
    fn documents_are_split_and_identified() {
        let objects = parse(RENDERED).unwrap();
        assert_eq!(
            kinds(&objects),
            [
                "Namespace",
                "CustomResourceDefinition",
                "ServiceAccount",
                "Deployment",
                "Widget"
            ]
        );
        assert!(objects[1].is_crd());
        assert_eq!(
            objects[1].defines,
            Some(("example.io".into(), "Widget".into()))
        );
        assert_eq!(objects[2].namespace.as_deref(), Some("kubecrew-system"));
        assert_eq!(objects[0].namespace, None);
        assert!(objects[3].yaml.contains("not a separator"));
        assert_eq!(objects[4].group(), "example.io");
        assert_eq!(objects[2].group(), "");
        assert_eq!(objects[3].display_name(), "kubecrew-system/op");
    }

    #[test]
    fn a_document_without_identity_is_an_error_naming_it() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: Foo\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("document 2"), "{err:#}");
        assert!(format!("{err:#}").contains("metadata.name"), "{err:#}");
        assert!(parse("a: [unclosed\n").is_err());
        assert_eq!(parse("---\n# only a comment\n---\n").unwrap(), vec![]);
    }

    #[test]
    fn crds_are_applied_first_and_deleted_last() {
        let objects = parse(RENDERED).unwrap();
        assert_eq!(
            kinds(&apply_order(&objects)),
            [
                "CustomResourceDefinition",
                "Namespace",
                "ServiceAccount",
                "Deployment",
                "Widget"
            ]
        );
        assert_eq!(
            kinds(&delete_order(&objects)),
            [
                "Widget",
                "Deployment",
                "ServiceAccount",
                "Namespace",
                "CustomResourceDefinition"
            ]
        );
    }

    #[test]
    fn a_stream_parses_back_to_the_same_objects() {
        let objects = apply_order(&parse(RENDERED).unwrap());
        assert_eq!(parse(&stream(&objects)).unwrap(), objects);
    }

    const IMAGES: &[&str] = &["kafkanotify", "nes-agent"];

    #[test]
    fn only_kubecrew_images_are_rewritten() {
        let yaml = "image: ghcr.io/kubecrew/kafkanotify:0.1.0\n\
                    value: \"ghcr.io/kubecrew/nes-agent:0.1.0\"\n\
                    image: ghcr.io/kubecrew/other:0.1.0\n\
                    image: docker.io/ghcr.io/kubecrew/kafkanotify:1\n\
                    image: ghcr.io/kubecrew/kafkanotify-extra:1\n\
                    image: ghcr.io/kubecrew/nes-agent\n";
        let change = ImageOverride {
            registry: Some("localhost:5000/me/".into()),
            tag: Some("dev-1".into()),
        };
        let (out, written) = rewrite_images(yaml, IMAGES, &change);
        assert_eq!(
            out,
            "image: localhost:5000/me/kafkanotify:dev-1\n\
             value: \"localhost:5000/me/nes-agent:dev-1\"\n\
             image: ghcr.io/kubecrew/other:0.1.0\n\
             image: docker.io/ghcr.io/kubecrew/kafkanotify:1\n\
             image: ghcr.io/kubecrew/kafkanotify-extra:1\n\
             image: localhost:5000/me/nes-agent:dev-1\n"
        );
        assert_eq!(written.len(), 3);
    }

    #[test]
    fn a_tag_alone_keeps_the_registry_and_replaces_a_digest() {
        let yaml = "- image: ghcr.io/kubecrew/kafkanotify@sha256:abc\n- image: ghcr.io/kubecrew/nes-agent:0.1.0\n";
        let tag = ImageOverride {
            registry: None,
            tag: Some("0.2.0".into()),
        };
        let (out, _) = rewrite_images(yaml, IMAGES, &tag);
        assert_eq!(
            out,
            "- image: ghcr.io/kubecrew/kafkanotify:0.2.0\n- image: ghcr.io/kubecrew/nes-agent:0.2.0\n"
        );
        let registry = ImageOverride {
            registry: Some("quay.io/x".into()),
            tag: None,
        };
        let (out, _) = rewrite_images(yaml, IMAGES, &registry);
        assert_eq!(
            out,
            "- image: quay.io/x/kafkanotify@sha256:abc\n- image: quay.io/x/nes-agent:0.1.0\n"
        );
        let (same, written) = rewrite_images(yaml, IMAGES, &ImageOverride::default());
        assert_eq!(same, yaml);
        assert_eq!(written.len(), 2);
    }

    #[test]
    fn bad_tags_and_registries_are_refused() {
        let tag = |t: &str| ImageOverride {
            registry: None,
            tag: Some(t.into()),
        };
        let registry = |r: &str| ImageOverride {
            registry: Some(r.into()),
            tag: None,
        };
        assert!(tag("0.2.0-rc.1").validate().is_ok());
        assert!(registry("localhost:5000/kubecrew").validate().is_ok());
        for bad in ["", "-x", "a b", "a:b", &"x".repeat(129)] {
            let err = tag(bad).validate().unwrap_err().to_string();
            assert!(err.contains("invalid image tag"), "{bad:?}: {err}");
        }
        for bad in ["", "/", "a b/c", "x//y", "/abs"] {
            let err = registry(bad).validate().unwrap_err().to_string();
            assert!(err.contains("invalid registry"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_installer_header_says_how_it_was_made_and_how_to_apply_it() {
        let objects = parse(RENDERED).unwrap();
        let change = ImageOverride {
            registry: None,
            tag: Some("0.2.0".into()),
        };
        let header = installer_header("all", &change, "dist/install.yaml", &objects);
        assert!(header.contains(
            "`cargo xtask installer --overlay all --image-tag 0.2.0 --output dist/install.yaml`"
        ));
        assert!(header.contains("kubectl apply --server-side -f dist/install.yaml"));
        assert!(header.contains("5 objects, 1 of them"));
        assert!(header.lines().all(|l| l.starts_with('#')));
    }

    #[test]
    fn a_dry_run_checks_on_the_server_what_the_server_can_check() {
        let objects = parse(RENDERED).unwrap();
        let crd = objects[1].clone();
        let rest: Vec<Object> = objects[2..].to_vec();
        let plan = dry_run_plan(&rest, &[], &[]);
        assert_eq!(
            kinds(&plan.server),
            ["ServiceAccount", "Deployment", "Widget"]
        );
        let plan = dry_run_plan(&rest, &["kubecrew-system".into()], &[crd]);
        assert_eq!(kinds(&plan.server), Vec::<&str>::new());
        assert_eq!(kinds(&plan.client), ["ServiceAccount", "Deployment"]);
        assert_eq!(kinds(&plan.unchecked), ["Widget"]);
    }
}
