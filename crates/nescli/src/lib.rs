//! nescli: the command an application runs in its pod to change the pod's network
//! configuration, read its status and subscribe to reports, through nes-cliserver.
//!
//! - [`args`]: the command line and how flags become requests (pure).
//! - [`client`]: the HTTP calls and what failures mean for the exit code.
//! - [`render`]: the text output (pure).
//!
//! See `docs/nescli.md`.

pub mod args;
pub mod client;
pub mod render;

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde::de::DeserializeOwned;

use crate::args::{Cli, Command, Output};
use crate::client::{Client, Failure};

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), Failure> {
    let missing = |what: &str, env: &str| {
        Failure::Usage(format!(
            "this pod's {what} is unknown: set {env} (downward API) or pass --{what} before the command"
        ))
    };
    let pod = cli.pod.clone().ok_or_else(|| missing("pod", "POD_NAME"))?;
    let namespace = cli
        .namespace
        .clone()
        .ok_or_else(|| missing("namespace", "POD_NAMESPACE"))?;
    // Read before anything is sent; the token is never printed.
    let request_body = match &cli.command {
        Command::Configure(args) => Some(
            serde_json::to_value(args.request(read_file).map_err(Failure::Usage)?)
                .map_err(|e| Failure::Usage(e.to_string()))?,
        ),
        Command::Subscribe(args) => {
            Some(serde_json::to_value(args.request()).map_err(|e| Failure::Usage(e.to_string()))?)
        }
        _ => None,
    };
    let token = std::fs::read_to_string(&cli.token_file).map_err(|e| Failure::Auth {
        status: 0,
        errors: vec![nes_api::ApiError {
            code: "tokenUnreadable".into(),
            message: format!(
                "cannot read the token file {}: {e} (mount a projected service account token \
                 bound to the pod, or pass --token-file)",
                cli.token_file.display()
            ),
            field: None,
        }],
    })?;
    let client = Client::new(
        &cli.server,
        &namespace,
        &pod,
        token.trim().to_owned(),
        Duration::from_secs(cli.timeout_seconds.max(1)),
    )?;
    let json = cli.output == Output::Json;
    let body = request_body.as_ref();
    let text = match &cli.command {
        Command::Configure(_) => {
            let raw = client.call(Method::POST, "configuration", body).await?;
            shown(json, &raw, render::configuration)?
        }
        Command::Get => {
            let raw = client.call(Method::GET, "configuration", None).await?;
            shown(json, &raw, render::configuration)?
        }
        Command::Unconfigure => {
            client.call(Method::DELETE, "configuration", None).await?;
            deleted(
                json,
                &format!("Configuration of {namespace}/{pod} deleted."),
            )
        }
        Command::Status { watch: false } => {
            let raw = client.call(Method::GET, "status", None).await?;
            shown(json, &raw, render::status)?
        }
        Command::Status { watch: true } => {
            let mut lines = Box::pin(client.watch().await?);
            let mut first = true;
            while let Some(line) = lines.next().await {
                let line = line?;
                let text = if json {
                    format!("{line}\n")
                } else {
                    let separator = if first { "" } else { "\n" };
                    format!("{separator}{}", shown(false, &line, render::status)?)
                };
                first = false;
                write_out(out, &text)?;
            }
            String::new()
        }
        Command::Subscribe(_) => {
            let raw = client.call(Method::PUT, "subscription", body).await?;
            shown(json, &raw, render::subscription)?
        }
        Command::Subscription => {
            let raw = client.call(Method::GET, "subscription", None).await?;
            shown(json, &raw, render::subscription)?
        }
        Command::Unsubscribe => {
            client.call(Method::DELETE, "subscription", None).await?;
            deleted(json, &format!("Subscription of {namespace}/{pod} deleted."))
        }
    };
    write_out(out, &text)
}

fn write_out(out: &mut impl Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Usage(format!("writing the output: {e}")))
}

/// The raw JSON (with a newline) or its rendering.
fn shown<T: DeserializeOwned>(
    json: bool,
    raw: &str,
    render: fn(&T) -> String,
) -> Result<String, Failure> {
    if json {
        return Ok(format!("{}\n", raw.trim_end()));
    }
    let value: T = serde_json::from_str(raw)
        .map_err(|e| Failure::Unreachable(format!("the server's answer is not understood: {e}")))?;
    Ok(render(&value))
}

/// A DELETE's confirmation: a sentence, or `{}` for JSON (the server answers 204).
fn deleted(json: bool, sentence: &str) -> String {
    if json {
        "{}\n".to_owned()
    } else {
        format!("{sentence}\n")
    }
}

fn read_file(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
