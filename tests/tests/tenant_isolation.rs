//! Tenants are adversaries of each other (DESIGN §7). The matrix here is generated from
//! berth's access table (`berth_schemas::access::COMMANDS`) and the checked-in JSON
//! Schema of each command body (`berth_schemas::json_schema::command_body`), never hand-listed: for every command, tenant `b`
//! names tenant `a`'s existing ids — in the body and as the command id — and, for an
//! operator action, simply sends it. Then `a`'s events, rows, statuses and workload
//! data must be exactly as before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_pod_lifecycle::runtime::workload_name;
use berth_pod_lifecycle::sim::SimRuntime;
use berth_runtime::clock::ManualClock;
use berth_schemas::access::{self, Sender, COMMANDS};
use berth_schemas::billing::{CreateSubscription, SubscriptionCommand};
use berth_schemas::command::CommandMeta;
use berth_schemas::pod::PodStatus;
use berth_schemas::schedule::{Action, SetSchedule, SetTimer, TimerCommand, When};
use berth_schemas::subjects::{command_subject, tenant_events_filter};
use berth_schemas::vm::{CreateVm, VmCommand, VmStatus};
use berth_schemas::{Actor, CommandReply, CommandSet, RejectionCode, TenantId};
use berth_tests::billing::billing_config;
use berth_tests::docker::{engine, sh};
use berth_tests::notify::notifier_config;
use berth_tests::pods::{busybox_overrides, pod_config, TEST_IMAGE};
use berth_tests::{accepted_id, fast_settings, meta, tenant, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

const DATA: &str = "/home/node/.n8n/workflows.json";

/// Kinds answered by operator request endpoints (not command handlers): they listen
/// on `cmd.system.…` only, so a tenant's request finds no one.
const SYSTEM_ONLY_ENDPOINTS: [&str; 3] = ["billing", "provisioner", "pods"];

/// What tenant `a` owns before `b` attacks.
struct Victim {
    tenant: TenantId,
    vm: Uuid,
    pod: Uuid,
    subscription: Uuid,
    schedule: String,
    timer: String,
}

impl Victim {
    /// `a`'s id of an aggregate kind, for command ids.
    fn id_of(&self, kind: &str) -> Uuid {
        match kind {
            "vm" => self.vm,
            "pod" => self.pod,
            "subscription" => self.subscription,
            _ => self.vm,
        }
    }

    /// A value for a body field that names one of `a`'s things, by the field's name.
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "vm_id" => json!(self.vm),
            "pod_id" => json!(self.pod),
            "subscription_id" => json!(self.subscription),
            "notification_id" => json!(self.vm),
            "name" => json!(self.schedule),
            "key" => json!(self.timer),
            // Plain values that pass validation, so the command reaches the ownership
            // checks instead of being refused as malformed.
            "expression" => json!("0 3 * * *"),
            "timezone" => json!("UTC"),
            "product" | "service" => json!("n8n"),
            "variant" => json!("basic"),
            "image" => json!("debian-12"),
            "plan" => json!("small"),
            "after_secs" => json!(3600),
            _ => return None,
        })
    }
}

/// The smallest instance of `schema` that the schema allows, with `a`'s ids and names
/// wherever a field names one.
fn instance(schema: &Value, root: &Value, victim: &Victim) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return instance(&root["$defs"][name], root, victim);
    }
    for choice in ["oneOf", "anyOf"] {
        if let Some(first) = schema.get(choice).and_then(|c| c.get(0)) {
            return instance(first, root, victim);
        }
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut object = serde_json::Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    if let Some(value) = victim.field(name) {
                        object.insert(name.clone(), value);
                    } else if required.contains(&name.as_str()) {
                        object.insert(name.clone(), instance(property, root, victim));
                    }
                }
            }
            Value::Object(object)
        }
        "array" => {
            let count = schema["minItems"].as_u64().unwrap_or(1).max(1);
            let item = instance(&schema["items"], root, victim);
            Value::Array((0..count).map(|_| item.clone()).collect())
        }
        "string" => match schema["format"].as_str() {
            Some("uuid") => json!(Uuid::now_v7()),
            Some("date-time") => json!(chrono::Utc::now() + chrono::Duration::hours(1)),
            _ => json!("isolation"),
        },
        "integer" => json!(schema["minimum"].as_u64().unwrap_or(1).max(1)),
        "number" => json!(1.0),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

