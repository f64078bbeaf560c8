use super::*;
use proptest::prelude::*;

fn param(column_type: u8, value: Value) -> Param {
    Param {
        column_type,
        unsigned: false,
        value,
    }
}

#[test]
fn every_byte_maps_to_a_code_and_back() {
    for b in 0..=255u8 {
        assert_eq!(Code::from(b).byte(), b);
    }
    assert_eq!(Code::from(0x03), Code::Query);
    assert_eq!(Code::from(0x17), Code::StmtExecute);
    assert_eq!(Code::from(0x1f), Code::ResetConnection);
    assert_eq!(Code::from(0x20), Code::Unknown(0x20));
}

#[test]
fn an_execute_sends_types_only_when_they_changed() {
    let int = |i| param(0x08, Value::Int(i));
    let text = |t: &str| param(0xfd, Value::Bytes(t.as_bytes().to_vec()));
    let mut sent = Vec::new();
    let mut b = Vec::new();
    encode_params(&mut b, &[int(1), text("a")], &mut sent);
    // Bitmap, bound, LONGLONG and VAR_STRING, then 8 bytes of 1 and a length-prefixed "a".
    let mut want = vec![0, 1, 0x08, 0, 0xfd, 0];
    want.extend_from_slice(&1i64.to_le_bytes());
    want.extend_from_slice(&[1, b'a']);
    assert_eq!(b, want);
    assert_eq!(sent, [0x08, 0, 0xfd, 0]);

    b.clear();
    encode_params(&mut b, &[int(2), text("b")], &mut sent);
    let mut want = vec![0, 0];
    want.extend_from_slice(&2i64.to_le_bytes());
    want.extend_from_slice(&[1, b'b']);
    assert_eq!(b, want, "same types: not sent again");

    // A NULL has a type of its own, so the types go again, and again after it.
    b.clear();
    encode_params(&mut b, &[param(0x06, Value::Null), text("c")], &mut sent);
    assert_eq!(b, [1, 1, 0x06, 0, 0xfd, 0, 1, b'c']);
    b.clear();
    encode_params(&mut b, &[int(3), text("d")], &mut sent);
    assert_eq!(&b[..6], [0, 1, 0x08, 0, 0xfd, 0]);

    // Unsigned is part of the type.
    b.clear();
    let mut u = int(3);
    u.unsigned = true;
    encode_params(&mut b, &[u, text("d")], &mut sent);
    assert_eq!(&b[..6], [0, 1, 0x08, 0x80, 0xfd, 0]);
}

#[test]
fn an_execute_is_sent_under_the_given_statement_id_without_query_attributes() {
    let cmd = Command::Execute {
        stmt_id: 7,
        flags: 0x08,
        params: vec![],
        prepare_seen: false,
        raw_params: vec![0xaa, 0xbb],
    };
    let mut out = Vec::new();
    encode(&cmd, Some(42), &mut Vec::new(), &mut out).unwrap();
    assert_eq!(out, [0x17, 42, 0, 0, 0, 0, 1, 0, 0, 0, 0xaa, 0xbb]);
}

#[test]
fn commands_without_bytes_of_their_own_are_refused() {
    let mut out = Vec::new();
    let change = Command::ChangeUser {
        user: b"u".to_vec(),
        db: None,
    };
    assert_eq!(
        encode(&change, None, &mut Vec::new(), &mut out),
        Err(Unencodable::NeedsLogin)
    );
    let other = Command::Other { code: 0x05, len: 9 };
    assert_eq!(
        encode(&other, None, &mut Vec::new(), &mut out),
        Err(Unencodable::NotRecorded(5))
    );
    assert!(out.is_empty());
}

#[test]
fn change_user_decodes_as_encoded() {
    let mut out = Vec::new();
    encode_change_user(
        b"app",
        &[7; 20],
        b"shop",
        45,
        b"mysql_native_password",
        &mut out,
    );
    let cx = DecodeContext {
        secure_connection: true,
        ..Default::default()
    };
    assert_eq!(
        decode(&out, cx),
        Some(Command::ChangeUser {
            user: b"app".to_vec(),
            db: Some(b"shop".to_vec()),
        })
    );
}

#[test]
fn truncated_bodies_do_not_decode() {
    for p in [
        &[][..],
        &[0x17, 1, 0, 0][..],
        &[0x19, 1, 0][..],
        &[0x1c, 1, 0, 0, 0, 5][..],
        &[0x18, 1, 0, 0, 0][..],
        &[0x1b, 1][..],
        &[0x0c, 1, 2, 3][..],
    ] {
        assert_eq!(decode(p, DecodeContext::default()), None, "{p:x?}");
    }
    assert_eq!(
        decode(&[0x05], DecodeContext::default()),
        None,
        "CREATE_DB is not decoded"
    );
}

#[test]
fn query_attributes_precede_the_sql_when_negotiated() {
    // One attribute "a" = 1 (LONGLONG), then the SQL.
    let mut body = vec![1, 1, 0, 1, 0x08, 0, 1, b'a'];
    body.extend_from_slice(&1i64.to_le_bytes());
    body.extend_from_slice(b"SELECT 1");
    let mut p = vec![0x03];
    p.extend_from_slice(&body);
    let cx = DecodeContext {
        query_attributes: true,
        ..Default::default()
    };
    assert_eq!(
        decode(&p, cx),
        Some(Command::Query {
            sql: b"SELECT 1".to_vec(),
            attrs: vec![(b"a".to_vec(), Value::Int(1))],
        })
    );
}

