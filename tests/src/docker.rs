//! The local Docker engine in tests: connecting (tests fail, never skip, without one) and
//! running a shell command in a container.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures::StreamExt;

/// The local engine; panics with the command that starts one.
pub async fn engine() -> Docker {
    Docker::connect_with_defaults()
        .expect("address the Docker engine")
        .negotiate_version()
        .await
        .unwrap_or_else(|e| panic!("no Docker engine answers ({e}): run `sudo infra/docker-up.sh`"))
}

/// Runs `script` with `sh -c` in a container and returns what it printed.
pub async fn sh(docker: &Docker, container: &str, script: &str) -> anyhow::Result<String> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    else {
        anyhow::bail!("exec started detached");
    };
    let mut printed = String::new();
    while let Some(frame) = output.next().await {
        if let LogOutput::StdOut { message } | LogOutput::StdErr { message } = frame? {
            printed.push_str(&String::from_utf8_lossy(&message));
        }
    }
    Ok(printed)
}
