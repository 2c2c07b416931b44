//! The command line, and how its flags become API requests (pure).
//!
//! Item syntax (designed around [`ItemKey`]'s textual forms, so an item printed by `nescli get`
//! or `nescli status` can be passed to `--remove` as is):
//!
//! | Flag | Syntax | Example |
//! | --- | --- | --- |
//! | `--add-address` | `IF=CIDR` | `eth0=10.1.0.5/24` |
//! | `--add-route` | `DEST[,via=GW][,dev=IF][,metric=N][,table=N]` | `10.2.0.0/16,via=10.1.0.1` |
//! | `--add-vlan` | `NAME[,parent=IF][,id=N][,mtu=N]` | `eth0.100` (parent and id from `PARENT.ID`) |
//! | `--remove` | `vlan:NAME`, `address:IF/CIDR`, `route:DEST[,table=N]`, or the display form | `address:eth0/10.1.0.5/24` |

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use nes_api::cli::{Callback, Change, Filter, PodSelection, SubscriptionRequest};
use nes_api::{Address, ConfigureRequest, ItemKey, Items, Route, VlanLink};

/// Where a pod's service account token is mounted by default.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The in-cluster address of nes-cliserver.
pub const DEFAULT_SERVER: &str = "http://nes-cliserver.kubecrew-system.svc:7480";

/// Change this pod's network configuration at runtime, read its status, subscribe to reports.
///
/// Exit codes: 0 ok, 1 the server refused the request (its messages are printed), 2 usage
/// error, 3 the server cannot be reached or the token is not accepted.
#[derive(Debug, Parser)]
#[command(name = "nescli", version)]
pub struct Cli {
    /// The nes-cliserver base URL.
    #[arg(long, env = "NES_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// This pod's name (give it before the command; from the downward API by default).
    #[arg(long, env = "POD_NAME")]
    pub pod: Option<String>,
    /// This pod's namespace (give it before the command; from the downward API by default).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// A service account token bound to this pod, with nes-cliserver's audience.
    #[arg(long, env = "NES_TOKEN_FILE", default_value = DEFAULT_TOKEN_FILE, global = true)]
    pub token_file: PathBuf,
    /// Output format: readable text, or the server's JSON as is.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// Seconds to wait for an answer (not for `status --watch`).
    #[arg(long, default_value_t = 30, global = true)]
    pub timeout_seconds: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and sentences.
    Text,
    /// The server's JSON answer (one object per line for `status --watch`).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add, remove or replace items of this pod's network configuration.
    Configure(ConfigureArgs),
    /// Show this pod's network configuration.
    Get,
    /// Delete this pod's network configuration.
    Unconfigure,
    /// Show what the pod's agent applied: each item's state, and the conditions.
    Status {
        /// Keep printing the status after every change.
        #[arg(long)]
        watch: bool,
    },
    /// Have network status reports POSTed to a URL (replaces this pod's subscription).
    Subscribe(SubscribeArgs),
    /// Show this pod's subscription and its delivery counters.
    Subscription,
    /// Delete this pod's subscription.
    Unsubscribe,
}