#[test]
fn query_attributes_sent_with_an_execute_are_not_taken_for_parameters() {
    // A 1-parameter statement executed with one attribute: count 2, then bitmap, bound, two
    // (type, flag, name) triples, then the values (a LONGLONG 5 and the attribute's "x").
    let flags = EXECUTE_PARAMETER_COUNT_AVAILABLE;
    let mut p = vec![0x17, 9, 0, 0, 0, flags, 1, 0, 0, 0];
    p.extend_from_slice(&[2, 0, 1, 0x08, 0, 0, 0xfd, 0, 2, b't', b'r']);
    p.extend_from_slice(&5i64.to_le_bytes());
    p.extend_from_slice(&[1, b'x']);
    let mut statement = Statement {
        params: 1,
        types: vec![],
    };
    let cx = DecodeContext {
        query_attributes: true,
        statement: Some(&mut statement),
        ..Default::default()
    };
    assert_eq!(
        decode(&p, cx),
        Some(Command::Execute {
            stmt_id: 9,
            flags: EXECUTE_PARAMETER_COUNT_AVAILABLE,
            params: vec![param(0x08, Value::Int(5))],
            prepare_seen: true,
            raw_params: vec![],
        })
    );
}

/// A parameter whose value reads back as itself (the binary protocol's canonical pairs).
fn canonical_param() -> impl Strategy<Value = Param> {
    prop_oneof![
        any::<i64>().prop_map(|i| param(0x08, Value::Int(i))),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(|u| Param {
            column_type: 0x08,
            unsigned: true,
            value: Value::UInt(u),
        }),
        any::<i32>().prop_map(|i| param(0x03, Value::Int(i as i64))),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
            .prop_map(|d| param(0x05, Value::Double(d))),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| param(0xfd, Value::Bytes(b))),
        Just(param(0x06, Value::Null)),
        Just(param(0xfd, Value::Null)),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

/// Commands a replay sends, with what a recording holds for them.
fn sendable() -> impl Strategy<Value = Command> {
    prop_oneof![
        bytes().prop_map(|sql| Command::Query { sql, attrs: vec![] }),
        bytes().prop_map(|db| Command::InitDb { db }),
        (bytes().prop_filter("no NUL", |t| !t.contains(&0)), bytes())
            .prop_map(|(table, wildcard)| Command::FieldList { table, wildcard }),
        bytes().prop_map(|sql| Command::Prepare { sql }),
        (any::<u32>(), 0u8..8, bytes()).prop_map(|(stmt_id, flags, raw_params)| {
            Command::Execute {
                stmt_id,
                flags,
                params: vec![],
                prepare_seen: false,
                raw_params,
            }
        }),
        (any::<u32>(), any::<u16>(), bytes()).prop_map(|(stmt_id, param, data)| {
            Command::SendLongData {
                stmt_id,
                param,
                data,
            }
        }),
        any::<u32>().prop_map(|stmt_id| Command::CloseStmt { stmt_id }),
        any::<u32>().prop_map(|stmt_id| Command::ResetStmt { stmt_id }),
        (any::<u32>(), any::<u32>()).prop_map(|(stmt_id, rows)| Command::Fetch { stmt_id, rows }),
        any::<u16>().prop_map(|option| Command::SetOption { option }),
        any::<u32>().prop_map(|id| Command::ProcessKill { id }),
        Just(Command::Statistics),
        Just(Command::ProcessInfo),
        Just(Command::Debug),
        Just(Command::Ping),
        Just(Command::Quit),
        Just(Command::ResetConnection),
    ]
}

proptest! {
    #[test]
    fn decode_inverts_encode(cmd in sendable()) {
        let mut out = Vec::new();
        encode(&cmd, None, &mut Vec::new(), &mut out).unwrap();
        prop_assert_eq!(decode(&out, DecodeContext::default()), Some(cmd));
    }

    /// Several EXECUTEs of one statement: types go only when they change, and the decoder,
    /// which remembers the statement's types as the server does, reads every one back.
    #[test]
    fn executes_of_one_statement_decode_as_encoded(
        shapes in proptest::collection::vec(
            proptest::collection::vec(canonical_param(), 1..6), 1..6),
        n in 1usize..6,
        stmt_id in any::<u32>(),
    ) {
        let mut sent = Vec::new();
        let mut statement = Statement { params: n as u16, types: vec![] };
        for i in 0..shapes.len() * 2 {
            // Each shape twice in a row, so that its second EXECUTE omits the types.
            let mut params = shapes[i / 2].clone();
            params.resize(n, param(0x06, Value::Null));
            let cmd = Command::Execute {
                stmt_id,
                flags: 0,
                params,
                prepare_seen: true,
                raw_params: vec![],
            };
            let mut out = Vec::new();
            encode(&cmd, None, &mut sent, &mut out).unwrap();
            let cx = DecodeContext { statement: Some(&mut statement), ..Default::default() };
            prop_assert_eq!(decode(&out, cx), Some(cmd));
        }
    }

    #[test]
    fn decode_never_panics(p in proptest::collection::vec(any::<u8>(), 0..64), qa: bool, secure: bool) {
        let mut statement = Statement { params: 3, types: vec![] };
        let cx = DecodeContext {
            secure_connection: secure,
            query_attributes: qa,
            statement: Some(&mut statement),
        };
        let _ = decode(&p, cx);
    }
}
