//! The NetworkConfiguration reconciler: check the spec, find the pod and its agent, push the
//! spec when the agent holds something else, and write what the agent answered as status.
//!
//! Triggered by the resource, by its pod (same name and namespace), and by the hub when the
//! pod's agent reports a new run, generation or results.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use nes_agent::client::{AgentClient, ClientError};
use nes_api::crd::NetworkConfiguration;
use operator_core::conditions;

use crate::Error;
use crate::decide::{self, Applied, Outcome, Push};
use crate::operator::{Context, write_status};
use crate::pods;

/// How soon a pod whose agent is not healthy yet is looked at again (the hub also triggers a
/// reconcile as soon as the agent's status stream answers).
const AGENT_NOT_READY_RETRY: Duration = Duration::from_secs(2);

/// Reconciles one NetworkConfiguration.
pub async fn reconcile(nc: Arc<NetworkConfiguration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = nc.namespace().unwrap_or_default();
    let pod_name = nc.spec.pod.clone();
    let generation = nc.metadata.generation.unwrap_or(1).max(1);
    let desired = match decide::checked_config(&nc.spec) {
        Ok(config) => config,
        Err(message) => {
            report(&nc, &ctx, Outcome::Invalid(message.clone())).await?;
            ctx.runtime
                .events
                .warning(&nc.object_ref(&()), "InvalidSpec", "Validate", message)
                .await;
            return Ok(Action::await_change());
        }
    };

    let pod = Api::<Pod>::namespaced(ctx.runtime.client.clone(), &ns)
        .get_opt(&pod_name)
        .await?;
    let Some(pod) = pod else {
        let message = format!("pod {pod_name} does not exist");
        report(&nc, &ctx, waiting("PodNotFound", message)).await?;
        return Ok(Action::await_change());
    };
    let target = match pods::target(&pod) {
        Ok(target) => target,
        Err(not_ready) => {
            report(&nc, &ctx, waiting(not_ready.reason, not_ready.message)).await?;
            return Ok(Action::await_change());
        }
    };
    let url = pods::agent_url(target.ip, ctx.settings.agent_port);
    let agent =
        AgentClient::with_client(ctx.http.clone(), url, None).timeout(ctx.settings.agent_timeout);
    let failing = |message: String| Error::Agent {
        pod: pod_name.clone(),
        message,
    };

    match agent.healthy().await {
        Ok(true) => {}
        Ok(false) => {
            let message = format!("the nes-agent of pod {pod_name} is not healthy yet");
            report(&nc, &ctx, waiting("AgentNotReady", message)).await?;
            return Ok(Action::requeue(AGENT_NOT_READY_RETRY));
        }
        Err(e) => return fail(&nc, &ctx, "AgentUnreachable", failing(e.to_string())).await,
    }
    let current = match agent.config().await {
        Ok(current) => current,
        Err(e) => return fail(&nc, &ctx, "AgentUnreachable", failing(e.to_string())).await,
    };
    let applied = match decide::push(&desired, current.as_ref()) {
        Push::UpToDate => match agent.status().await {
            Ok(status) => Applied {
                generation,
                boot_id: status.boot_id,
                pod_uid: target.uid.clone(),
                results: status.results,
            },
            Err(e) => return fail(&nc, &ctx, "AgentUnreachable", failing(e.to_string())).await,
        },
        Push::Send(config) => {
            let token = match token(&ctx, &ns).await {
                Ok(token) => token,
                Err(e) => return fail(&nc, &ctx, "TokenMissing", e).await,
            };
            let writer = AgentClient::with_client(
                ctx.http.clone(),
                pods::agent_url(target.ip, ctx.settings.agent_port),
                Some(token),
            )
            .timeout(ctx.settings.agent_timeout);
            match writer.apply(&config).await {
                Ok(response) => {
                    tracing::info!(namespace = %ns, pod = %pod_name, generation,
                        agent_generation = config.generation, boot_id = %response.boot_id,
                        "configuration pushed");
                    ctx.runtime
                        .events
                        .normal(
                            &nc.object_ref(&()),
                            "Pushed",
                            "Push",
                            format!(
                                "generation {generation} pushed to the agent of pod {pod_name} (agent generation {})",
                                config.generation
                            ),
                        )
                        .await;
                    Applied {
                        generation,
                        boot_id: response.boot_id,
                        pod_uid: target.uid.clone(),
                        results: response.results,
                    }
                }
                Err(ClientError::Api {
                    status: 422,
                    errors,
                }) => {
                    // The agent knows the pod's links; an interface the spec names may not exist.
                    let message = errors
                        .iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ");
                    report(&nc, &ctx, Outcome::Invalid(message.clone())).await?;
                    ctx.runtime
                        .events
                        .warning(&nc.object_ref(&()), "InvalidSpec", "Push", message)
                        .await;
                    return Ok(Action::await_change());
                }
                Err(e @ ClientError::Api { status: 409, .. }) => {
                    // Someone wrote between our read and our write (the generation we numbered
                    // from is no longer the agent's): read again after backoff.
                    return fail(&nc, &ctx, "GenerationConflict", failing(e.to_string())).await;
                }
                Err(
                    e @ ClientError::Api {
                        status: 401 | 403, ..
                    },
                ) => {
                    let message = format!(
                        "the agent refused the token of Secret {ns}/{}: {e}",
                        ctx.settings.agent_token_secret
                    );
                    return fail(&nc, &ctx, "Unauthorized", failing(message)).await;
                }
                Err(e) => {
                    return fail(&nc, &ctx, "AgentUnreachable", failing(e.to_string())).await;
                }
            }
        }
    };
    report(&nc, &ctx, Outcome::Applied(applied)).await?;
    Ok(Action::await_change())
}