/// Tenant `b`'s raw command on its own subject, as its NATS user could send it.
#[allow(
    clippy::disallowed_methods,
    reason = "sends as a tenant's own NATS user would"
)]
async fn send_as(
    env: &TestEnv,
    sender: &TenantId,
    kind: &str,
    action: &str,
    command_id: Uuid,
    extra_header: Option<(&str, &str)>,
    body: &Value,
) -> anyhow::Result<Option<CommandReply>> {
    let mut meta = CommandMeta::new(Actor::parse("user:mallory")?);
    meta.id = command_id;
    let mut headers = meta.to_headers();
    if let Some((name, value)) = extra_header {
        headers.insert(name, value);
    }
    let subject = command_subject(sender, kind, action);
    match env
        .client
        .request_with_headers(subject, headers, serde_json::to_vec(body)?.into())
        .await
    {
        Ok(reply) => Ok(Some(serde_json::from_slice(&reply.payload)?)),
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every event subject of `tenant` with its message count.
async fn events_of(env: &TestEnv, tenant: &TenantId) -> anyhow::Result<BTreeMap<String, u64>> {
    use futures::StreamExt;
    let stream = env.js.get_stream("EVENTS").await?;
    let mut subjects = stream
        .info_with_subjects(tenant_events_filter(tenant))
        .await?;
    let mut found = BTreeMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry?;
        found.insert(subject, count as u64);
    }
    Ok(found)
}

/// `a`'s rows in the read models, as JSON, for a before/after comparison.
async fn rows_of(db: &sqlx::PgPool, tenant: &TenantId) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::new();
    for table in [
        "vms.vms",
        "pods.pods",
        "billing.subscriptions",
        "schedules.schedules",
    ] {
        let found: Vec<(Value,)> = sqlx::query_as(&format!(
            "SELECT to_jsonb(t) FROM {table} t WHERE tenant = $1 ORDER BY id"
        ))
        .bind(tenant.as_str())
        .fetch_all(db)
        .await?;
        rows.extend(found.into_iter().map(|(row,)| format!("{table}: {row}")));
    }
    Ok(rows)
}

/// Where `a`'s pod keeps its data: the sim runtime's files or a real container's volume.
enum Workloads {
    Sim(Arc<SimRuntime>),
    Docker(bollard::Docker),
}

impl Workloads {
    async fn write(&self, pod: Uuid, content: &str) -> anyhow::Result<()> {
        match self {
            Self::Sim(sim) => Ok(sim.write_file(pod, DATA, content)?),
            Self::Docker(docker) => {
                let script = format!("echo -n '{content}' > {DATA}");
                sh(docker, &workload_name(pod), &script).await.map(drop)
            }
        }
    }

    async fn read(&self, pod: Uuid) -> anyhow::Result<Option<String>> {
        match self {
            Self::Sim(sim) => Ok(sim.read_file(pod, DATA)),
            Self::Docker(docker) => Ok(Some(
                sh(docker, &workload_name(pod), &format!("cat {DATA}")).await?,
            )),
        }
    }
}

#[tokio::test]
async fn no_command_of_one_tenant_changes_another_tenants_things_on_sim() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let provisioner = env.provisioner(fast_settings(), Default::default()).await?;
    let pod_sim = Arc::new(SimRuntime::default());
    let _pods = env
        .pod_lifecycle(
            fast_settings(),
            pod_sim.clone(),
            pod_config(Default::default()),
        )
        .await?;
    let (a, b) = (tenant("a"), tenant("b"));
    let workloads = Workloads::Sim(pod_sim);
    every_command_of_b_leaves_a_alone(&env, &provisioner.db, &workloads, &a, &b, "debian-12").await
}

