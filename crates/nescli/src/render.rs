//! The text output (pure): tables of items, results and conditions.

use std::fmt::Write as _;

use nes_api::ItemState;
use nes_api::cli::{Compact, ConfigurationResponse, StatusResponse, SubscriptionResponse};

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let lines = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
        .chain(rows.iter().cloned());
    for row in lines {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A configuration: one row per item, named in the compact form `--remove` takes.
pub fn configuration(answer: &ConfigurationResponse) -> String {
    let mut rows = Vec::new();
    for vlan in &answer.vlans {
        let mut details = format!("parent={} id={}", vlan.parent, vlan.vlan_id);
        if let Some(mtu) = vlan.mtu {
            let _ = write!(details, " mtu={mtu}");
        }
        rows.push(vec![Compact(&vlan.key()).to_string(), details]);
    }
    for address in &answer.addresses {
        rows.push(vec![Compact(&address.key()).to_string(), String::new()]);
    }
    for route in &answer.routes {
        let mut details = Vec::new();
        if let Some(gateway) = route.gateway {
            details.push(format!("via={gateway}"));
        }
        if let Some(interface) = &route.interface {
            details.push(format!("dev={interface}"));
        }
        if let Some(metric) = route.metric {
            details.push(format!("metric={metric}"));
        }
        rows.push(vec![Compact(&route.key()).to_string(), details.join(" ")]);
    }
    let mut out = format!(
        "Configuration of {}/{} (generation {}):\n",
        answer.namespace, answer.pod, answer.generation
    );
    if rows.is_empty() {
        out.push_str("no items\n");
    } else {
        out.push_str(&table(&["ITEM", "DETAILS"], &rows));
    }
    out
}

fn state(state: ItemState) -> &'static str {
    match state {
        ItemState::Applied => "applied",
        ItemState::Pending => "pending",
        ItemState::Failed => "failed",
    }
}

/// A status: a summary line, each item with its state and message, then the conditions.
pub fn status(answer: &StatusResponse) -> String {
    let applied = answer
        .applied_generation
        .map_or_else(|| "none yet".to_owned(), |g| g.to_string());
    let mut out = format!(
        "Status of {}/{}: generation {}, applied {}",
        answer.namespace, answer.pod, answer.generation, applied
    );
    if let Some(boot) = &answer.boot_id {
        let _ = write!(out, ", agent boot {boot}");
    }
    out.push('\n');
    if answer.results.is_empty() {
        out.push_str("no item results yet\n");
    } else {
        let rows: Vec<Vec<String>> = answer
            .results
            .iter()
            .map(|r| {
                vec![
                    r.item.clone(),
                    state(r.state).to_owned(),
                    r.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table(&["ITEM", "STATE", "MESSAGE"], &rows));
    }
    if !answer.conditions.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = answer
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &rows));
    }
    out
}

/// A subscription.
pub fn subscription(answer: &SubscriptionResponse) -> String {
    let mut out = format!(
        "Subscription of {}/{}: reports to {}\n",
        answer.namespace, answer.pod, answer.callback.url
    );
    let mut pods: Vec<String> = answer.pods.names.clone();
    pods.extend(
        answer
            .pods
            .selector
            .iter()
            .map(|(k, v)| format!("label {k}={v}")),
    );
    let _ = writeln!(out, "  pods:       {}", pods.join(", "));
    let interfaces = if answer.filter.interfaces.is_empty() {
        "all".to_owned()
    } else {
        answer.filter.interfaces.join(", ")
    };
    let _ = writeln!(out, "  interfaces: {interfaces}");
    let changes = if answer.filter.changes.is_empty() {
        "all".to_owned()
    } else {
        let names: Vec<&str> = answer.filter.changes.iter().map(|c| c.as_str()).collect();
        names.join(", ")
    };
    let _ = writeln!(out, "  changes:    {changes}");
    if let Some(owner) = &answer.owner {
        let _ = writeln!(out, "  owned by:   {} {}", owner.kind, owner.name);
    }
    let _ = writeln!(
        out,
        "  delivered:  {} ({} failed)",
        answer.deliveries, answer.failures
    );
    if let Some(error) = &answer.last_error {
        let _ = writeln!(out, "  last error: {error}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::cli::{Callback, Condition, ItemOutcome};
    use nes_api::{Address, Route};

    #[test]
    fn configuration_rows_use_the_removable_form() {
        let answer = ConfigurationResponse {
            namespace: "team".into(),
            pod: "x-0".into(),
            generation: 2,
            addresses: vec![Address {
                interface: "eth0".into(),
                cidr: "10.1.0.5/24".into(),
            }],
            routes: vec![Route {
                destination: "default".into(),
                gateway: Some("10.1.0.1".parse().unwrap()),
                interface: None,
                metric: Some(5),
                table: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            configuration(&answer),
            "Configuration of team/x-0 (generation 2):\n\
             ITEM                      DETAILS\n\
             address:eth0/10.1.0.5/24\n\
             route:0.0.0.0/0           via=10.1.0.1 metric=5\n"
        );
    }

    #[test]
    fn status_lists_items_and_conditions() {
        let answer = StatusResponse {
            namespace: "team".into(),
            pod: "x-0".into(),
            generation: 3,
            applied_generation: Some(2),
            results: vec![ItemOutcome {
                item: "route 10.2.0.0/16 table 254".into(),
                state: ItemState::Failed,
                message: Some("Network is unreachable".into()),
            }],
            conditions: vec![Condition {
                type_: "Degraded".into(),
                status: "True".into(),
                reason: "ItemsFailed".into(),
                message: "1 item failed".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = status(&answer);
        assert!(
            text.starts_with("Status of team/x-0: generation 3, applied 2\n"),
            "{text}"
        );
        assert!(
            text.contains("route 10.2.0.0/16 table 254  failed  Network is unreachable"),
            "{text}"
        );
        assert!(
            text.contains("Degraded   True    ItemsFailed  1 item failed"),
            "{text}"
        );
    }

    #[test]
    fn subscription_defaults_read_as_all() {
        let answer = SubscriptionResponse {
            namespace: "team".into(),
            pod: "x-0".into(),
            callback: Callback {
                url: "http://a/".into(),
            },
            ..Default::default()
        };
        let text = subscription(&answer);
        assert!(
            text.contains("interfaces: all") && text.contains("changes:    all"),
            "{text}"
        );
    }
}
