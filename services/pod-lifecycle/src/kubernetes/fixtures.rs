//! The test API server: [`mock_runtime`] gives a [`KubernetesRuntime`] whose client talks
//! to an [`ApiServer`] (a `tower-test` mock) that hands out the runtime's calls in order,
//! to be checked and answered one by one; plus the pod spec the tests deploy, the API
//! paths of its objects and the call sequences the runtime makes.

use std::collections::BTreeMap;
use std::time::Duration;

use ::kube::client::Body;
use ::kube::Client;
use berth_schemas::TenantId;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock;
use uuid::Uuid;

use super::workload::deployment;
use super::{KubernetesRuntime, NETWORK_POLICY, RESOURCE_QUOTA};
use crate::runtime::{
    AccessMode, HealthCheck, HealthProbe, Resources, VolumeSpec, WorkloadSpec, LABEL_MANAGED,
    LABEL_TENANT,
};

type Handle = mock::Handle<Request<Body>, Response<Body>>;
type Reply = mock::SendResponse<Response<Body>>;

pub(super) const TENANT: &str = "acme";
pub(super) const NS: &str = "berth-acme";
/// How long the fake API server waits for the runtime's next call.
const WAIT: Duration = Duration::from_secs(5);

pub(super) fn pod_id() -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef)
}

pub(super) fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

pub(super) fn spec() -> WorkloadSpec {
    WorkloadSpec {
        pod_id: pod_id(),
        tenant: TENANT.to_string(),
        service: "web".to_string(),
        variant: "small".to_string(),
        image: "nginx:1.27".to_string(),
        command: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
        port: 8080,
        env: BTreeMap::from([("DATABASE_PASSWORD".to_string(), "s3cret".to_string())]),
        resources: Resources {
            cpu_request_millis: 250,
            cpu_limit_millis: 500,
            memory_request_mb: 128,
            memory_limit_mb: 256,
        },
        health: HealthCheck {
            probe: HealthProbe::Http {
                path: "/healthz".to_string(),
            },
            interval_secs: 10,
            timeout_secs: 3,
            failure_threshold: 4,
            start_period_secs: 15,
        },
        volume: VolumeSpec {
            size_mb: 250,
            mount_path: "/data".to_string(),
            storage_class: Some("fast-ssd".to_string()),
            access_mode: AccessMode::ReadWriteOnce,
        },
        run_as_user: None,
    }
}

pub(super) fn namespace_path() -> String {
    format!("/api/v1/namespaces/{NS}")
}

pub(super) fn policy_path() -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{NETWORK_POLICY}")
}

pub(super) fn quota_path() -> String {
    format!("/api/v1/namespaces/{NS}/resourcequotas/{RESOURCE_QUOTA}")
}

pub(super) fn secret_path() -> String {
    format!("/api/v1/namespaces/{NS}/secrets/berth-env-{}", pod_id())
}

pub(super) fn claims_path() -> String {
    format!("/api/v1/namespaces/{NS}/persistentvolumeclaims")
}

pub(super) fn claim_path() -> String {
    format!("{}/berth-vol-{}", claims_path(), pod_id())
}

pub(super) fn deployment_path() -> String {
    format!(
        "/apis/apps/v1/namespaces/{NS}/deployments/berth-pod-{}",
        pod_id()
    )
}

pub(super) fn service_path() -> String {
    format!("/api/v1/namespaces/{NS}/services/berth-pod-{}", pod_id())
}

pub(super) fn call(method: &Method, path: &str) -> String {
    format!("{method} {path}")
}

/// The body the API server sends with a non-2xx answer.
fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn success_json() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" })
}

pub(super) fn deployment_json(replicas: i32) -> Value {
    serde_json::to_value(deployment(&spec(), replicas)).unwrap()
}

pub(super) fn mock_runtime() -> (KubernetesRuntime, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let runtime = KubernetesRuntime::new(Client::new(service, "default"));
    let server = ApiServer {
        handle,
        calls: Vec::new(),
    };
    (runtime, server)
}

/// One request the runtime made, waiting for its answer.
pub(super) struct Call {
    method: Method,
    path: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) content_type: String,
    pub(super) body: Value,
    reply: Reply,
}

impl Call {
    pub(super) fn respond(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let response = Response::builder()
            .status(status)
            .body(Body::from(bytes))
            .unwrap();
        self.reply.send_response(response);
    }

    pub(super) fn respond_text(self, text: &str) {
        let response = Response::new(Body::from(text.as_bytes().to_vec()));
        self.reply.send_response(response);
    }

    /// Answers as the API server does an apply or a create: with the object.
    fn echo(self, status: StatusCode) {
        let body = self.body.clone();
        self.respond(status, &body);
    }

    pub(super) fn fail(self, code: u16, reason: &str) {
        let status = StatusCode::from_u16(code).unwrap();
        self.respond(
            status,
            &status_json(code, reason, &format!("{reason} (test)")),
        );
    }

    fn assert_server_side_apply(&self) {
        assert_eq!(self.content_type, "application/apply-patch+yaml");
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some("berth")
        );
        assert_eq!(self.query.get("force").map(String::as_str), Some("true"));
    }
}

/// Plays the Kubernetes API server: hands out the runtime's calls in order.
pub(super) struct ApiServer {
    handle: Handle,
    calls: Vec<String>,
}

