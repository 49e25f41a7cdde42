use super::*;

fn admission(max: usize, per_client: usize) -> Arc<Admission> {
    let limits = Limits {
        max_connections: max,
        max_connections_per_client: per_client,
        ..Limits::default()
    };
    Arc::new(Admission::new(limits, Metrics::new()))
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[test]
fn the_per_client_cap_counts_each_address_and_frees_places() {
    let a = admission(10, 2);
    let first = a.admit(ip(3)).expect("first");
    let _second = a.admit(ip(3)).expect("second");
    assert_eq!(a.admit(ip(3)).err(), Some(Refused::PerClient));
    let _other = a.admit(ip(4)).expect("another address");
    drop(first);
    a.admit(ip(3)).expect("a freed place");
    // An IPv4-mapped IPv6 address is the same client.
    let mapped = IpAddr::from(std::net::Ipv4Addr::new(127, 0, 0, 4).to_ipv6_mapped());
    let _mapped = a.admit(mapped).expect("second from .4");
    assert_eq!(a.admit(ip(4)).err(), Some(Refused::PerClient));
}

#[test]
fn zero_means_no_per_client_cap() {
    let a = admission(5, 0);
    let held: Vec<_> = (0..5).map(|_| a.admit(ip(3)).expect("admitted")).collect();
    assert_eq!(held.len(), 5);
}

#[tokio::test]
async fn when_full_the_longest_quiet_connection_makes_room_and_busy_ones_never_do() {
    let a = admission(2, 0);
    let oldest = a.admit(ip(3)).expect("first");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer = a.admit(ip(4)).expect("second");
    let third = a.admit(ip(5)).expect("room is made");
    assert!(oldest.activity.evicted.load(Ordering::Relaxed));
    assert!(!newer.activity.evicted.load(Ordering::Relaxed));
    // The evicted connection is on its way out: its place is not counted twice.
    let busy = InFlight::start(&newer.activity, &a);
    let _also_busy = InFlight::start(&third.activity, &a);
    assert_eq!(
        a.admit(ip(6)).err(),
        Some(Refused::Total),
        "the other two are busy or already leaving"
    );
    drop(oldest);
    assert_eq!(a.admit(ip(6)).err(), Some(Refused::Total));
    drop(busy);
    let _fourth = a
        .admit(ip(6))
        .expect("a finished request makes its connection evictable");
    assert!(newer.activity.evicted.load(Ordering::Relaxed));
}

#[test]
fn limits_keep_a_reserve_of_the_shutdown_deadline_for_the_audit_log() {
    let limits = Limits::default();
    assert_eq!(limits.shutdown_reserve(), Duration::from_secs(1));
    assert_eq!(limits.shutdown_grace(), Duration::from_secs(9));
    let short = Limits {
        shutdown_deadline: Duration::from_millis(1_500),
        ..limits
    };
    assert_eq!(short.shutdown_reserve(), Duration::from_millis(150));
}
