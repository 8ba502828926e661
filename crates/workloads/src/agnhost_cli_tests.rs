use super::*;

const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn parse_args(args: &[&str], ports: &[DeclaredPort]) -> Result<Workload, WorkloadError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse(IMAGE, &args, ports)
}

fn agnhost(mode: AgnhostMode, tcp: &[u16], udp: &[u16]) -> Workload {
    Workload::Agnhost(AgnhostConfig {
        mode,
        tcp_ports: tcp.to_vec(),
        udp_ports: udp.to_vec(),
    })
}

fn port(port: u16, protocol: Protocol) -> DeclaredPort {
    DeclaredPort { port, protocol }
}

use AgnhostMode::{Netexec, ServeHostname};

#[test]
fn netexec_flags() {
    for (args, tcp, udp) in [
        (&["netexec"][..], &[8080][..], &[8081][..]),
        (
            &["netexec", "--http-port=80", "--udp-port=53"],
            &[80],
            &[53],
        ),
        (
            &["netexec", "--http-port", "9000", "--udp-port", "9001"],
            &[9000],
            &[9001],
        ),
        (&["netexec", "-http-port=81"], &[81], &[8081]),
        (&["netexec", "--udp-port=-1"], &[8080], &[]),
        (
            &["netexec", "--sctp-port=-1", "--delay-shutdown=5"],
            &[8080],
            &[8081],
        ),
    ] {
        assert_eq!(
            parse_args(args, &[]).unwrap(),
            agnhost(Netexec, tcp, udp),
            "{args:?}"
        );
    }
}

#[test]
fn netexec_refuses_what_it_cannot_do() {
    for (args, needle) in [
        (
            &["netexec", "--http-port=http"][..],
            "invalid value \"http\"",
        ),
        (&["netexec", "--http-port=70000"], "invalid value \"70000\""),
        (&["netexec", "--http-port"], "needs a value"),
        (&["netexec", "--sctp-port=9000"], "sctp-port"),
        (&["netexec", "--certfile=/c.pem"], "certfile"),
        (&["netexec", "stray"], "stray"),
        (&["netexec", "--delay-shutdown=soon"], "delay-shutdown"),
    ] {
        let err = parse_args(args, &[]).unwrap_err().to_string();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains(IMAGE), "{args:?}: {err}");
    }
}

#[test]
fn serve_hostname_flags() {
    for (args, tcp, udp) in [
        (&["serve-hostname"][..], &[9376][..], &[][..]),
        (&["serve-hostname", "--port", "9000"], &[9000], &[]),
        (
            &["serve-hostname", "--port=9000", "--udp"],
            &[9000],
            &[9000],
        ),
        (
            &["serve-hostname", "--http=false", "--udp=true"],
            &[],
            &[9376],
        ),
        (&["serve-hostname", "--http", "9001"], &[9001], &[]),
        (&["serve-hostname", "--http=9002"], &[9002], &[]),
        (&["serve-hostname", "--http", "--udp"], &[9376], &[9376]),
        (&["serve-hostname", "--tcp=false", "--close"], &[9376], &[]),
    ] {
        assert_eq!(
            parse_args(args, &[]).unwrap(),
            agnhost(ServeHostname, tcp, udp),
            "{args:?}"
        );
    }
    for args in [
        &["serve-hostname", "--tcp"][..],
        &["serve-hostname", "--udp=maybe"],
        &["serve-hostname", "--port=-1"],
        &["serve-hostname", "--bogus"],
    ] {
        assert!(parse_args(args, &[]).is_err(), "{args:?}");
    }
}

#[test]
fn pause_sleeps_and_takes_no_flags() {
    assert_eq!(parse_args(&["pause"], &[]).unwrap(), Workload::Sleep);
    assert!(parse_args(&["pause", "--x"], &[]).is_err());
}

#[test]
fn unknown_subcommands_are_refused() {
    let err = parse_args(&["liveness"], &[]).unwrap_err().to_string();
    assert!(
        err.contains("\"liveness\"") && err.contains("netexec"),
        "{err}"
    );
}

#[test]
fn no_args_serve_the_declared_ports() {
    assert_eq!(
        parse_args(&[], &[]).unwrap(),
        agnhost(Netexec, &[8080], &[])
    );
    let ports = [
        port(80, Protocol::Tcp),
        port(53, Protocol::Udp),
        port(80, Protocol::Tcp),
        port(53, Protocol::Tcp),
        port(9999, Protocol::Sctp),
    ];
    assert_eq!(
        parse_args(&[], &ports).unwrap(),
        agnhost(Netexec, &[80, 53], &[53])
    );
    let udp_only = [port(5353, Protocol::Udp)];
    assert_eq!(
        parse_args(&[], &udp_only).unwrap(),
        agnhost(Netexec, &[8080], &[5353])
    );
}