/// `nescli configure`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("change").multiple(true).required(true))]
pub struct ConfigureArgs {
    /// Add an address: IF=CIDR, e.g. eth0=10.1.0.5/24.
    #[arg(long = "add-address", value_name = "IF=CIDR", value_parser = parse_address, group = "change")]
    pub add_addresses: Vec<Address>,
    /// Add a route: `DEST[,via=GW][,dev=IF][,metric=N][,table=N]`; DEST may be `default`.
    #[arg(long = "add-route", value_name = "DEST[,via=GW][,dev=IF][,metric=N][,table=N]", value_parser = parse_route, group = "change")]
    pub add_routes: Vec<Route>,
    /// Add a VLAN link: `NAME[,parent=IF][,id=N][,mtu=N]`; a NAME of the form PARENT.ID
    /// implies both.
    #[arg(long = "add-vlan", value_name = "NAME[,parent=IF][,id=N][,mtu=N]", value_parser = parse_vlan, group = "change")]
    pub add_vlans: Vec<VlanLink>,
    /// Remove an item: `vlan:NAME`, `address:IF/CIDR`, `route:DEST[,table=N]`, or the form
    /// `nescli status` prints ("address 10.1.0.5/24 on eth0").
    #[arg(long = "remove", value_name = "ITEM", value_parser = parse_key, group = "change")]
    pub remove: Vec<ItemKey>,
    /// Replace the whole configuration with the items of FILE (JSON or YAML: vlans, addresses,
    /// routes) plus any --add-* items.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["remove", "replace"], group = "change")]
    pub replace_from: Option<PathBuf>,
    /// Replace the whole configuration with the --add-* items (none: clear it).
    #[arg(long, conflicts_with = "remove", group = "change")]
    pub replace: bool,
    /// Send a whole configuration request from FILE (JSON or YAML: add, remove, replace).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["add_addresses", "add_routes", "add_vlans", "remove", "replace_from", "replace"], group = "change")]
    pub from_file: Option<PathBuf>,
}

/// `nescli subscribe`.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Where reports are POSTed (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub callback: String,
    /// A pod to follow (repeatable); this pod when neither --pod nor --selector is given.
    #[arg(long = "pod", value_name = "NAME")]
    pub pods: Vec<String>,
    /// Follow the pods with this label (repeatable; all must match): KEY=VALUE.
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub selector: Vec<(String, String)>,
    /// Report on this interface only (repeatable); all by default.
    #[arg(long = "interface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Report this kind of change only (repeatable): link, address, route, result.
    #[arg(long = "change", value_name = "KIND", value_parser = parse_change)]
    pub changes: Vec<Change>,
}

impl SubscribeArgs {
    /// The request body.
    pub fn request(&self) -> SubscriptionRequest {
        SubscriptionRequest {
            pods: PodSelection {
                names: self.pods.clone(),
                selector: self.selector.iter().cloned().collect(),
            },
            filter: Filter {
                interfaces: self.interfaces.clone(),
                changes: self.changes.clone(),
            },
            callback: Callback {
                url: self.callback.clone(),
            },
        }
    }
}

impl ConfigureArgs {
    /// The request body; `read` returns a file's text (injected so this stays pure).
    pub fn request(
        &self,
        read: impl Fn(&Path) -> Result<String, String>,
    ) -> Result<ConfigureRequest, String> {
        if let Some(path) = &self.from_file {
            return parse_file(path, &read(path)?);
        }
        let mut add = match &self.replace_from {
            Some(path) => parse_file::<Items>(path, &read(path)?)?,
            None => Items::default(),
        };
        add.vlans.extend(self.add_vlans.iter().cloned());
        add.addresses.extend(self.add_addresses.iter().cloned());
        add.routes.extend(self.add_routes.iter().cloned());
        Ok(ConfigureRequest {
            add,
            remove: self.remove.clone(),
            replace: self.replace || self.replace_from.is_some(),
        })
    }
}

/// Parses a file as JSON (`.json`, or content starting with `{`) or YAML.
fn parse_file<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, String> {
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let parsed = if json {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("{}: {e}", path.display()))
}

/// `key=value` options of an item flag, in the order given.
type Options<'a> = Vec<(&'a str, &'a str)>;

/// Splits `HEAD,key=value,...` into the head and the options, refusing unknown or repeated
/// keys.
fn options<'a>(text: &'a str, allowed: &[&str]) -> Result<(&'a str, Options<'a>), String> {
    let mut parts = text.split(',');
    let head = parts.next().unwrap_or_default().trim();
    let mut found: Options<'a> = Vec::new();
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        let key = key.trim();
        if !allowed.contains(&key) {
            return Err(format!(
                "unknown option {key:?}; expected {}",
                allowed.join(", ")
            ));
        }
        if found.iter().any(|(k, _)| *k == key) {
            return Err(format!("{key} is given twice"));
        }
        found.push((key, value.trim()));
    }
    Ok((head, found))
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{key}={value:?} is not a valid number"))
}

