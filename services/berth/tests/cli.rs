//! The `berth` binary against real nats-server and Postgres: time travel equals what the
//! projection showed at that moment, replay's dry run finds a tampered row, a trace
//! follows one correlation, and golden files pin the table and JSON forms (ids, times
//! and sequences replaced by placeholders; `BERTH_UPDATE_GOLDEN=1` rewrites them).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use berth_schemas::vm::{VmCommand, VmStatus, VmTarget};
use berth_tests::{eventually, fast_settings, instant_sim, meta, sim_datacenter, tenant, TestEnv};

fn berth(env: &TestEnv, args: &[&str]) -> anyhow::Result<Output> {
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_NATS_URL", &env.connect.nats_url)
        .env("BERTH_DATABASE_URL", &env.connect.database_url)
        .env_remove("BERTH_TENANT")
        .output()?)
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "berth failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Replaces what differs from run to run — UUIDs, then every number (sequences,
/// times, sizes) — and drops table borders and column padding, so a golden file pins
/// the shape and the words, not the widths.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line
            .chars()
            .all(|c| c.is_whitespace() || "┌─┐╞═╡└┘".contains(c))
        {
            continue;
        }
        let numbers = replace_numbers(&replace_uuids(line));
        out.push_str(&numbers.split_whitespace().collect::<Vec<_>>().join(" "));
        out.push('\n');
    }
    out
}

fn replace_uuids(line: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < line.len() {
        let candidate = line
            .get(i..i + 36)
            .filter(|c| uuid::Uuid::parse_str(c).is_ok());
        match candidate {
            Some(_) => {
                out.push_str("<uuid>");
                i += 36;
            }
            None => {
                let c = line[i..].chars().next().expect("a char at a boundary");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn replace_numbers(line: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push_str("<n>");
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let actual = normalize(actual);
    #[allow(clippy::disallowed_methods)]
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, &actual).expect("golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: BERTH_UPDATE_GOLDEN=1 writes it",
            path.display()
        )
    });
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

#[tokio::test]
async fn state_at_a_sequence_is_the_row_the_projection_showed_then() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let provisioner = env
        .provisioner_with(fast_settings(), instant_sim(), sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    // The projection's row while the VM runs, and the sequence it was projected at.
    let then = eventually("the running row", Duration::from_secs(30), || async {
        let rows = berth_tests::vm_rows(&provisioner.db, &acme).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.id == vm && r.status == VmStatus::Running))
    })
    .await?;
    let stop = VmCommand::Stop(VmTarget {
        vm_id: vm,
        expected_version: None,
    });
    env.send(&acme, &meta(), &stop).await?;
    env.wait_vm_status(&acme, vm, VmStatus::Stopped).await?;

    let at = then.version.to_string();
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&berth(
        &env,
        &[
            "state",
            "vm",
            &vm.to_string(),
            "--at",
            &at,
            "--output",
            "json",
        ],
    )?))?;
    assert_eq!(json["version"], then.version);
    assert_eq!(json["tenant"], "acme");
    let state = &json["state"];
    assert_eq!(state["status"], then.status.as_str());
    assert_eq!(state["host"], serde_json::json!(then.host));
    assert_eq!(state["spec"]["vcpus"], then.vcpus);
    assert_eq!(state["spec"]["memory_mb"], then.memory_mb);
    assert_eq!(state["spec"]["disk_gb"], then.disk_gb);

    let now: serde_json::Value = serde_json::from_str(&stdout_of(&berth(
        &env,
        &["state", "vm", &vm.to_string(), "--output", "json"],
    )?))?;
    assert_eq!(now["state"]["status"], "stopped");
    let before_it_existed: serde_json::Value = serde_json::from_str(&stdout_of(&berth(
        &env,
        &[
            "state",
            "vm",
            &vm.to_string(),
            "--at",
            "1",
            "--output",
            "json",
        ],
    )?))?;
    assert_eq!(before_it_existed["version"], 0);

    golden(
        "state-at.txt",
        &stdout_of(&berth(
            &env,
            &["state", "vm", &vm.to_string(), "--at", &at],
        )?),
    );
    golden(
        "state-diff.txt",
        &stdout_of(&berth(
            &env,
            &[
                "state",
                "vm",
                &vm.to_string(),
                "--diff",
                &at,
                &now["version"].to_string(),
            ],
        )?),
    );
    let unknown = berth(&env, &["state", "vm", &uuid::Uuid::now_v7().to_string()])?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("berth events show"));
    provisioner.stop().await
}

