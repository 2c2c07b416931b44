//! The agent's write token: a Secret (default `nes-agent-token`, key `token`) in every namespace
//! with a labelled StatefulSet. The sidecar mounts it (the agent requires it on `PUT`s) and
//! nes-manager reads it to authenticate. Created when missing, never overwritten: rotating it is
//! deleting it (the next reconcile makes a new one; agents read the file on each request).
//! Its value is never logged.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::template::OPERATOR;

/// The key holding the token.
pub const TOKEN_KEY: &str = "token";

/// A new token: 32 random bytes from the OS-seeded CSPRNG, hex-encoded (64 characters, safe in
/// an HTTP header and a file).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The Secret `name` in `namespace` holding `token`.
pub fn secret(namespace: &str, name: &str, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    OPERATOR.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some([(TOKEN_KEY.to_owned(), ByteString(token.as_bytes().to_vec()))].into()),
        ..Secret::default()
    }
}

/// What [`ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The Secret was there (whatever its content: it is never overwritten).
    Existed,
    /// This call created it.
    Created,
}

/// Makes sure Secret `name` exists in `namespace`: created with a new token when missing; a
/// concurrent creation (409 AlreadyExists) counts as existing.
pub async fn ensure(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Ensured, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    // A read first: in the steady state it is there, and a GET is cheaper than a failed create.
    if api.get_metadata_opt(name).await?.is_some() {
        return Ok(Ensured::Existed);
    }
    match api
        .create(
            &PostParams::default(),
            &secret(namespace, name, &new_token()),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(%namespace, secret = name, "created the agent token Secret");
            Ok(Ensured::Created)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Ensured::Existed),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_characters_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_secret_is_opaque_labelled_with_key_token() {
        let s = secret("apps", "nes-agent-token", "abc");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(
            s.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
            "nes-controller"
        );
        assert_eq!(s.data.unwrap()[TOKEN_KEY].0, b"abc");
    }
}
