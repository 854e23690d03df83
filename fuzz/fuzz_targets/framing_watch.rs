//! The framing watch on any byte stream: it never panics, changes at most one byte (a line
//! feed, to NUL, once), and where the stream is cut into reads never changes what it does.
#![no_main]

use gatehouse::http::framing_watch::FramingWatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte seeds where the reads are cut; the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(seed % 17) + 1;
    let cuts: Vec<usize> = (step..stream.len()).step_by(step).collect();
    let whole = FramingWatch::follow_in_reads(stream, &[]);
    assert_eq!(
        FramingWatch::follow_in_reads(stream, &cuts),
        whole,
        "cut every {step} bytes"
    );
    let (out, refused) = whole;
    assert!(refused <= 1);
    let changed: Vec<usize> = (0..stream.len()).filter(|&i| out[i] != stream[i]).collect();
    assert_eq!(changed.len(), refused);
    for i in changed {
        assert_eq!((stream[i], out[i]), (b'\n', 0));
    }
});
