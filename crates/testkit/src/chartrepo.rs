//! A Helm chart repository for tests and the demo: charts packaged and indexed by the real
//! helm, served over HTTP (optionally behind basic auth, like a private repository).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;

use crate::tools::ToolError;

/// Packages each `(chart directory, version)` into `repo` with `helm package`, then writes
/// its `index.yaml` with `helm repo index`.
pub fn package(helm: &Path, charts: &[(&Path, &str)], repo: &Path) -> Result<(), ToolError> {
    std::fs::create_dir_all(repo)?;
    for (chart, version) in charts {
        helm_run(
            helm,
            &[
                "package".as_ref(),
                chart.as_os_str(),
                "--version".as_ref(),
                version.as_ref(),
                "--destination".as_ref(),
                repo.as_os_str(),
            ],
        )?;
    }
    helm_run(helm, &["repo".as_ref(), "index".as_ref(), repo.as_os_str()])
}

fn helm_run(helm: &Path, args: &[&std::ffi::OsStr]) -> Result<(), ToolError> {
    let out = Command::new(helm)
        .args(args)
        .output()
        .map_err(|e| ToolError::Command {
            what: format!("running {}", helm.display()),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ToolError::Command {
            what: format!("helm {args:?}"),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Serves the files of `dir` (no subdirectories) on 127.0.0.1, on the current runtime, until
/// it ends. With `basic_auth`, a request without those credentials gets 401.
pub async fn serve(dir: PathBuf, basic_auth: Option<(&str, &str)>) -> std::io::Result<SocketAddr> {
    let expected = basic_auth.map(|(user, password)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    });
    let app = axum::Router::new()
        .route("/{file}", axum::routing::get(file))
        .with_state((dir, expected));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn file(
    State((dir, expected)): State<(PathBuf, Option<String>)>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Vec<u8>, StatusCode> {
    if let Some(expected) = expected {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
    }
    if name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(StatusCode::NOT_FOUND);
    }
    tokio::fs::read(dir.join(name))
        .await
        .map_err(|_| StatusCode::NOT_FOUND)
}
