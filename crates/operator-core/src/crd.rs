//! Printing an operator's CustomResourceDefinitions as YAML (the `crd` subcommand every
//! operator binary has, and what `cargo xtask crds` writes to `deploy/crds/`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Multi-document YAML of the CRDs, each starting with `---`.
pub fn to_yaml(crds: &[CustomResourceDefinition]) -> Result<String, crate::Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(crd).map_err(|e| crate::Error::Serialize(e.to_string()))?,
        );
    }
    Ok(out)
}