// Several threads: the provisioner in this process runs the rebuild the CLI asks for
// while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread")]
async fn replay_dry_run_finds_nothing_on_a_healthy_system_and_finds_a_tampered_row(
) -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let provisioner = env
        .provisioner_with(fast_settings(), instant_sim(), sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let vm = env.create(&acme, "web").await?;
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    eventually(
        "the projection caught up",
        Duration::from_secs(30),
        || async {
            let rows = berth_tests::vm_rows(&provisioner.db, &acme).await?;
            Ok(rows
                .iter()
                .any(|r| r.status == VmStatus::Running)
                .then_some(()))
        },
    )
    .await?;

    let healthy = berth(&env, &["replay", "vms", "--dry-run"])?;
    let text = stdout_of(&healthy);
    assert!(text.contains("identical to the live rows"), "{text}");
    assert!(text.contains("dry run, live schema kept"), "{text}");

    sqlx::query("UPDATE vms.vms SET vcpus = 99 WHERE id = $1")
        .bind(vm)
        .execute(&provisioner.db)
        .await?;
    let tampered = berth(&env, &["replay", "vms", "--dry-run"])?;
    let text = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        !tampered.status.success(),
        "a difference is a failing exit: {text}"
    );
    assert!(text.contains("DIFFERENT from the live rows"), "{text}");
    let vcpus: i32 = sqlx::query_scalar("SELECT vcpus FROM vms.vms WHERE id = $1")
        .bind(vm)
        .fetch_one(&provisioner.db)
        .await?;
    assert_eq!(vcpus, 99, "a dry run swaps nothing in");
    provisioner.stop().await
}

#[tokio::test]
async fn trace_and_dlq_listings_in_table_and_json() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let provisioner = env
        .provisioner_with(fast_settings(), instant_sim(), sim_datacenter())
        .await?;
    let acme = tenant("acme");
    let command = meta();
    let reply = env
        .send(&acme, &command, &berth_tests::create_vm("web"))
        .await?;
    let vm = berth_tests::accepted_id(&reply).expect("created");
    env.wait_vm_status(&acme, vm, VmStatus::Running).await?;
    let correlation = command.correlation_id.to_string();
    let trace = eventually(
        "the trace in audit_log",
        Duration::from_secs(30),
        || async {
            let output = berth(&env, &["trace", &correlation, "--output", "json"])?;
            let steps: Vec<serde_json::Value> = match output.status.success() {
                true => serde_json::from_slice(&output.stdout)?,
                false => Vec::new(),
            };
            let started = steps
                .iter()
                .any(|s| s["event_type"] == "berth.vm.started.v1");
            Ok(started.then_some(steps))
        },
    )
    .await?;
    let types: Vec<&str> = trace
        .iter()
        .filter_map(|s| s["event_type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"berth.vm.requested.v1"), "{types:?}");
    assert!(types.contains(&"berth.vm.placed.v1"), "{types:?}");
    let sequences: Vec<i64> = trace
        .iter()
        .filter_map(|s| s["stream_seq"].as_i64())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "in log order");
    golden(
        "trace.txt",
        &stdout_of(&berth(&env, &["trace", &correlation])?),
    );

    golden(
        "dlq-empty.json",
        &stdout_of(&berth(&env, &["dlq", "list", "--output", "json"])?),
    );
    let missing = berth(&env, &["dlq", "retry", "12345"])?;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter 12345"));
    provisioner.stop().await
}
