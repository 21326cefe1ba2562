use super::*;

fn parse(text: &str) -> Hba {
    Hba::parse(text, Path::new("hba.conf"), &IdentMaps::default()).unwrap()
}

fn ip(s: &str) -> From {
    From::Ip(s.parse().unwrap())
}

/// The method and line for a login, or None when no rule matches.
fn method(hba: &Hba, from: From, tls: bool, db: &str, user: &str) -> Option<(Method, usize)> {
    hba.find(from, tls, (db, false), user)
        .map(|r| (r.method, r.line))
}

#[test]
fn first_matching_line_decides() {
    let hba = parse(
        "# comment\n\
         \n\
         local  sales   clerk          peer\n\
         local  all     all            md5\n\
         hostssl all    all  10.0.0.0/8      cert\n\
         hostnossl all  all  10.0.0.0/8      scram-sha-256\n\
         host   all     all  192.168.1.0 255.255.255.0  password\n\
         host   books,\"Big Db\"  ann , bob  172.16.0.0/12  trust # inline\n\
         host   sameuser all  ::1/128        trust\n\
         host   all     all  0.0.0.0/0       reject\n",
    );
    assert_eq!(
        method(&hba, From::Unix, false, "sales", "clerk"),
        Some((Method::Peer, 3))
    );
    assert_eq!(
        method(&hba, From::Unix, false, "sales", "boss"),
        Some((Method::Md5, 4))
    );
    assert_eq!(
        method(&hba, ip("10.1.2.3"), true, "x", "y"),
        Some((Method::Cert, 5))
    );
    assert_eq!(
        method(&hba, ip("10.1.2.3"), false, "x", "y"),
        Some((Method::ScramSha256, 6))
    );
    assert_eq!(
        method(&hba, ip("192.168.1.77"), false, "x", "y"),
        Some((Method::Password, 7))
    );
    assert_eq!(
        method(&hba, ip("192.168.2.77"), false, "x", "y"),
        Some((Method::Reject, 10))
    );
    assert_eq!(
        method(&hba, ip("172.20.0.1"), false, "Big Db", "bob"),
        Some((Method::Trust, 8))
    );
    assert_eq!(
        method(&hba, ip("172.20.0.1"), false, "big db", "bob"),
        Some((Method::Reject, 10))
    );
    assert_eq!(
        method(&hba, ip("172.20.0.1"), false, "books", "carl"),
        Some((Method::Reject, 10))
    );
    assert_eq!(
        method(&hba, ip("::1"), false, "ann", "ann"),
        Some((Method::Trust, 9))
    );
    assert_eq!(method(&hba, ip("::1"), false, "ann", "bob"), None);
    // An IPv4 client seen on an IPv6 socket matches IPv4 lines.
    assert_eq!(
        method(&hba, ip("::ffff:10.0.0.1"), true, "x", "y"),
        Some((Method::Cert, 5))
    );
}

#[test]
fn quoted_all_is_a_name_and_masks_of_every_length() {
    let hba = parse(
        "host \"all\" all 1.0.0.0/8 trust\n\
         host all all 128.0.0.0/9 md5\n\
         host all all 128.0.0.0/1 password\n\
         host all all ff00::/8 scram-sha-256\n\
         host all all all reject\n",
    );
    assert_eq!(
        method(&hba, ip("1.2.3.4"), false, "db", "u"),
        Some((Method::Reject, 5))
    );
    assert_eq!(
        method(&hba, ip("1.2.3.4"), false, "all", "u"),
        Some((Method::Trust, 1))
    );
    assert_eq!(
        method(&hba, ip("128.127.0.1"), false, "d", "u"),
        Some((Method::Md5, 2))
    );
    assert_eq!(
        method(&hba, ip("128.128.0.1"), false, "d", "u"),
        Some((Method::Password, 3))
    );
    assert_eq!(
        method(&hba, ip("ff02::1"), false, "d", "u"),
        Some((Method::ScramSha256, 4))
    );
    assert_eq!(
        method(&hba, ip("fe80::1"), false, "d", "u"),
        Some((Method::Reject, 5))
    );
    assert_eq!(method(&hba, From::Unix, false, "d", "u"), None);
}