/// `IF=CIDR`.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let (interface, cidr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not IF=CIDR (e.g. eth0=10.1.0.5/24)"))?;
    let (interface, cidr) = (interface.trim(), cidr.trim());
    if interface.is_empty() || cidr.is_empty() {
        return Err(format!("{text:?} is not IF=CIDR (e.g. eth0=10.1.0.5/24)"));
    }
    Ok(Address {
        interface: interface.to_owned(),
        cidr: cidr.to_owned(),
    })
}

/// `DEST[,via=GW][,dev=IF][,metric=N][,table=N]`.
pub fn parse_route(text: &str) -> Result<Route, String> {
    let (destination, opts) = options(text, &["via", "dev", "metric", "table"])?;
    if destination.is_empty() {
        return Err("a route starts with its destination (a CIDR or `default`)".into());
    }
    let mut route = Route {
        destination: destination.to_owned(),
        gateway: None,
        interface: None,
        metric: None,
        table: None,
    };
    for (key, value) in opts {
        match key {
            "via" => {
                route.gateway = Some(
                    value
                        .parse::<IpAddr>()
                        .map_err(|_| format!("via={value:?} is not an IP address"))?,
                );
            }
            "dev" => route.interface = Some(value.to_owned()),
            "metric" => route.metric = Some(number(key, value)?),
            _ => route.table = Some(number(key, value)?),
        }
    }
    if route.gateway.is_none() && route.interface.is_none() {
        return Err(format!("{text:?}: a route needs via=GW, dev=IF, or both"));
    }
    Ok(route)
}

/// `NAME[,parent=IF][,id=N][,mtu=N]`.
pub fn parse_vlan(text: &str) -> Result<VlanLink, String> {
    let (name, opts) = options(text, &["parent", "id", "mtu"])?;
    if name.is_empty() {
        return Err("a VLAN starts with its name".into());
    }
    let implied = name
        .rsplit_once('.')
        .and_then(|(parent, id)| Some((parent, id.parse::<u16>().ok()?)));
    let mut parent = implied.map(|(p, _)| p.to_owned());
    let mut vlan_id = implied.map(|(_, id)| id);
    let mut mtu = None;
    for (key, value) in opts {
        match key {
            "parent" => parent = Some(value.to_owned()),
            "id" => vlan_id = Some(number(key, value)?),
            _ => mtu = Some(number(key, value)?),
        }
    }
    Ok(VlanLink {
        name: name.to_owned(),
        parent: parent.ok_or_else(|| format!("{text:?}: give parent=IF"))?,
        vlan_id: vlan_id.ok_or_else(|| format!("{text:?}: give id=N"))?,
        mtu,
    })
}

