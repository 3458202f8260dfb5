//! The safetensors readers on arbitrary bytes: a task bundle (header, `adalbert` metadata,
//! f32 tensors), a training state file (f32 tensors + metadata) and a checkpoint's
//! `model.safetensors` (any dtype). Beyond "no panic": what one reader accepts, the looser
//! ones accept too, and everything accepted holds what its loader promises.

#![no_main]

use std::path::Path;

use adalbert_model::bundle::{tensors_from_bytes, TaskBundle};
use adalbert_model::checkpoint::safetensors_tensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let bundle = TaskBundle::from_bytes(data, path);
    let state = tensors_from_bytes(data, path);
    let checkpoint = safetensors_tensors(data, path);
    // Errors name the file they came from.
    for e in [
        bundle.as_ref().err(),
        state.as_ref().err(),
        checkpoint.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        let msg = e.to_string();
        assert!(
            msg.contains("fuzz.safetensors"),
            "error without the path: {msg}"
        );
    }
    if let Ok(b) = &bundle {
        let (n, outputs) = (b.meta.labels.len(), b.meta.layout.num_labels);
        assert!(outputs > 0, "accepted a classifier with no outputs");
        assert!(
            n == outputs || (n == 0 && outputs == 1),
            "accepted {n} labels for {outputs} outputs"
        );
        assert!(
            state.is_ok(),
            "a bundle's tensors must load as a state file"
        );
    }
    if let Ok((tensors, _)) = &state {
        for (name, t) in tensors {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                v.iter().all(|x| x.is_finite()),
                "non-finite `{name}` accepted"
            );
        }
        let all = checkpoint
            .as_ref()
            .expect("f32 tensors must load as a checkpoint");
        assert_eq!(all.len(), tensors.len());
        for (name, t) in tensors {
            assert_eq!(all[name].dims(), t.dims(), "`{name}` changed shape");
        }
    }
});
