//! The backend response decoder (src/proxy/bare.rs) on any byte stream: it never panics,
//! where the stream is cut into reads never changes what it decodes, and a body it accepts
//! is never longer than what was sent.
#![no_main]

use gatehouse::proxy::decode_in_reads;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte seeds where the reads are cut and whether the request was a HEAD; the
    // rest is what the backend sent.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let is_head = seed & 0x80 != 0;
    let step = usize::from(seed % 23) + 1;
    let cuts: Vec<usize> = (step..stream.len()).step_by(step).collect();
    let whole = decode_in_reads(stream, is_head, &[]);
    assert_eq!(
        decode_in_reads(stream, is_head, &cuts),
        whole,
        "cut every {step} bytes"
    );
    if let Ok(Some(decoded)) = whole {
        assert!(decoded.body.len() <= stream.len());
        assert!((200..1000).contains(&decoded.status));
        if is_head {
            assert!(decoded.body.is_empty());
        }
    }
});
