//! Topic rules (issue 17) from the outside: paho-mqtt clients (3.1.1 and 5.0) against a real
//! node whose rules are managed with `fubar ctl acl topic`, a mosquitto acl_file imported and
//! compared with mosquitto itself, and a rule replicated across a 3-node cluster.
//!
//! Negative claims ("not delivered") are proven with a marker message published after, on a
//! path that delivers in order, never by waiting for a while.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::common::{eventually, Broker, Proc};

const SCRIPT: &str = include_str!("topic_acl_steps.py");
const WAIT: Duration = Duration::from_secs(30);

/// Why paho-mqtt 2.x cannot be used, if it cannot.
fn paho_missing() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import paho.mqtt.client, paho.mqtt.enums"])
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        _ => Some(
            "paho-mqtt 2.x is missing (scripts/test.sh installs it: python3 -m pip install 'paho-mqtt>=2,<3')"
                .into(),
        ),
    }
}

/// Runs the steps against `port` (with `ctl` as the prefix of ctl steps); the lines printed.
fn run_steps(dir: &std::path::Path, port: u16, steps: &Value, ctl: &[String]) -> Vec<String> {
    let path = dir.join("topic_acl_steps.py");
    std::fs::write(&path, SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&path)
        .arg(port.to_string())
        .arg(steps.to_string())
        .arg(serde_json::to_string(ctl).unwrap())
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}