#[tokio::test]
async fn no_command_of_one_tenant_changes_another_tenants_things_on_docker() -> anyhow::Result<()> {
    use berth_pod_lifecycle::docker::{DockerRuntime, DockerRuntimeConfig};
    use berth_provisioner::docker::{DockerConfig, DockerProvider};
    let env = TestEnv::start().await?;
    let suffix = &Uuid::now_v7().simple().to_string()[20..];
    let server = format!("docker-isolation-{suffix}");
    let provider = DockerProvider::connect(DockerConfig {
        host_name: server.clone(),
        network_mode: Some("none".into()),
    })
    .await?;
    let config = berth_provisioner::ProvisionerConfig {
        servers: vec![berth_tests::docker_server(&server)],
        ..Default::default()
    };
    let provisioner = env
        .provisioner_on(fast_settings(), Arc::new(provider), config)
        .await?;
    let runtime = DockerRuntime::connect(DockerRuntimeConfig {
        scope: format!("test-{suffix}"),
        network_mode: Some("none".into()),
    })
    .await?;
    let _pods = env
        .pod_lifecycle(
            fast_settings(),
            Arc::new(runtime),
            pod_config(busybox_overrides()),
        )
        .await?;
    // Tenants of their own: tests share the engine.
    let (a, b) = (
        tenant(&format!("a-{suffix}")),
        tenant(&format!("b-{suffix}")),
    );
    let docker = engine().await;
    let workloads = Workloads::Docker(docker.clone());
    every_command_of_b_leaves_a_alone(&env, &provisioner.db, &workloads, &a, &b, TEST_IMAGE)
        .await?;
    // a's machine is the same container, still running.
    let vms = berth_provisioner::projection::list(&provisioner.db, Some(&a)).await?;
    for vm in vms {
        let inspected = docker
            .inspect_container(&format!("berth-vm-{}", vm.id), None)
            .await?;
        assert_eq!(inspected.state.and_then(|s| s.running), Some(true));
    }
    Ok(())
}