/// An item key in either textual form.
pub fn parse_key(text: &str) -> Result<ItemKey, String> {
    text.parse::<ItemKey>().map_err(|e| e.to_string())
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn parse_change(text: &str) -> Result<Change, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nescli").chain(args.iter().copied()))
    }

    fn configure(args: &[&str]) -> ConfigureArgs {
        let mut all = vec!["configure"];
        all.extend_from_slice(args);
        match cli(&all).unwrap_or_else(|e| panic!("{e}")).command {
            Command::Configure(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn no_files(_: &Path) -> Result<String, String> {
        Err("no files in this test".into())
    }

    #[test]
    fn flags_become_a_configure_request() {
        let args = configure(&[
            "--add-address",
            "eth0=10.1.0.5/24",
            "--add-route",
            "10.2.0.0/16,via=10.1.0.1,dev=eth0,metric=5,table=100",
            "--add-route",
            "default,via=fd00::1",
            "--add-vlan",
            "eth0.100,mtu=1400",
            "--remove",
            "address:eth0/10.1.0.4/24",
            "--remove",
            "route 10.3.0.0/16 table 254",
        ]);
        let request = args.request(no_files).unwrap();
        assert!(!request.replace);
        assert_eq!(
            request.add.addresses,
            [Address {
                interface: "eth0".into(),
                cidr: "10.1.0.5/24".into()
            }]
        );
        let route = &request.add.routes[0];
        assert_eq!(route.gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(route.interface.as_deref(), Some("eth0"));
        assert_eq!((route.metric, route.table), (Some(5), Some(100)));
        assert_eq!(request.add.routes[1].destination, "default");
        assert_eq!(
            request.add.vlans,
            [VlanLink {
                name: "eth0.100".into(),
                parent: "eth0".into(),
                vlan_id: 100,
                mtu: Some(1400)
            }]
        );
        assert_eq!(request.remove.len(), 2);
        assert_eq!(
            request.remove[1],
            ItemKey::Route {
                destination: "10.3.0.0/16".into(),
                table: 254
            }
        );
    }

    #[test]
    fn replace_from_a_file_adds_the_flag_items() {
        let args = configure(&[
            "--replace-from",
            "items.yaml",
            "--add-address",
            "eth1=10.9.0.1/24",
        ]);
        let request = args
            .request(|_| Ok("addresses:\n- interface: eth0\n  cidr: 10.1.0.5/24\n".into()))
            .unwrap();
        assert!(request.replace);
        assert_eq!(request.add.addresses.len(), 2);
        let args = configure(&["--from-file", "req.json"]);
        let request = args
            .request(|_| Ok(r#"{"remove": [{"kind": "vlan", "name": "v1"}]}"#.into()))
            .unwrap();
        assert_eq!(request.remove, [ItemKey::Vlan { name: "v1".into() }]);
        let error = configure(&["--from-file", "req.json"])
            .request(|_| Ok(r#"{"add": {}, "delete": []}"#.into()))
            .unwrap_err();
        assert!(
            error.contains("req.json") && error.contains("delete"),
            "{error}"
        );
        assert!(configure(&["--replace"]).request(no_files).unwrap().replace);
    }

    #[test]
    fn bad_items_and_combinations_are_usage_errors() {
        for args in [
            vec!["configure"],
            vec!["configure", "--add-address", "10.1.0.5/24"],
            vec!["configure", "--add-route", "10.2.0.0/16"],
            vec!["configure", "--add-route", "10.2.0.0/16,gw=10.1.0.1"],
            vec!["configure", "--add-route", "10.2.0.0/16,via=x"],
            vec!["configure", "--add-route", "10.2.0.0/16,dev=a,dev=b"],
            vec!["configure", "--add-vlan", "vlan7"],
            vec!["configure", "--add-vlan", "eth0.100,id=big"],
            vec!["configure", "--remove", "eth0"],
            vec!["configure", "--replace", "--remove", "vlan:a"],
            vec![
                "configure",
                "--from-file",
                "a",
                "--add-address",
                "eth0=1.2.3.4/24",
            ],
            vec!["subscribe"],
            vec!["subscribe", "--callback", "http://a/", "--change", "links"],
            vec!["subscribe", "--callback", "http://a/", "--selector", "app"],
        ] {
            let error = cli(&args).expect_err(&format!("{args:?}"));
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn identity_flags_come_before_the_command_and_subscribe_has_its_own_pods() {
        let parsed = cli(&[
            "--pod",
            "x-0",
            "--namespace",
            "team",
            "subscribe",
            "--callback",
            "http://app/r",
            "--pod",
            "x-1",
            "--selector",
            "app=db",
            "--change",
            "route",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(parsed.pod.as_deref(), Some("x-0"));
        assert_eq!(parsed.namespace.as_deref(), Some("team"));
        assert_eq!(parsed.output, Output::Json);
        let Command::Subscribe(args) = parsed.command else {
            panic!("subscribe")
        };
        let request = args.request();
        assert_eq!(request.pods.names, ["x-1"]);
        assert_eq!(request.pods.selector["app"], "db");
        assert_eq!(request.filter.changes, [Change::Route]);
    }
}
