//! Unit tests of the process pool's pure parts: the wire format (a case matrix and a
//! proptest that splits the byte stream at random), the marker variable, the back-off, and
//! the build fingerprint. Everything that needs a worker process is in `tests/process_pool/`.

use super::func;
use super::protocol::*;
use proptest::prelude::*;

fn run_frame(seq: u64, args: &[&[u8]]) -> Vec<u8> {
    let mut items = Vec::new();
    for a in args {
        push_item(&mut items, ARG, a);
    }
    let h = RunHeader {
        seq,
        slot: (seq % 32) as u32,
        func: FnRef {
            entry: 1,
            func: 2,
            sig: 3,
        },
        count: args.len() as u32,
    };
    let mut out = Vec::new();
    encode_run(&mut out, &h, &items, 1 << 20).unwrap();
    out
}

fn frames(fb: &mut FrameBuf) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(r) = fb.next_frame().unwrap() {
        v.push(fb.get(r).to_vec());
    }
    v
}

// ===== frame matrix =====

#[test]
fn read_one_frame_one_read() {
    let f = run_frame(7, &[b"abc"]);
    let mut fb = FrameBuf::new(1 << 20);
    fb.push(&f);
    let got = frames(&mut fb);
    assert_eq!(got.len(), 1);
    match decode_to_worker(&got[0]).unwrap() {
        ToWorker::Run(h, items) => {
            assert_eq!(h.seq, 7);
            let items: Vec<_> = Items::new(items).map(Result::unwrap).collect();
            assert_eq!(items, vec![(ARG, &b"abc"[..])]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fb.buffered(), 0);
}

#[test]
fn read_many_frames_one_read() {
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(run_frame(i, &[b"x", b"yy"]));
    }
    let mut fb = FrameBuf::new(1 << 20);
    fb.push(&all);
    assert_eq!(frames(&mut fb).len(), 5);
}

#[test]
fn read_one_frame_many_reads() {
    let f = run_frame(1, &[&[9u8; 1000]]);
    let mut fb = FrameBuf::new(1 << 20);
    for (i, b) in f.iter().enumerate() {
        assert!(
            fb.next_frame().unwrap().is_none(),
            "complete after {i} of {} bytes",
            f.len()
        );
        fb.push(&[*b]);
    }
    assert_eq!(frames(&mut fb).len(), 1);
}

#[test]
fn read_incomplete_head() {
    let mut fb = FrameBuf::new(1 << 20);
    fb.push(&[5, 0]);
    assert_eq!(fb.next_frame(), Ok(None));
}

#[test]
fn read_incomplete_payload() {
    let f = run_frame(1, &[b"hello"]);
    let mut fb = FrameBuf::new(1 << 20);
    fb.push(&f[..f.len() - 1]);
    assert_eq!(fb.next_frame(), Ok(None));
    fb.push(&f[f.len() - 1..]);
    assert_eq!(frames(&mut fb).len(), 1);
}

#[test]
fn read_max_frame_len() {
    let mut fb = FrameBuf::new(100);
    fb.push(&101u32.to_le_bytes());
    assert_eq!(
        fb.next_frame(),
        Err(ProtocolError::TooLarge { len: 101, max: 100 })
    );
    let mut fb = FrameBuf::new(100);
    let mut f = 100u32.to_le_bytes().to_vec();
    f.push(READY);
    f.extend([0; 99]);
    fb.push(&f);
    assert!(
        fb.next_frame().unwrap().is_some(),
        "exactly the limit is allowed"
    );
}

#[test]
fn write_over_max_frame_len_is_refused_and_leaves_nothing() {
    let mut out = vec![1, 2, 3];
    let h = RunHeader {
        seq: 0,
        slot: 0,
        func: FnRef {
            entry: 0,
            func: 0,
            sig: 0,
        },
        count: 1,
    };
    let mut items = Vec::new();
    push_item(&mut items, ARG, &[0; 200]);
    let err = encode_run(&mut out, &h, &items, 100).unwrap_err();
    assert!(
        matches!(err, ProtocolError::TooLarge { max: 100, .. }),
        "{err:?}"
    );
    assert_eq!(out, [1, 2, 3]);
    assert!(
        err.to_string()
            .contains("over the maximum message size of 100 bytes"),
        "{err}"
    );
}

#[test]
fn decode_unknown_tag() {
    assert_eq!(
        decode_from_worker(&[200]),
        Err(ProtocolError::UnknownTag(200))
    );
    assert_eq!(
        decode_to_worker(&[HELLO]),
        Err(ProtocolError::UnknownTag(HELLO))
    );
    assert_eq!(decode_to_worker(&[]), Err(ProtocolError::UnknownTag(0)));
}

#[test]
fn decode_items_count_mismatch() {
    let mut items = Vec::new();
    push_item(&mut items, OK, b"1");
    assert!(check_items(&items, 1).is_ok());
    assert!(matches!(
        check_items(&items, 2),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(matches!(
        check_items(&items[..3], 1),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn decode_item_longer_than_frame() {
    let mut items = vec![OK];
    items.extend(1000u32.to_le_bytes());
    items.extend([0; 10]);
    let e = Items::new(&items).next().unwrap().unwrap_err();
    assert!(e.to_string().contains("1000 bytes"), "{e}");
}

#[test]
fn hello_and_done_round_trip() {
    let fp = func::fingerprint().clone();
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        fingerprint: fp,
        pid: 42,
    };
    let mut out = Vec::new();
    encode_frame(&mut out, HELLO, &hello, HANDSHAKE_MAX).unwrap();
    let start = begin_frame(&mut out, DONE);
    encode_into(
        &DoneHeader {
            seq: 9,
            status: DoneStatus::Ran,
            count: 2,
        },
        &mut out,
    )
    .unwrap();
    push_encoded_item(&mut out, OK, RESULT_CODEC, &123u32);
    push_item(&mut out, PANICKED, b"boom");
    end_frame(&mut out, start, 1 << 20).unwrap();
    encode_empty(&mut out, READY);
    let mut fb = FrameBuf::new(1 << 20);
    fb.push(&out);
    let got = frames(&mut fb);
    assert_eq!(
        decode_from_worker(&got[0]).unwrap(),
        FromWorker::Hello(hello)
    );
    let FromWorker::Done(h, items) = decode_from_worker(&got[1]).unwrap() else {
        panic!()
    };
    assert_eq!((h.seq, h.status, h.count), (9, DoneStatus::Ran, 2));
    let items: Vec<_> = Items::new(items).map(Result::unwrap).collect();
    assert_eq!(items[0].0, OK);
    assert_eq!(decode::<u32>(items[0].1), Ok(123));
    assert_eq!(items[1], (PANICKED, &b"boom"[..]));
    assert_eq!(decode_from_worker(&got[2]).unwrap(), FromWorker::Ready);
}

#[test]
fn encoded_item_that_fails_becomes_its_error_tag() {
    struct Refuses;
    impl serde::Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let mut out = vec![7];
    push_encoded_item(&mut out, ARG, ARG_FAILED, &Refuses);
    let items: Vec<_> = Items::new(&out[1..]).map(Result::unwrap).collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, ARG_FAILED);
}

// ===== marker, fingerprint =====

#[test]
fn marker_round_trip_and_rejects_garbage() {
    let m = Marker {
        parent: 12,
        sock: 3,
        ring: 4,
        stdout: -1,
        bell: 5,
        slots: 32,
    };
    assert_eq!(Marker::parse(&m.encode()), Some(m));
    for bad in [
        "",
        "v1:1:2:3:4:5",
        "v2:1:2:3:4:5",
        "v2:1:2:3:4:5:6:7",
        "v2:x:2:3:4:5:6",
    ] {
        assert_eq!(Marker::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn fingerprint_same_build_rules() {
    let a = func::fingerprint().clone();
    assert!(a.same_build(&a));
    assert!(func::verify(&a).is_ok());
    let mut b = a.clone();
    b.layout ^= 1;
    assert!(!a.same_build(&b));
    let err = func::verify(&b).unwrap_err();
    assert!(err.contains("different build"), "{err}");
    let mut c = a.clone();
    c.build_id = vec![1, 2, 3];
    if !a.build_id.is_empty() {
        assert!(!a.same_build(&c));
    }
}

#[test]
fn fingerprint_has_build_id_on_this_toolchain() {
    // Not required for correctness (the exe identity is the fallback), but expected here.
    assert!(!func::fingerprint().build_id.is_empty());
}

#[test]
fn fn_ref_of_own_function_is_inside_the_image() {
    fn double(x: u32) -> u32 {
        2 * x
    }
    let r = func::fn_ref(double).unwrap();
    assert_ne!(r.entry, r.func);
    assert_eq!(r.sig, func::signature::<u32, u32>());
    assert_ne!(r.sig, func::signature::<u64, u32>());
}

// ===== proptest =====

fn arb_items() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6)
}

proptest! {
    /// Any sequence of frames, cut into any pieces, comes out whole and in order.
    #[test]
    fn frames_survive_random_splits(
        msgs in prop::collection::vec((any::<u64>(), arb_items()), 1..8),
        cuts in prop::collection::vec(0usize..4000, 0..12),
    ) {
        let mut stream = Vec::new();
        for (seq, args) in &msgs {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            stream.extend(run_frame(*seq, &refs));
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut fb = FrameBuf::new(1 << 20);
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts {
            fb.push(&stream[at..c]);
            at = c;
            got.extend(frames(&mut fb));
        }
        prop_assert_eq!(got.len(), msgs.len());
        for (body, (seq, args)) in got.iter().zip(&msgs) {
            let ToWorker::Run(h, items) = decode_to_worker(body).unwrap() else { panic!("not a RUN") };
            prop_assert_eq!(h.seq, *seq);
            let items: Vec<Vec<u8>> = Items::new(items).map(|r| r.unwrap().1.to_vec()).collect();
            prop_assert_eq!(&items, args);
        }
    }

    /// Random bytes never panic the decoders.
    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = decode_stream(&data, 1 << 16);
    }
}