/// `fubar ctl --data-dir DIR --name test@localhost` as a command prefix for the script.
fn ctl_prefix(broker: &Broker) -> Vec<String> {
    vec![
        env!("CARGO_BIN_EXE_fubar").into(),
        "ctl".into(),
        "--data-dir".into(),
        broker.dir.path().display().to_string(),
        "--name".into(),
        crate::common::NODE_NAME.into(),
    ]
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The refusal text of a ctl command that must fail.
fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should be refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn connect(name: &str, client: &str, user: Option<&str>, v: u8) -> Value {
    json!({"op": "connect", "name": name, "client": client, "user": user, "v": v})
}

fn sub(name: &str, filter: &str) -> Value {
    json!({"op": "sub", "name": name, "filter": filter})
}

fn publish(name: &str, topic: &str) -> Value {
    json!({"op": "pub", "name": name, "topic": topic})
}

fn retained(name: &str, topic: &str) -> Value {
    json!({"op": "pub", "name": name, "topic": topic, "retain": true})
}

fn until(name: &str, topic: &str) -> Value {
    json!({"op": "until", "name": name, "topic": topic})
}

fn ctl(args: &[&str]) -> Value {
    json!({"op": "ctl", "args": args})
}

#[test]
fn a_device_reads_and_writes_its_own_subtree_only() {
    if let Some(why) = paho_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let broker = Broker::start_with(&[], "[acl]\ndefault = \"deny\"\n");
    ok(&broker.ctl(&["acl", "topic", "add", "allow", "both", "devices/%c/#"]));
    ok(&broker.ctl(&["acl", "topic", "add", "allow both client ops #"]));
    let steps = json!([
        connect("ops", "ops", None, 5),
        retained("ops", "devices/d1/r"),
        retained("ops", "devices/d2/r"),
        connect("d1", "d1", Some("tenant-a"), 5),
        publish("d1", "devices/d1/t"),
        publish("d1", "devices/d2/t"),
        sub("d1", "devices/d2/#"),
        sub("d1", "$share/g/devices/d2/#"),
        sub("d1", "#"),
        publish("ops", "devices/d2/x"),
        publish("ops", "devices/d1/x"),
        publish("ops", "devices/d1/marker"),
        until("d1", "devices/d1/marker"),
        // A rule change applies to the subscription that exists.
        ctl(&[
            "acl",
            "topic",
            "add",
            "deny subscribe client d1 devices/d1/x"
        ]),
        publish("ops", "devices/d1/x"),
        publish("ops", "devices/d1/m2"),
        until("d1", "devices/d1/m2"),
        // MQTT 3.1.1: a refused subscription is 0x80; a denied publish is acknowledged and
        // dropped.
        connect("d3", "d3", Some("tenant-b"), 4),
        sub("d3", "devices/d1/#"),
        publish("d3", "devices/d1/y"),
        // A direct message (the topic is a client id) follows the publish rules.
        connect("d2", "d2", Some("tenant-b"), 5),
        publish("d2", "d1"),
        publish("ops", "devices/d1/m3"),
        until("d1", "devices/d1/m3"),
    ]);
    let lines = run_steps(
        broker.dir.path(),
        broker.port(),
        &steps,
        &ctl_prefix(&broker),
    );
    let mut lines = lines.iter().map(String::as_str);
    let mut next = || lines.next().expect("a line per step");
    let allowed = |line: &str| line.rsplit(' ').next().unwrap().parse::<u32>().unwrap() < 0x80;
    assert!(allowed(next()));
    assert!(allowed(next()));
    assert_eq!(next(), "puback d1 devices/d1/t 16", "its own subtree");
    assert_eq!(next(), "puback d1 devices/d2/t 135", "0x87 not authorized");
    assert_eq!(next(), "suback d1 devices/d2/# 135");
    assert_eq!(next(), "suback d1 $share/g/devices/d2/# 135");
    assert_eq!(next(), "suback d1 # 1", "granted, filtered at delivery");
    for _ in 0..3 {
        assert!(allowed(next()), "ops may publish anywhere");
    }
    assert_eq!(
        next(),
        "got d1 devices/d1/r,devices/d1/x",
        "its own retained message and topic, not d2's"
    );
    assert_eq!(next(), "ctl ok");
    next();
    next();
    assert_eq!(next(), "got d1 ", "the new deny reached the existing `#`");
    assert_eq!(next(), "suback d3 devices/d1/# 128");
    assert_eq!(
        next(),
        "puback d3 devices/d1/y 0",
        "3.1.1: acknowledged as usual"
    );
    assert_eq!(
        next(),
        "puback d2 d1 135",
        "a direct message to d1 is a publish"
    );
    next();
    assert_eq!(
        next(),
        "got d1 ",
        "neither d3's publish nor d2's direct message arrived"
    );
    let denial = broker
        .wait_for_log("denied by topic rules", WAIT)
        .expect("an access event");
    assert!(denial.contains("client=d1"), "{denial}");
    assert!(denial.contains("user=tenant-a"), "{denial}");
    assert!(denial.contains("topic=devices/d2/t"), "{denial}");
    assert!(denial.contains("rule=acl.default"), "{denial}");
    broker
        .wait_for_line(
            |l| l.contains("action=receive") && l.contains("deny subscribe client d1 devices/d1/x"),
            WAIT,
        )
        .expect("an access event naming the rule that stopped the delivery");
}

#[test]
fn bad_rules_and_bad_imports_are_refused_and_change_nothing() {
    let broker = Broker::start();
    ok(&broker.ctl(&["acl", "topic", "add", "allow both devices/%c/#"]));
    let before = ok(&broker.ctl(&["acl", "topic", "list"]));
    assert!(before.contains("allow both devices/%c/#"), "{before}");
    let why = refused(&broker.ctl(&["acl", "topic", "add", "allow both a/#/b"]));
    assert!(why.contains("not a valid topic filter"), "{why}");
    let why = refused(&broker.ctl(&["acl", "topic", "add", "allow both a/%x/b"]));
    assert!(why.contains("unknown substitution %x"), "{why}");
    let why = refused(&broker.ctl(&["acl", "topic", "add", "deny both $SYS/#"]));
    assert!(why.contains("starting with `$`"), "{why}");
    let why = refused(&broker.ctl(&["acl", "topic", "add", "permit both x"]));
    assert!(why.contains("not allow or deny"), "{why}");
    let why = refused(&broker.ctl(&["acl", "topic", "delete", "allow both nothing/here"]));
    assert!(why.contains("no rule"), "{why}");
    let file = broker.dir.path().join("garbage.acl");
    std::fs::write(
        &file,
        "# fine so far\nuser alice\ntopic read alice/#\nthis is garbage\ntopic sometimes x\n",
    )
    .unwrap();
    let why = refused(&broker.ctl(&["acl", "topic", "import", file.to_str().unwrap()]));
    assert!(why.contains("nothing imported"), "{why}");
    assert!(why.contains("line 4:"), "{why}");
    assert!(why.contains("line 5:"), "{why}");
    assert_eq!(ok(&broker.ctl(&["acl", "topic", "list"])), before);
}

/// The acl_file of the comparison, and the decisions mosquitto makes on it.
const MOSQUITTO_ACL: &str = "\
# markers tell a reader that nothing else is coming
pattern read marker/%c
pattern readwrite devices/%c/#
pattern read tenants/%u/#

user admin
topic readwrite #

user alice
topic read news/#
topic write alice/out
topic deny news/secret

user bob
topic readwrite bob/#
topic read alice/out
";

/// (user, client, publish or read, topic, allowed)
const CASES: &[(Option<&str>, &str, &str, &str, bool)] = &[
    (Some("alice"), "a1", "pub", "alice/out", true),
    (Some("alice"), "a1", "pub", "bob/x", false),
    (Some("alice"), "a1", "pub", "news/today", false),
    (Some("alice"), "a1", "read", "news/today", true),
    (Some("alice"), "a1", "read", "news/secret", false),
    (Some("bob"), "b1", "read", "alice/out", true),
    (Some("bob"), "b1", "pub", "bob/x/y", true),
    (Some("bob"), "b1", "read", "news/today", false),
    (Some("alice"), "dev1", "pub", "devices/dev1/temp", true),
    (Some("bob"), "dev2", "pub", "devices/dev1/temp", false),
    (Some("bob"), "dev2", "read", "devices/dev2/cmd", true),
    (Some("alice"), "a1", "read", "tenants/alice/x", true),
    (Some("bob"), "b1", "read", "tenants/alice/x", false),
    (None, "anon1", "pub", "devices/anon1/t", true),
    (None, "anon1", "read", "tenants/x/y", false),
    (Some("carol"), "c1", "pub", "anything", false),
    (Some("carol"), "c1", "read", "bob/x", false),
];

/// Each case as steps, and what each says (allowed or not) from the lines printed.
fn decide_all(dir: &std::path::Path, port: u16) -> Vec<bool> {
    let mut steps = vec![connect("admin", "admin", Some("admin"), 5)];
    for (i, (user, client, kind, topic, _)) in CASES.iter().enumerate() {
        let name = format!("c{i}");
        steps.push(connect(&name, client, *user, 5));
        if *kind == "pub" {
            steps.push(publish(&name, topic));
        } else {
            let marker = format!("marker/{client}");
            steps.push(sub(&name, topic));
            steps.push(sub(&name, &marker));
            steps.push(publish("admin", topic));
            steps.push(publish("admin", &marker));
            steps.push(until(&name, &marker));
        }
        steps.push(json!({"op": "disconnect", "name": name}));
    }
    let lines = run_steps(dir, port, &Value::Array(steps), &[]);
    let mut out = Vec::new();
    let mut lines = lines.iter();
    for (user, client, kind, topic, _) in CASES {
        let line = if *kind == "pub" {
            lines.next().unwrap()
        } else {
            // suback, suback, puback, puback, got
            lines.nth(4).unwrap()
        };
        let allowed = if *kind == "pub" {
            let code: u32 = line.rsplit(' ').next().unwrap().parse().unwrap();
            code < 0x80
        } else {
            line.split(' ').nth(2).unwrap_or("") == *topic
        };
        eprintln!("{user:?} {client} {kind} {topic}: {allowed} ({line})");
        out.push(allowed);
    }
    out
}

/// A free loopback port for a process that cannot be told port 0 (mosquitto).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_imported_mosquitto_acl_file_decides_as_mosquitto_does() {
    if let Some(why) = paho_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let want: Vec<bool> = CASES.iter().map(|c| c.4).collect();
    let broker = Broker::start_with(&[], "[acl]\ndefault = \"deny\"\n");
    let file = broker.dir.path().join("mosquitto.acl");
    std::fs::write(&file, MOSQUITTO_ACL).unwrap();
    let done = ok(&broker.ctl(&["acl", "topic", "import", file.to_str().unwrap()]));
    assert!(done.contains("imported 9 rules"), "{done}");
    let fubar = decide_all(broker.dir.path(), broker.port());
    assert_eq!(fubar, want, "fubar against the table");

    if Command::new("mosquitto").arg("-h").output().is_err() {
        eprintln!("mosquitto itself not compared: the `mosquitto` broker is not installed (scripts/test.sh installs it)");
        return;
    }
    let port = free_port();
    let conf = broker.dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nacl_file {}\n",
            file.display()
        ),
    )
    .unwrap();
    let _mosquitto = Proc::spawn(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    eventually("mosquitto to listen", WAIT, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mosquitto = decide_all(broker.dir.path(), port);
    for (i, case) in CASES.iter().enumerate() {
        assert_eq!(
            fubar[i], mosquitto[i],
            "case {case:?}: fubar {} mosquitto {}",
            fubar[i], mosquitto[i]
        );
    }
}

#[test]
fn a_rule_added_on_n1_holds_on_n3() {
    if let Some(why) = paho_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let cluster = Cluster::new();
    let n1 = cluster.found("n1");
    let _n2 = cluster.join("n2", &n1);
    let n3 = cluster.join("n3", &n1);
    cluster.wait_status("n1@localhost", "three voters", |s| {
        s.lines().filter(|l| l.contains(" voter ")).count() == 3
    });
    let rule = "deny publish client intruder tenants/#";
    ok(&cluster.ctl("n1@localhost", &["acl", "topic", "add", rule]));
    // Committed through Raft: n3 lists it as soon as it has applied the entry.
    eventually("n3 to apply the rule", WAIT, || {
        ok(&cluster.ctl("n3@localhost", &["acl", "topic", "list"])).contains(rule)
    });
    let steps = json!([
        connect("i", "intruder", None, 5),
        publish("i", "tenants/a/x"),
        publish("i", "open/x"),
    ]);
    let lines = run_steps(cluster.path(), n3.broker.port(), &steps, &[]);
    assert_eq!(lines[0], "puback i tenants/a/x 135", "denied on n3");
    assert_eq!(lines[1], "puback i open/x 16", "the default still allows");
}
