//! A sample source for every built-in rule, for `berth notify preview <rule> --sample`
//! and for the test that renders every rule. The sample bodies are checked against the
//! events' JSON Schemas, so they stay the shape real events have.

use serde_json::{json, Value};

use crate::context::{assemble, Contact};

/// One sample: the event's type and body, and the aggregate's first event (`origin`).
pub struct Sample {
    pub event_type: &'static str,
    pub data: Value,
    /// `(ce-type, body)` of the aggregate's first event.
    pub origin: Option<(&'static str, Value)>,
}

pub fn account() -> Contact {
    Contact {
        name: "Ada Lovelace Ltd".into(),
        billing_email: "billing@ada.example".into(),
        tier: "pro".into(),
        currency: "EUR".into(),
    }
}

fn pod_requested() -> (&'static str, Value) {
    (
        "berth.pod.requested.v1",
        json!({
            "name": "blog", "service": "ghost", "variant": "small", "image": "ghost:5",
            "port": 2368, "resources": {"cpu_request_millis": 250, "cpu_limit_millis": 500, "memory_request_mb": 256, "memory_limit_mb": 512},
            "volume": {"size_mb": 2048, "mount_path": "/var/lib/ghost/content", "access_mode": "ReadWriteOnce"},
        }),
    )
}

fn vm_requested() -> (&'static str, Value) {
    (
        "berth.vm.requested.v1",
        json!({"name": "web-1", "vcpus": 2, "memory_mb": 4096, "disk_gb": 40, "image": "debian-12", "plan": "medium"}),
    )
}

/// The sample of rule `name`, if there is one.
pub fn sample(name: &str) -> Option<Sample> {
    let (event_type, data, origin) = match name {
        "welcome" => (
            "berth.account.opened.v1",
            json!({"name": "Ada Lovelace Ltd", "billing_email": "billing@ada.example", "tier": "pro", "currency": "EUR"}),
            None,
        ),
        "subscription_confirmed" => (
            "berth.subscription.created.v1",
            json!({"product": "ghost", "variant": "small", "price": {"amount_minor": 900, "currency": "EUR"},
                   "period_start": "2026-12-01T10:00:00Z", "period_end": "2027-01-01T10:00:00Z"}),
            None,
        ),
        "pod_ready" => ("berth.pod.healthy.v1", json!({}), Some(pod_requested())),
        "vm_ready" => ("berth.vm.started.v1", json!({}), Some(vm_requested())),
        "expiry_warning" => (
            "berth.schedule.fired.v1",
            json!({"due_at": "2026-12-25T10:00:00Z", "fired_at": "2026-12-25T10:00:01Z", "action": {"kind": "emit"},
                   "payload": {"notify": "expiry_warning", "subscription_id": "0193a5b0-7c1e-7000-8000-000000000001",
                               "product": "ghost", "variant": "small", "period_end": "2027-01-01T10:00:00Z"}}),
            None,
        ),
        "invoice_issued" => (
            "berth.invoice.issued.v1",
            json!({"number": "BER-202611-ada", "month": "2026-11", "currency": "EUR", "total_minor": 2460,
            "issued_at": "2026-12-01T00:05:00Z", "due_at": "2026-12-15T00:05:00Z",
            "lines": [
                {"description": "VM web-1 (medium), 720 h", "kind": "vm_usage", "quantity_seconds": 2592000, "unit_price_minor": 2, "amount_minor": 1440},
                {"description": "ghost small", "kind": "subscription", "quantity_seconds": 2592000, "unit_price_minor": 1020, "amount_minor": 1020}
            ]}),
            None,
        ),
        "payment_received" => (
            "berth.account.payment_recorded.v1",
            json!({"amount_minor": 2460, "reference": "SEPA-2026-12-03-0042"}),
            None,
        ),
        "account_suspended" => (
            "berth.account.suspended.v1",
            json!({"reason": "invoice BER-202610-ada is 7 days overdue"}),
            None,
        ),
        "account_resumed" => ("berth.account.resumed.v1", json!({}), None),
        "pod_failed" => (
            "berth.pod.failed.v1",
            json!({"operation": "deploy", "reason": "image ghost:5 not found"}),
            Some(pod_requested()),
        ),
        "provisioning_failed" => (
            "berth.vm.failed.v1",
            json!({"operation": "provision", "reason": "no capacity in region fsn1"}),
            Some(vm_requested()),
        ),
        "demo_reset_succeeded" => (
            "berth.demo.reset_succeeded.v1",
            json!({"trigger": "0193a5b0-7c1e-7000-8000-000000000002", "vm_id": "0193a5b0-7c1e-7000-8000-000000000003", "duration_ms": 1742}),
            None,
        ),
        "demo_reset_failed" => (
            "berth.demo.reset_failed.v1",
            json!({"trigger": "0193a5b0-7c1e-7000-8000-000000000002", "vm_id": "0193a5b0-7c1e-7000-8000-000000000003",
                   "reason": "the provider refused: out of capacity", "duration_ms": 30000}),
            None,
        ),
        "dead_letter" => ("dlq", json!({}), None),
        _ => return None,
    };
    Some(Sample {
        event_type,
        data,
        origin,
    })
}

/// The template context of rule `name`'s sample, as sent to `recipient`.
pub fn context(name: &str, recipient: &str) -> Option<Value> {
    let sample = sample(name)?;
    if sample.event_type == "dlq" {
        return Some(json!({
            "rule": name,
            "recipient": recipient,
            "event": {"type": "dlq", "tenant": "system", "dlq_sequence": 17},
            "dead_letter": {
                "consumer": "provisioner-vms", "subject": "evt.acme.vm.0193a5b0-7c1e-7000-8000-000000000004",
                "stream_sequence": "4211", "deliveries": "8", "error": "provider timeout after 30 s",
            },
        }));
    }
    let event = json!({
        "id": "0193a5b0-7c1e-7000-8000-0000000000aa",
        "type": sample.event_type,
        "time": "2026-12-03T07:00:01Z",
        "tenant": "ada",
        "aggregate_id": "0193a5b0-7c1e-7000-8000-0000000000bb",
        "data": sample.data,
    });
    Some(assemble(
        name,
        recipient,
        event,
        Some(&account()),
        sample.origin.map(|(_, body)| body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;
    use crate::templates::Templates;

    fn validate(event_type: &str, body: &Value) {
        let schema = berth_schemas::json_schema::event_schemas()
            .into_iter()
            .find(|(t, _)| *t == event_type)
            .unwrap_or_else(|| panic!("no schema for {event_type}"))
            .1;
        let validator = jsonschema::validator_for(schema.as_value()).unwrap();
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{event_type} sample: {errors:?}");
    }

    /// Every rule has a sample shaped like the real event, and its template renders all
    /// three parts from it, to a customer and to an operator.
    #[test]
    fn every_rule_renders_its_sample() {
        let rules = Rules::builtin().unwrap();
        let templates = Templates::builtin().unwrap();
        crate::check_templates(&rules, &templates).unwrap();
        for rule in &rules.rules {
            let sample =
                sample(&rule.name).unwrap_or_else(|| panic!("no sample for {}", rule.name));
            assert_eq!(sample.event_type, rule.on, "{}", rule.name);
            if rule.on != crate::rules::DEAD_LETTER {
                validate(sample.event_type, &sample.data);
            }
            if let Some((origin_type, origin)) = &sample.origin {
                validate(origin_type, origin);
            }
            for recipient in ["billing@ada.example", "ops"] {
                let context = context(&rule.name, recipient).unwrap();
                let rendered = templates
                    .render(&rule.name, &context)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(!rendered.subject.is_empty(), "{}", rule.name);
                assert!(
                    rendered.text.trim().len() > 20,
                    "{}: {}",
                    rule.name,
                    rendered.text
                );
                assert!(rendered.html.contains("</html>"), "{}", rule.name);
                assert!(!rendered.subject.contains('\n'));
            }
        }
    }

    #[test]
    fn the_demo_reset_mails_carry_the_duration_and_the_reason() {
        let templates = Templates::builtin().unwrap();
        let ok = templates
            .render(
                "demo_reset_succeeded",
                &context("demo_reset_succeeded", "ops").unwrap(),
            )
            .unwrap();
        assert!(ok.subject.contains("1.7 s"), "{}", ok.subject);
        let failed = templates
            .render(
                "demo_reset_failed",
                &context("demo_reset_failed", "ops").unwrap(),
            )
            .unwrap();
        assert!(failed.text.contains("out of capacity"), "{}", failed.text);
        assert!(failed.subject.contains("30.0 s"), "{}", failed.subject);
    }
}