/// `a` gets a VM, a pod with data, an account, a subscription, a schedule and a timer;
/// then `b` sends every command of the access table naming them; nothing of `a` moves.
async fn every_command_of_b_leaves_a_alone(
    env: &TestEnv,
    db: &sqlx::PgPool,
    workloads: &Workloads,
    a: &TenantId,
    b: &TenantId,
    vm_image: &str,
) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::starting_at(chrono::Utc::now()));
    let _billing = env.billing(billing_config(&clock)).await?;
    let _scheduler = env.scheduler(fast_settings()).await?;
    let _notifier = env.notifier(notifier_config(None)).await?;

    env.open_account(a, "EUR").await?;
    let create = VmCommand::Create(CreateVm::with_size("web", 1, 512, 10, vm_image));
    let vm = accepted_id(&env.send(a, &meta(), &create).await?).expect("a's VM");
    env.wait_vm_status(a, vm, VmStatus::Running).await?;
    let pod = env.create_pod(a, "flows", "n8n", "basic").await?;
    env.wait_pod_status(a, pod, PodStatus::Running).await?;
    workloads.write(pod, "[1, 2, 3]").await?;
    let subscribe = SubscriptionCommand::Create(CreateSubscription {
        subscription_id: None,
        product: "n8n".into(),
        variant: "basic".into(),
    });
    let subscription = berth_runtime::client::send_command(
        &env.client,
        a,
        "subscription",
        subscribe.action(),
        &meta(),
        subscribe.body(),
    )
    .await?;
    let subscription = accepted_id(&subscription).expect("a subscribes");
    let schedule = SetSchedule {
        name: "nightly".into(),
        when: When::Cron {
            expression: "0 3 * * *".into(),
            timezone: "UTC".into(),
        },
        action: Action::Emit,
        catch_up: Default::default(),
        max_catch_up: 1,
        payload: Value::Null,
        jitter_secs: 0,
    };
    let created = berth_runtime::client::send_command(
        &env.client,
        a,
        "schedule",
        "create",
        &meta(),
        serde_json::to_vec(&schedule)?,
    )
    .await?;
    assert!(accepted_id(&created).is_some(), "{created:?}");
    let timer = TimerCommand::Set(SetTimer {
        key: "reminder".into(),
        at: None,
        after_secs: Some(3600),
        action: Action::Emit,
        payload: Value::Null,
    });
    let set = berth_runtime::client::send_command(
        &env.client,
        a,
        "timer",
        timer.action(),
        &meta(),
        timer.body(),
    )
    .await?;
    assert!(accepted_id(&set).is_some(), "{set:?}");
    let victim = Victim {
        tenant: a.clone(),
        vm,
        pod,
        subscription,
        schedule: "nightly".into(),
        timer: "reminder".into(),
    };
    caught_up(env, db).await?;
    let events_before = events_of(env, a).await?;
    let rows_before = rows_of(db, a).await?;
    assert!(rows_before.len() >= 4, "a's rows exist: {rows_before:?}");

    let mut tried = 0;
    for row in COMMANDS {
        if row.kind == "dashboard" {
            // Served by the dashboard's snapshot endpoint, which answers only the
            // subject's own tenant (tested in berth-dashboard).
            continue;
        }
        let schema = berth_schemas::json_schema::command_body(row.kind, row.action)
            .map(|schema| serde_json::to_value(schema).expect("schemas are JSON"));
        let body = schema
            .as_ref()
            .map_or(json!({}), |schema| instance(schema, schema, &victim));
        for command_id in [Uuid::now_v7(), victim.id_of(row.kind)] {
            tried += 1;
            let what = format!(
                "b's {}.{} (command id {command_id}) with {body}",
                row.kind, row.action
            );
            let reply = send_as(env, b, row.kind, row.action, command_id, None, &body).await?;
            let Some(reply) = reply else {
                assert!(
                    SYSTEM_ONLY_ENDPOINTS.contains(&row.kind),
                    "{what}: nothing answered"
                );
                continue;
            };
            match row.sender {
                Sender::Operator => assert_eq!(
                    reply.rejection().map(|r| r.code),
                    Some(RejectionCode::Forbidden),
                    "{what}: {reply:?}"
                ),
                Sender::Tenant => match &reply {
                    CommandReply::Rejected(rejection) => {
                        assert_ne!(
                            rejection.code,
                            RejectionCode::Invalid,
                            "{what} must be well-formed, so that it reaches the ownership checks: {rejection}"
                        );
                        if row.creates {
                            assert_eq!(rejection.code, RejectionCode::Conflict, "{what}");
                        }
                    }
                    CommandReply::Accepted { aggregate_id, .. } => {
                        assert!(!row.creates, "{what} was accepted: {reply:?}");
                        assert!(
                            ![vm, pod, subscription].contains(aggregate_id),
                            "{what} was accepted on a's aggregate: {reply:?}"
                        );
                    }
                },
            }
            // Naming `a` in the operator header from b's subject is refused too.
            let spoofed = send_as(
                env,
                b,
                row.kind,
                row.action,
                command_id,
                Some((access::TARGET_TENANT, a.as_str())),
                &body,
            )
            .await?;
            if let Some(spoofed) = spoofed {
                assert_eq!(
                    spoofed.rejection().map(|r| r.code),
                    Some(RejectionCode::Forbidden),
                    "{what} with the operator header: {spoofed:?}"
                );
            }
        }
    }
    assert!(
        tried >= 2 * (COMMANDS.len() - 1),
        "the whole table was tried"
    );

    // Whatever b's accepted commands did, they did to b's own things.
    caught_up(env, db).await?;
    assert_eq!(events_of(env, a).await?, events_before, "a's log moved");
    assert_eq!(rows_of(db, a).await?, rows_before, "a's rows moved");
    for (kind, id) in [("vm", vm), ("pod", pod), ("subscription", subscription)] {
        let owners = rt_store(env).await?.owners(kind, id).await?;
        assert_eq!(
            owners,
            vec![victim.tenant.clone()],
            "{kind} {id} has one owner"
        );
    }
    assert_eq!(workloads.read(pod).await?.as_deref(), Some("[1, 2, 3]"));
    let status = env.wait_vm_status(a, vm, VmStatus::Running).await?;
    assert_eq!(&status.tenant, a);
    Ok(())
}