impl ApiServer {
    async fn next(&mut self) -> Call {
        let next = tokio::time::timeout(WAIT, self.handle.next_request()).await;
        let (request, reply) = next
            .unwrap_or_else(|_| panic!("no call after {:?}", self.calls))
            .unwrap_or_else(|| panic!("client dropped after {:?}", self.calls));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        let path = parts.uri.path().to_string();
        self.calls.push(call(&parts.method, &path));
        Call {
            method: parts.method,
            path,
            query,
            content_type,
            body,
            reply,
        }
    }

    pub(super) async fn expect(&mut self, method: Method, path: &str) -> Call {
        let next = self.next().await;
        assert_eq!(
            (&next.method, next.path.as_str()),
            (&method, path),
            "calls: {:?}",
            self.calls
        );
        next
    }

    /// Waits for the runtime's `task` to end, failing on any call it makes meanwhile;
    /// returns the task's result and every call the runtime made, in order.
    pub(super) async fn finish<T>(mut self, task: JoinHandle<T>) -> (T, Vec<String>) {
        let result = tokio::time::timeout(WAIT, self.join(task))
            .await
            .unwrap_or_else(|_| panic!("the runtime is stuck after {:?}", self.calls));
        let next = tokio::time::timeout(WAIT, self.handle.next_request()).await;
        if let Some((request, _)) = next.expect("the runtime's client is still alive") {
            panic!(
                "unexpected call {} {} after {:?}",
                request.method(),
                request.uri(),
                self.calls
            );
        }
        (result, self.calls)
    }

    async fn join<T>(&mut self, mut task: JoinHandle<T>) -> T {
        tokio::select! {
            result = &mut task => result.unwrap(),
            next = self.handle.next_request() => {
                if let Some((request, _)) = next {
                    panic!("unexpected call {} {} after {:?}", request.method(), request.uri(), self.calls);
                }
                task.await.unwrap()
            }
        }
    }

    /// The namespace sequence of a new tenant: look (missing), apply the namespace,
    /// its NetworkPolicy and its ResourceQuota; returns the three applied bodies.
    pub(super) async fn namespace_ensure(&mut self) -> (Value, Value, Value) {
        self.expect(Method::GET, &namespace_path())
            .await
            .fail(404, "NotFound");
        let call = self.expect(Method::PATCH, &namespace_path()).await;
        call.assert_server_side_apply();
        let namespace = call.body.clone();
        assert_eq!(namespace["kind"], "Namespace");
        assert_eq!(namespace["metadata"]["labels"][LABEL_MANAGED], "true");
        assert_eq!(namespace["metadata"]["labels"][LABEL_TENANT], TENANT);
        call.echo(StatusCode::OK);
        let policy = self.apply(&policy_path()).await;
        let quota = self.apply(&quota_path()).await;
        (namespace, policy, quota)
    }

    /// One server-side apply at `path`, answered with the object; returns it.
    pub(super) async fn apply(&mut self, path: &str) -> Value {
        let call = self.expect(Method::PATCH, path).await;
        call.assert_server_side_apply();
        let body = call.body.clone();
        call.echo(StatusCode::OK);
        body
    }

    pub(super) async fn claim_create(&mut self) -> Value {
        let call = self.expect(Method::POST, &claims_path()).await;
        assert_eq!(
            call.query.get("fieldManager").map(String::as_str),
            Some("berth")
        );
        let body = call.body.clone();
        call.echo(StatusCode::CREATED);
        body
    }

    pub(super) async fn secret_apply(&mut self) -> Value {
        self.apply(&secret_path()).await
    }

    pub(super) async fn deployment_apply(&mut self) -> Value {
        let call = self.expect(Method::PATCH, &deployment_path()).await;
        call.assert_server_side_apply();
        let body = call.body.clone();
        call.echo(StatusCode::OK);
        body
    }

    pub(super) async fn service_apply(&mut self) -> Value {
        let call = self.expect(Method::PATCH, &service_path()).await;
        call.assert_server_side_apply();
        let body = call.body.clone();
        call.echo(StatusCode::OK);
        body
    }

    pub(super) async fn delete(&mut self, path: &str) -> Value {
        let call = self.expect(Method::DELETE, path).await;
        let body = call.body.clone();
        call.respond(StatusCode::OK, &success_json());
        body
    }

    pub(super) async fn delete_missing(&mut self, path: &str) {
        self.expect(Method::DELETE, path)
            .await
            .fail(404, "NotFound");
    }

    /// The delete_workload sequence; returns the Deployment delete's options.
    pub(super) async fn workload_delete(&mut self) -> Value {
        let options = self.delete(&deployment_path()).await;
        self.delete(&service_path()).await;
        self.delete(&secret_path()).await;
        options
    }
}

pub(super) fn namespace_calls() -> Vec<String> {
    vec![
        call(&Method::GET, &namespace_path()),
        call(&Method::PATCH, &namespace_path()),
        call(&Method::PATCH, &policy_path()),
        call(&Method::PATCH, &quota_path()),
    ]
}

pub(super) fn create_calls() -> Vec<String> {
    let mut calls = namespace_calls();
    calls.extend([
        call(&Method::POST, &claims_path()),
        call(&Method::PATCH, &secret_path()),
        call(&Method::PATCH, &deployment_path()),
        call(&Method::PATCH, &service_path()),
    ]);
    calls
}

pub(super) fn workload_delete_calls() -> Vec<String> {
    vec![
        call(&Method::DELETE, &deployment_path()),
        call(&Method::DELETE, &service_path()),
        call(&Method::DELETE, &secret_path()),
    ]
}