fn waiting(reason: &str, message: String) -> Outcome {
    Outcome::Waiting {
        reason: reason.to_owned(),
        message,
    }
}

/// Records a failure in the status, then fails the reconcile so it is retried with backoff.
async fn fail(
    nc: &NetworkConfiguration,
    ctx: &Context,
    reason: &str,
    error: Error,
) -> Result<Action, Error> {
    let outcome = Outcome::Failing {
        reason: reason.to_owned(),
        message: error.to_string(),
    };
    report(nc, ctx, outcome).await?;
    Err(error)
}

/// Writes the status for `outcome` when it changed.
async fn report(nc: &NetworkConfiguration, ctx: &Context, outcome: Outcome) -> Result<(), Error> {
    let current = nc.status.clone().unwrap_or_default();
    let mut next = decide::next_status(&current, &outcome, jiff::Timestamp::now());
    conditions::set_all(
        &mut next.conditions,
        decide::conditions(&outcome),
        nc.metadata.generation,
        jiff::Timestamp::now(),
    );
    next.observed_generation = nc.metadata.generation;
    write_status(&ctx.runtime.client, nc, &current, &next).await?;
    Ok(())
}

/// The agents' write token from the Secret in `namespace`. The value never leaves this
/// function except to the agent client (whose `Debug` redacts it).
async fn token(ctx: &Context, namespace: &str) -> Result<String, Error> {
    let name = &ctx.settings.agent_token_secret;
    let secret = Api::<Secret>::namespaced(ctx.runtime.client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Token(format!("Secret {namespace}/{name} does not exist")))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| b.0.clone())
        .ok_or_else(|| Error::Token(format!("Secret {namespace}/{name} has no key \"token\"")))?;
    let token = String::from_utf8(bytes)
        .map(|t| t.trim().to_owned())
        .map_err(|_| Error::Token(format!("Secret {namespace}/{name}: token is not UTF-8")))?;
    if token.is_empty() {
        return Err(Error::Token(format!(
            "Secret {namespace}/{name}: token is empty"
        )));
    }
    Ok(token)
}