/// Waits until every read model compared here has applied the last event it follows.
async fn caught_up(env: &TestEnv, db: &sqlx::PgPool) -> anyhow::Result<()> {
    for (projection, filter) in [
        ("vms", "evt.*.vm.*"),
        ("pods", "evt.*.pod.*"),
        ("billing", "evt.*.subscription.*"),
        ("schedules", "evt.*.schedule.*"),
    ] {
        let last = env.last_sequence_of(filter).await?;
        berth_tests::eventually(
            &format!("{projection} to apply {filter} up to {last}"),
            Duration::from_secs(30),
            || async move {
                let at: Option<(i64,)> = sqlx::query_as(
                    "SELECT stream_seq FROM berth.checkpoints WHERE projection = $1",
                )
                .bind(projection)
                .fetch_optional(db)
                .await?;
                Ok(at.filter(|(seq,)| *seq as u64 >= last).map(|_| ()))
            },
        )
        .await?;
    }
    Ok(())
}

async fn rt_store(env: &TestEnv) -> anyhow::Result<berth_runtime::EventStore> {
    Ok(berth_runtime::EventStore::new(env.js.clone(), "EVENTS"))
}

/// A create with the command id (or body id) of another tenant's aggregate is a
/// `conflict` whichever way it is spelled, and an operator acting for a tenant goes
/// through `cmd.system.…` with the tenant header.
#[tokio::test]
async fn operators_act_for_a_tenant_only_through_the_system_subject() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let clock = Arc::new(ManualClock::starting_at(chrono::Utc::now()));
    let _billing = env.billing(billing_config(&clock)).await?;
    let acme = tenant("acme");
    // The test client's send_command routes operator actions by the access table.
    let opened = env.open_account(&acme, "EUR").await?;
    assert!(accepted_id(&opened).is_some(), "{opened:?}");
    let raw =
        json!({"name": "Acme", "billing_email": "a@acme.test", "tier": "pro", "currency": "EUR"});
    let on_tenant_subject =
        send_as(&env, &acme, "account", "open", Uuid::now_v7(), None, &raw).await?;
    assert_eq!(
        on_tenant_subject.and_then(|r| r.rejection().map(|r| r.code)),
        Some(RejectionCode::Forbidden)
    );
    let bad_header = send_as(
        &env,
        &TenantId::system(),
        "account",
        "open",
        Uuid::now_v7(),
        Some((access::TARGET_TENANT, "Not.A.Tenant")),
        &raw,
    )
    .await?;
    assert_eq!(
        bad_header.and_then(|r| r.rejection().map(|r| r.code)),
        Some(RejectionCode::Invalid)
    );
    Ok(())
}