#[test]
fn name_files_and_ldap_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbs.txt"),
        "one, two\n# comment\n\"th ree\"\n",
    )
    .unwrap();
    let path = dir.path().join("hba.conf");
    let text = "host @dbs.txt all all md5\n\
                host all all 10.0.0.0/8 ldap ldapserver=localhost ldapprefix=\"cn=\"\n";
    let hba = Hba::parse(text, &path, &IdentMaps::default()).unwrap();
    assert_eq!(
        method(&hba, ip("1.1.1.1"), false, "th ree", "u"),
        Some((Method::Md5, 1))
    );
    assert_eq!(method(&hba, ip("1.1.1.1"), false, "four", "u"), None);
    let ldap = hba
        .find(ip("10.0.0.1"), false, ("four", false), "u")
        .unwrap();
    assert_eq!(ldap.method, Method::Ldap);
    let options = ldap.ldap.as_ref().unwrap();
    assert_eq!(options.servers, ["localhost"]);
    let bad = Hba::parse(
        "host all all all ldap ldapprefix=x\n",
        &path,
        &IdentMaps::default(),
    );
    assert!(bad.unwrap_err()[0].message.contains("ldapserver"));
}

#[test]
fn maps_are_checked_against_the_ident_file() {
    let maps = IdentMaps::parse("m1 root postgres\n", Path::new("ident.conf")).unwrap();
    let hba = Hba::parse("local all all peer map=m1\n", Path::new("hba.conf"), &maps).unwrap();
    let (name, map) = hba.rules[0].map.as_ref().unwrap();
    assert_eq!(name, "m1");
    assert!(crate::config::ident::allows(map, "root", "postgres"));
    let err = Hba::parse("local all all peer map=m2\n", Path::new("hba.conf"), &maps).unwrap_err();
    assert!(err[0].message.contains("m2"), "{:?}", err);
}

#[test]
fn bad_lines_name_file_and_line() {
    let text = "local all all trust\n\
                hots all all 1.2.3.4/32 md5\n\
                host all all 1.2.3.4/33 md5\n\
                host all all 1.2.3.4 md5\n\
                host all all 1.2.3.4/32 ident\n\
                host all all 1.2.3.4/32 md5 extra\n\
                host all all 1.2.3.4/32 peer\n\
                host all +group 1.2.3.4/32 md5\n\
                local samerole all trust\n\
                local all\n\
                local all all md5 map=x\n";
    let errs = Hba::parse(
        text,
        Path::new("/etc/pgbouncer/hba.conf"),
        &IdentMaps::default(),
    )
    .unwrap_err();
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, (2..=11).collect::<Vec<_>>(), "{errs:?}");
    for e in &errs {
        let shown = e.to_string();
        assert!(shown.contains("/etc/pgbouncer/hba.conf"), "{shown}");
    }
}

/// The `replication` keyword matches physical replication connections,
/// and they match nothing else; a logical one (`replication=database`)
/// matches as an ordinary login to its database.
#[test]
fn replication_lines_match_physical_replication_only() {
    let hba = parse(
        "host replication rep 10.0.0.0/8 trust\n\
         host all all 10.0.0.0/8 md5\n\
         host replication,sales all 0.0.0.0/0 password\n",
    );
    let at = ip("10.1.1.1");
    let physical = |user: &str| hba.find(at, false, ("sales", true), user).map(|r| r.line);
    assert_eq!(physical("rep"), Some(1));
    assert_eq!(
        physical("ann"),
        Some(3),
        "line 2 (all) is no replication line"
    );
    assert_eq!(
        method(&hba, at, false, "replication", "rep"),
        Some((Method::Md5, 2))
    );
    assert_eq!(
        method(&hba, ip("1.2.3.4"), false, "sales", "x"),
        Some((Method::Password, 3))
    );
    let none = parse("host all all 0.0.0.0/0 trust\n");
    assert!(none.find(at, false, ("db", true), "u").is_none());
}
