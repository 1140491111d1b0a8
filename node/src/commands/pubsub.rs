//! `fubar pub` and `fubar sub`: flags to a CONNECT, then the tools.

use std::io::BufRead as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;

use super::bench::tls_client;
use crate::cli::{ClientArgs, PubArgs, SubArgs};
use crate::mqtt::packet::{Connect, LastWill, ProtocolVersion, QoS};
use crate::mqtt::properties::Properties;
use crate::tools::pubsub::{self, PubOptions, Session, SubOptions};

/// The protocol of `-V` (`fubar pub`, `fubar sub`, `fubar bench`): mosquitto's names, the
/// short forms, or the version as fubar's logs show it.
pub(crate) fn protocol_version(name: &str) -> anyhow::Result<ProtocolVersion> {
    Ok(match name {
        "mqttv31" | "31" | "3.1" => ProtocolVersion::V31,
        "mqttv311" | "311" | "3.1.1" => ProtocolVersion::V311,
        "mqttv5" | "5" | "5.0" => ProtocolVersion::V5,
        other => bail!("unknown protocol version {other:?} (mqttv31, mqttv311, mqttv5)"),
    })
}

fn session(c: &ClientArgs, role: &str) -> anyhow::Result<Session> {
    let protocol = protocol_version(&c.protocol)?;
    // `-h ws://HOST:PORT/PATH` (or wss://) stands for -h HOST -p PORT --ws --ws-path PATH.
    let mut tls_args = c.tls.clone();
    let mut host = c.host.clone();
    let mut url_port = None;
    if let Some((secure, h, p, path)) = ws_url(&c.host)? {
        if secure && tls_args.cafile.is_none() {
            bail!(
                "{}: wss:// needs --cafile (the CA the broker's certificate chains to)",
                c.host
            );
        }
        (host, url_port, tls_args.ws, tls_args.ws_path) = (h, p, true, path);
    }
    let tls = tls_client(&host, &tls_args)?;
    let default_port = match tls.as_ref().map(|d| (d.tls.is_some(), d.ws.is_some())) {
        None | Some((false, false)) => 1883,
        Some((true, false)) => 8883,
        Some((false, true)) => 8080,
        Some((true, true)) => 8443,
    };
    let port = c.port.or(url_port).unwrap_or(default_port);
    let addr = super::bench::resolve(&host, port)?;
    let will = c.will_topic.as_ref().map(|t| LastWill {
        topic: t.as_str().into(),
        payload: Bytes::from(c.will_message.clone().unwrap_or_default()),
        qos: QoS::from_u8(c.will_qos).unwrap_or_default(),
        retain: c.will_retain,
        properties: Default::default(),
    });
    let client_id =
        c.id.clone()
            .unwrap_or_else(|| format!("fubar-{role}-{}", std::process::id()));
    Ok(Session {
        addr,
        tls,
        connect: Connect {
            protocol,
            clean_session: !c.no_clean,
            keep_alive: c.keep_alive,
            client_id,
            will,
            username: c.username.clone(),
            password: c.password.clone().map(Bytes::from),
            // MQTT 5.0: a session kept while away (-c) never expires on its own.
            properties: Properties {
                session_expiry_interval: (protocol == ProtocolVersion::V5 && c.no_clean)
                    .then_some(u32::MAX),
                ..Properties::default()
            },
        },
    })
}

/// `fubar pub`.
pub(crate) fn run_pub(a: PubArgs) -> anyhow::Result<()> {
    if !crate::mqtt::topic::is_valid_topic_name(&a.topic) {
        bail!(
            "{:?} is not a topic name: no wildcards (+, #), not empty",
            a.topic
        );
    }
    let s = session(&a.client, "pub")?;
    let messages: Vec<Bytes> = if let Some(m) = a.message {
        vec![Bytes::from(m)]
    } else if let Some(f) = &a.file {
        vec![Bytes::from(
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        )]
    } else if a.stdin_lines {
        std::io::stdin()
            .lock()
            .lines()
            .map(|l| l.map(Bytes::from))
            .collect::<Result<_, _>>()?
    } else if a.null {
        vec![Bytes::new()]
    } else {
        bail!("nothing to send: give -m MSG, -f FILE, -s or -n");
    };
    let o = PubOptions {
        topic: a.topic,
        messages,
        qos: QoS::from_u8(a.qos).unwrap_or_default(),
        retain: a.retain,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime
        .block_on(pubsub::publish(s.clone(), o))
        .with_context(|| format!("publishing to {}", s.addr))?;
    Ok(())
}

/// `fubar sub`.
pub(crate) fn run_sub(a: SubArgs) -> anyhow::Result<()> {
    if let Some(bad) = a
        .topic
        .iter()
        .find(|t| !crate::mqtt::topic::is_valid_subscription(t))
    {
        bail!("{bad:?} is not a topic filter");
    }
    let s = session(&a.client, "sub")?;
    let o = SubOptions {
        topics: a.topic,
        qos: QoS::from_u8(a.qos).unwrap_or_default(),
        verbose: a.verbose,
        count: a.count,
        idle_timeout: a.timeout.map(Duration::from_secs),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let addr = s.addr;
    runtime
        .block_on(pubsub::subscribe(s, o, &mut std::io::stdout().lock()))
        .with_context(|| format!("subscribed at {addr}"))?;
    Ok(())
}

/// A WebSocket broker URL's parts: (secure, host, port, path).
type WsUrl = (bool, String, Option<u16>, String);

/// A `ws://HOST[:PORT][/PATH]` or `wss://…` broker URL; `None` for a plain host name.
fn ws_url(url: &str) -> anyhow::Result<Option<WsUrl>> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        return Ok(None);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/mqtt".to_owned()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => {
            let port = p
                .parse()
                .map_err(|_| anyhow::anyhow!("{url}: bad port {p:?}"))?;
            (h, Some(port))
        }
        _ => (authority, None),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Some((secure, host, port, path)))
}

#[cfg(test)]
mod ws_url_tests {
    use super::ws_url;

    #[test]
    fn ws_urls_name_host_port_and_path() {
        assert_eq!(ws_url("localhost").unwrap(), None);
        assert_eq!(
            ws_url("ws://127.0.0.1:8080/mqtt").unwrap(),
            Some((false, "127.0.0.1".into(), Some(8080), "/mqtt".into()))
        );
        assert_eq!(
            ws_url("wss://broker.example").unwrap(),
            Some((true, "broker.example".into(), None, "/mqtt".into()))
        );
        assert!(ws_url("ws://h:port/").is_err());
    }
}