/// A tenant over its share is answered `busy` with a retry-after at once, while another
/// tenant's commands on the same endpoint are served; a long-running `vm.exec` holds
/// only its tenant's long-running share.
#[tokio::test]
async fn a_tenant_over_its_share_is_busy_and_another_is_served() -> anyhow::Result<()> {
    use berth_runtime::fairness::TenantLimits;
    use berth_schemas::vm::{VmCommand, VmTarget};
    let env = TestEnv::start().await?;
    let settings = berth_runtime::Settings {
        tenant_limits: TenantLimits {
            rate_per_sec: 5.0,
            burst: 10,
            in_flight: 4,
            long_running: 1,
        },
        ..fast_settings()
    };
    let _provisioner = env.provisioner(settings, Default::default()).await?;
    let (flood, quiet) = (tenant("flood"), tenant("quiet"));
    let missing = VmCommand::Stop(VmTarget {
        vm_id: Uuid::now_v7(),
        expected_version: None,
    });
    let metas: Vec<CommandMeta> = (0..40).map(|_| meta()).collect();
    let replies =
        futures::future::join_all(metas.iter().map(|m| env.send(&flood, m, &missing))).await;
    let mut busy = 0;
    for reply in replies {
        match reply?.rejection() {
            Some(r) if r.code == RejectionCode::Busy => {
                assert!(r.retry_after_ms.is_some_and(|ms| ms > 0), "{r:?}");
                busy += 1;
            }
            Some(r) => assert_eq!(r.code, RejectionCode::NotFound, "{r:?}"),
            None => panic!("a stop of a missing VM was accepted"),
        }
    }
    assert!(
        busy >= 30,
        "at most the burst of 10 got through, {busy} were busy"
    );
    let served = env.send(&quiet, &meta(), &missing).await?;
    assert_eq!(
        served.rejection().map(|r| r.code),
        Some(RejectionCode::NotFound),
        "the quiet tenant is served while the flooder is over its share"
    );
    Ok(())
}

/// The NATS permissions `berth up` writes for a tenant's users come from the access
/// table: the tenant's own tenant actions reach berth, an operator action, another
/// tenant's subject and `cmd.system.…` are refused by the server itself.
#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "checks what the server lets a tenant's NATS user publish"
)]
async fn a_tenant_user_may_publish_exactly_its_tenant_actions() -> anyhow::Result<()> {
    use async_nats::{Event, ServerError};
    use berth_dev::devservers::DashboardUser;
    let env = TestEnv::start_with_dashboards(vec![DashboardUser {
        user: "acme".into(),
        password: "s3cret-acme".into(),
        tenant: Some("acme".into()),
    }])
    .await?;
    let _provisioner = env.provisioner(fast_settings(), Default::default()).await?;
    let (violations, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let user =
        async_nats::ConnectOptions::with_user_and_password("acme".into(), "s3cret-acme".into())
            .custom_inbox_prefix("_INBOX_acme")
            .event_callback(move |event| {
                let violations = violations.clone();
                async move {
                    if let Event::ServerError(ServerError::Other(message)) = event {
                        let _ = violations.send(message);
                    }
                }
            })
            .connect(&env.nats.url)
            .await?;

    let create = VmCommand::Create(CreateVm::with_size("web", 1, 512, 10, "debian-12"));
    let reply = user
        .request_with_headers(
            "cmd.acme.vm.create",
            meta().to_headers(),
            create.body().into(),
        )
        .await?;
    let reply: CommandReply = serde_json::from_slice(&reply.payload)?;
    assert!(accepted_id(&reply).is_some(), "{reply:?}");

    for subject in [
        "cmd.acme.payment.record",
        "cmd.acme.account.set_tier",
        "cmd.globex.vm.create",
        "cmd.system.server.register",
        "evt.acme.vm.0196f0c2-9a4e-7cc0-8f3e-2b7d9e3f1a00",
    ] {
        user.publish_with_headers(subject, meta().to_headers(), "{}".into())
            .await?;
        user.flush().await?;
        let violation = tokio::time::timeout(Duration::from_secs(10), refused.recv())
            .await?
            .expect("the event callback lives as long as the client");
        assert!(
            violation.to_lowercase().contains("permissions violation")
                && violation.contains(subject),
            "{subject}: {violation}"
        );
    }
    Ok(())
}
